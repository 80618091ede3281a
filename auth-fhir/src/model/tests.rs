//! The model's promises: nothing is lost on a round trip, choices are typed and go
//! back under their key, decimals keep their text, errors name places, not values.

use serde_json::{Value, json};

use super::*;

/// Parses `text` (so numbers keep their text) as `T`, writes it back, and checks the
/// JSON is the same.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(text: &str) -> T {
    let input: Value = serde_json::from_str(text).unwrap();
    let typed: T = serde_json::from_str(text).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), input);
    typed
}

#[test]
fn unknown_elements_survive_a_round_trip() {
    let input = json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "source": "#x"},
        "name": [{"family": "Chalmers", "given": ["Peter"], "_family": {"extension": []}}],
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "multipleBirthInteger": 2,
        "extension": [{"url": "http://example.org/x", "valueString": "y"}],
        "contact": [{"name": {"family": "Du Marché"}}],
        "elementOfR5": {"anything": [1, 2.50]}
    });
    let p: Patient = serde_json::from_value(input.clone()).unwrap();
    assert_eq!(p.id(), Some("p1"));
    assert_eq!(p.version_id(), Some("3"));
    assert_eq!(p.birth_date.as_deref(), Some("1974-12-25"));
    assert!(p.extra.contains_key("_birthDate") && p.extra.contains_key("elementOfR5"));
    assert_eq!(p.name[0].extra.keys().collect::<Vec<_>>(), ["_family"]);
    assert_eq!(p.multiple_birth, Some(PatientMultipleBirth::Integer(2)));
    assert_eq!(serde_json::to_value(&p).unwrap(), input);
}

#[test]
fn a_quantity_of_1_50_stays_1_50() {
    let q: Quantity =
        round_trip(r#"{"value": 1.50, "unit": "mmol/L", "system": "http://unitsofmeasure.org"}"#);
    assert_eq!(q.value.as_ref().map(Decimal::as_str), Some("1.50"));
    assert_eq!(
        serde_json::to_string(&q).unwrap(),
        r#"{"value":1.50,"unit":"mmol/L","system":"http://unitsofmeasure.org"}"#
    );
    // 1.5 is another JSON value: the comparison sees the text.
    let written: Value = serde_json::to_value(&q).unwrap();
    assert_ne!(written, json!({"value": 1.5, "unit": "mmol/L", "system": "http://unitsofmeasure.org"}));

    let o: Observation = round_trip(
        r#"{"resourceType": "Observation", "status": "final", "code": {"text": "glucose"},
            "valueQuantity": {"value": 6.30, "unit": "mmol/l"},
            "referenceRange": [{"low": {"value": 3.10}, "high": {"value": 6.20}}]}"#,
    );
    let Some(ObservationValue::Quantity(q)) = &o.value else { panic!("{:?}", o.value) };
    assert_eq!(q.value.as_ref().map(|v| v.as_str()), Some("6.30"));
    assert_eq!(
        o.reference_range[0].low.as_ref().and_then(|l| l.value.as_ref()).map(Decimal::to_f64),
        Some(3.1)
    );
}

#[test]
fn a_choice_goes_back_under_its_key() {
    let o: Observation = round_trip(
        r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "effectivePeriod": {"start": "2020-01-01"}, "valueString": "positive",
            "component": [{"code": {"text": "a"}, "valueBoolean": true}, {"code": {"text": "b"}, "valueInteger": 7}]}"#,
    );
    assert!(
        matches!(&o.effective, Some(ObservationEffective::Period(p)) if p.start.as_deref() == Some("2020-01-01"))
    );
    assert_eq!(o.value, Some(ObservationValue::String("positive".into())));
    assert_eq!(o.component[0].value, Some(ObservationComponentValue::Boolean(true)));
    assert_eq!(o.component[1].value, Some(ObservationComponentValue::Integer(7)));
    assert!(o.extra.is_empty(), "every element is typed: {:?}", o.extra);

    let built = Observation {
        status: Some("final".into()),
        value: Some(ObservationValue::Quantity(Quantity {
            value: Some("98.60".parse().unwrap()),
            unit: Some("[degF]".into()),
            ..Quantity::default()
        })),
        effective: Some(ObservationEffective::DateTime("2024-05-01T10:00:00Z".into())),
        ..Observation::default()
    };
    assert_eq!(
        serde_json::to_string(&built).unwrap(),
        r#"{"resourceType":"Observation","status":"final","effectiveDateTime":"2024-05-01T10:00:00Z","valueQuantity":{"value":98.60,"unit":"[degF]"}}"#
    );

    // Condition.onset[x] with a Quantity profile (Age) and a plain string.
    let c: Condition = round_trip(
        r#"{"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "onsetAge": {"value": 52, "unit": "a"}, "abatementString": "in remission"}"#,
    );
    assert!(matches!(c.onset, Some(ConditionOnset::Age(_))));
    assert_eq!(c.abatement, Some(ConditionAbatement::String("in remission".into())));
}

#[test]
fn what_fhir_json_never_holds_is_kept_as_it_came() {
    // Two values for one choice: the first is typed, the other stays in `extra`.
    let o: Observation = round_trip(
        r#"{"resourceType": "Observation", "valueQuantity": {"value": 1}, "valueString": "also", "_valueString": {"id": "v"}}"#,
    );
    assert!(matches!(o.value, Some(ObservationValue::Quantity(_))));
    assert!(o.extra.contains_key("valueString") && o.extra.contains_key("_valueString"));
    // null, an empty list, a list of primitives with holes (their extensions in `_given`).
    let p: Patient = round_trip(
        r#"{"resourceType": "Patient", "gender": null, "identifier": [],
            "name": [{"given": ["A", null], "_given": [null, {"extension": [{"url": "u", "valueCode": "x"}]}]}]}"#,
    );
    assert_eq!((p.gender.as_ref(), p.identifier.len(), p.name[0].given.len()), (None, 0, 0));
    assert!(p.extra.contains_key("gender") && p.name[0].extra.contains_key("given"));
    // A list that is null is not a list: refused, as it always was.
    let e = serde_json::from_value::<Patient>(json!({"resourceType": "Patient", "name": null})).unwrap_err();
    assert_eq!(e.to_string(), "Patient.name: expected an array, found null");
    let e = serde_json::from_value::<Bundle<Patient>>(json!({"resourceType": "Bundle", "link": null}))
        .unwrap_err();
    assert_eq!(e.to_string(), "Bundle.link: expected an array, found null");
}

#[test]
fn a_typed_field_wins_over_a_stale_copy_in_extra() {
    let mut p: Patient = serde_json::from_value(json!({"resourceType": "Patient", "gender": null})).unwrap();
    p.gender = Some("female".into());
    assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"resourceType":"Patient","gender":"female"}"#);
}

#[test]
fn errors_name_the_element_not_the_value() {
    let e = serde_json::from_value::<Observation>(json!({
        "resourceType": "Observation", "valueQuantity": {"value": "Secret Smith"}
    }))
    .unwrap_err()
    .to_string();
    assert_eq!(e, "Observation.valueQuantity.value: expected a number, found a string");
    let e =
        serde_json::from_str::<Patient>(r#"{"resourceType": "Patient", "name": [{}, {"given": "Secret"}]}"#)
            .unwrap_err()
            .to_string();
    assert!(e.starts_with("Patient.name[1].given: expected an array, found a string"), "{e}");
    assert!(!e.contains("Secret"));
    let e = serde_json::from_value::<Patient>(json!({"resourceType": "Patient", "active": "Secret"}))
        .unwrap_err();
    assert!(!e.to_string().contains("Secret"), "{e}");
}

#[test]
fn the_wrong_resource_type_is_refused() {
    let e = serde_json::from_value::<Patient>(json!({"resourceType": "Observation"})).unwrap_err();
    assert!(e.to_string().starts_with("expected resourceType `Patient`, found `Observation`"), "{e}");
    let e = serde_json::from_value::<Patient>(json!({"id": "x"})).unwrap_err();
    assert!(e.to_string().starts_with("expected resourceType `Patient`, found none"), "{e}");
    let e = serde_json::from_value::<Patient>(json!({"resourceType": "<b>Smith</b>"})).unwrap_err();
    assert_eq!(e.to_string(), "expected resourceType `Patient`, found something else");
}

#[test]
fn bundles_keep_other_entries_apart() {
    let b: Bundle<Patient> = round_trip(
        r#"{"resourceType": "Bundle", "type": "searchset", "total": 2,
            "link": [{"relation": "next", "url": "http://x/Patient?_page=2"}],
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "1"}, "search": {"mode": "match", "score": 0.90}},
                {"resource": {"resourceType": "OperationOutcome", "issue": [{"code": "x"}]}, "search": {"mode": "outcome"}},
                {"resource": {"resourceType": "Patient", "id": "2"}}
            ]}"#,
    );
    assert_eq!(b.matches().filter_map(|p| p.id()).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(b.next_link(), Some("http://x/Patient?_page=2"));
    assert!(matches!(b.entry[1].resource, Some(EntryResource::Other(_))));
    assert_eq!(b.entry[0].search.as_ref().and_then(|s| s.score.as_ref()).map(Decimal::as_str), Some("0.90"));
}

#[test]
fn transaction_entries_carry_typed_requests_and_responses() {
    let b: Bundle<JsonResource> = round_trip(
        r#"{"resourceType": "Bundle", "id": "t", "type": "transaction-response",
            "entry": [
              {"fullUrl": "urn:uuid:61ebe359", "resource": {"resourceType": "Patient", "name": [{"family": "X"}]},
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://a|1",
                           "ifMatch": "W/\"1\"", "ifNoneMatch": "*", "ifModifiedSince": "2020-01-01T00:00:00Z"},
               "response": {"status": "201 Created", "location": "Patient/1/_history/1", "etag": "W/\"1\"",
                            "lastModified": "2020-01-01T00:00:00Z",
                            "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}}}
            ]}"#,
    );
    let entry = &b.entry[0];
    let request = entry.request.as_ref().unwrap();
    assert_eq!((request.method.as_deref(), request.url.as_deref()), (Some("POST"), Some("Patient")));
    assert_eq!(request.if_none_exist.as_deref(), Some("identifier=http://a|1"));
    let response = entry.response.as_ref().unwrap();
    assert_eq!(response.status.as_deref(), Some("201 Created"));
    assert_eq!(response.outcome.as_ref().map(|o| o.resource_type()), Some("OperationOutcome"));
    assert_eq!(entry.full_url.as_deref(), Some("urn:uuid:61ebe359"));

    // Built by hand, it writes the same keys.
    let mut tx = Bundle::<Patient>::new("transaction");
    let mut entry = BundleEntry::new(Patient::new().with_name("Chalmers", ["Peter"]));
    entry.full_url = Some("urn:uuid:1".into());
    entry.request = Some(BundleEntryRequest {
        method: Some("POST".into()),
        url: Some("Patient".into()),
        if_none_exist: Some("identifier=x|1".into()),
        ..BundleEntryRequest::default()
    });
    tx.entry.push(entry);
    assert_eq!(
        serde_json::to_value(&tx).unwrap(),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
            "fullUrl": "urn:uuid:1",
            "resource": {"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}]},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x|1"}
        }]})
    );
}

#[test]
fn json_resources_take_any_type_and_keep_decimals() {
    let r: JsonResource =
        round_trip(r#"{"resourceType":"Observation","id":"o1","valueQuantity":{"value":1.50}}"#);
    assert_eq!((r.resource_type(), r.id()), ("Observation", Some("o1")));
    assert!(serde_json::to_string(&r).unwrap().contains(r#"{"value":1.50}"#));
}

#[test]
fn extensions_keep_their_value_as_json() {
    let e: Extension =
        round_trip(r#"{"url": "http://example.org/a", "valueCodeableConcept": {"text": "t"}}"#);
    let (key, value) = e.value().unwrap();
    assert_eq!(key, "valueCodeableConcept");
    let cc: CodeableConcept = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(cc.text.as_deref(), Some("t"));
    let e =
        Extension::new("http://example.org/b").with_value("valueDecimal", "2.50".parse::<Decimal>().unwrap());
    assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"url":"http://example.org/b","valueDecimal":2.50}"#);
}

#[test]
fn patients_are_built_as_before() {
    let p = Patient::new().with_name("Chalmers", ["Peter", "James"]).with_identifier("urn:mrn", "12345");
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json!({"resourceType": "Patient",
               "identifier": [{"system": "urn:mrn", "value": "12345"}],
               "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]})
    );
}
