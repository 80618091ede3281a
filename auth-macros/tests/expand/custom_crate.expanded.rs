impl Patients {
    /// The SMART v2 scopes this client's endpoints need, and no more: `system/Patient.u`. Give them to the token manager with `TokenManager::scoped(Self::SCOPES)` (or a source's `with_scopes`) for a token that allows exactly this.
    #[allow(dead_code)]
    pub const SCOPES: &'static [&'static str] = &["system/Patient.u"];
    #[allow(clippy::needless_question_mark)]
    pub async fn update(
        &self,
        id: &str,
        p: &Patient,
        mode: Option<&str>,
        extra: &SearchParams,
        v: &str,
    ) -> Result<Patient> {
        let __fhir: &my_reexport::fhir::FhirClient = &self.fhir;
        let __segment_id = my_reexport::fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id])?;
        let mut __query = my_reexport::fhir::SearchParams::new();
        if let ::core::option::Option::Some(__v) = &mode {
            __query.push("mode", my_reexport::fhir::__private::text(__v));
        }
        __query.extend_from(&extra);
        my_reexport::fhir::__private::set_query(&mut __url, &__query);
        let mut __headers = my_reexport::fhir::__private::HeaderMap::new();
        my_reexport::fhir::__private::header(
            &mut __headers,
            "If-Match",
            &my_reexport::fhir::__private::text(&v),
        )?;
        let __response = __fhir
            .send(
                my_reexport::fhir::__private::Method::PUT,
                __url,
                __headers,
                ::core::option::Option::Some(my_reexport::fhir::__private::body(&p)?),
            )
            .await?;
        ::core::result::Result::Ok(
            <Patient as my_reexport::fhir::__private::FromResponse>::from_response(
                __response,
            )?,
        )
    }
}
const _: () = ::core::assert!(
    my_reexport::fhir::__private::returns:: < Patient > ("Patient"),
    "the path `Patient/{{id}}` is about Patient resources, but the return type holds another resource type"
);
