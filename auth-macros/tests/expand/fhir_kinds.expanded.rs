impl Records {
    /// The SMART v2 scopes this client's endpoints need, and no more: `system/*.s system/Observation.c system/Patient.cruds`. Give them to the token manager with `TokenManager::scoped(Self::SCOPES)` (or a source's `with_scopes`) for a token that allows exactly this.
    #[allow(dead_code)]
    pub const SCOPES: &'static [&'static str] = &[
        "system/*.s",
        "system/Observation.c",
        "system/Patient.cruds",
    ];
    #[allow(clippy::needless_question_mark)]
    pub async fn patch(
        &self,
        id: &str,
        ops: &Patch,
        version: Option<&str>,
    ) -> Result<Patient> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let __segment_id = ::auth_fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let mut __headers = ::auth_fhir::__private::HeaderMap::new();
        ::auth_fhir::__private::json_patch(&mut __headers);
        if let ::core::option::Option::Some(__v) = &version {
            ::auth_fhir::__private::if_match(
                &mut __headers,
                &::auth_fhir::__private::text(__v),
            )?;
        }
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::PATCH,
                __url,
                __headers,
                ::core::option::Option::Some(::auth_fhir::__private::body(&ops)?),
            )
            .await?;
        ::core::result::Result::Ok(
            <Patient as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn delete(&self, id: &str, version: &str) -> Result<()> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let __segment_id = ::auth_fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let mut __headers = ::auth_fhir::__private::HeaderMap::new();
        ::auth_fhir::__private::if_match(
            &mut __headers,
            &::auth_fhir::__private::text(&version),
        )?;
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::DELETE,
                __url,
                __headers,
                ::core::option::Option::None,
            )
            .await?;
        ::core::result::Result::Ok(
            <() as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn upsert(
        &self,
        identifier: &str,
        p: &Patient,
    ) -> Result<Created<Patient>> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&["Patient"])?;
        let mut __query = ::auth_fhir::SearchParams::new();
        __query.push("identifier", ::auth_fhir::__private::text(&identifier));
        ::auth_fhir::__private::condition(&__query, "update")?;
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::PUT,
                __url,
                __headers,
                ::core::option::Option::Some(::auth_fhir::__private::body(&p)?),
            )
            .await?;
        ::core::result::Result::Ok(
            <Created<
                Patient,
            > as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn delete_where(&self, condition: &SearchParams) -> Result<()> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&["Patient"])?;
        let mut __query = ::auth_fhir::SearchParams::new();
        __query.extend_from(&condition);
        ::auth_fhir::__private::condition(&__query, "delete")?;
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::DELETE,
                __url,
                __headers,
                ::core::option::Option::None,
            )
            .await?;
        ::core::result::Result::Ok(
            <() as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn versions(
        &self,
        id: &str,
        count: Option<u32>,
    ) -> Result<Bundle<Patient>> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let __segment_id = ::auth_fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id, "_history"])?;
        let mut __query = ::auth_fhir::SearchParams::new();
        if let ::core::option::Option::Some(__v) = &count {
            __query.push("_count", ::auth_fhir::__private::text(__v));
        }
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::GET,
                __url,
                __headers,
                ::core::option::Option::None,
            )
            .await?;
        ::core::result::Result::Ok(
            <Bundle<
                Patient,
            > as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn type_history(&self) -> Result<Bundle<Patient>> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&["Patient", "_history"])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::GET,
                __url,
                __headers,
                ::core::option::Option::None,
            )
            .await?;
        ::core::result::Result::Ok(
            <Bundle<
                Patient,
            > as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn changes(&self, since: &str) -> Result<FhirResponse> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&["_history"])?;
        let mut __query = ::auth_fhir::SearchParams::new();
        __query.push("_since", ::auth_fhir::__private::text(&since));
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::GET,
                __url,
                __headers,
                ::core::option::Option::None,
            )
            .await?;
        ::core::result::Result::Ok(
            <FhirResponse as ::auth_fhir::__private::FromResponse>::from_response(
                __response,
            )?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn everything(&self, id: &str) -> Result<Bundle<JsonResource>> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let __segment_id = ::auth_fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id, "$everything"])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::POST,
                __url,
                __headers,
                ::core::option::Option::Some(::auth_fhir::__private::no_parameters()),
            )
            .await?;
        ::core::result::Result::Ok(
            <Bundle<
                JsonResource,
            > as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn find(&self, input: &JsonResource) -> Result<Bundle<Patient>> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&["Patient", "$match"])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::POST,
                __url,
                __headers,
                ::core::option::Option::Some(::auth_fhir::__private::body(&input)?),
            )
            .await?;
        ::core::result::Result::Ok(
            <Bundle<
                Patient,
            > as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn versions_supported(&self, p: &SearchParams) -> Result<JsonResource> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&["$versions"])?;
        let mut __query = ::auth_fhir::SearchParams::new();
        __query.extend_from(&p);
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::GET,
                __url,
                __headers,
                ::core::option::Option::None,
            )
            .await?;
        ::core::result::Result::Ok(
            <JsonResource as ::auth_fhir::__private::FromResponse>::from_response(
                __response,
            )?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn submit(&self, bundle: &Transaction) -> Result<TransactionResponse> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&[])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let __headers = ::auth_fhir::__private::HeaderMap::new();
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::POST,
                __url,
                __headers,
                ::core::option::Option::Some(::auth_fhir::__private::body(&bundle)?),
            )
            .await?;
        ::core::result::Result::Ok(
            <TransactionResponse as ::auth_fhir::__private::FromResponse>::from_response(
                __response,
            )?,
        )
    }
}
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Patient > ("Patient"),
    "the path `Patient/{{id}}` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < () > ("Patient"),
    "the path `Patient/{{id}}` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Created < Patient > > ("Patient"),
    "the path `Patient` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < () > ("Patient"),
    "the path `Patient` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Bundle < Patient > > ("Patient"),
    "the path `Patient/{{id}}` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns_bundle:: < Bundle < Patient > > (),
    "a history is a Bundle of versions: return `Bundle<Patient>` (or `FhirResponse`)"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Bundle < Patient > > ("Patient"),
    "the path `Patient` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns_bundle:: < Bundle < Patient > > (),
    "a history is a Bundle of versions: return `Bundle<Patient>` (or `FhirResponse`)"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns_bundle:: < FhirResponse > (),
    "a history is a Bundle of versions: return `Bundle<JsonResource>` (or `FhirResponse`)"
);
