impl Patients {
    /// The SMART v2 scopes this client's endpoints need, and no more: `system/Patient.rs`. Give them to the token manager with `TokenManager::scoped(Self::SCOPES)` (or a source's `with_scopes`) for a token that allows exactly this.
    #[allow(dead_code)]
    pub const SCOPES: &'static [&'static str] = &["system/Patient.rs"];
    #[allow(clippy::needless_question_mark)]
    pub async fn read(&self, id: &str) -> Result<Patient> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let __segment_id = ::auth_fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id])?;
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
            <Patient as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn search(
        &self,
        name: &str,
        count: Option<u32>,
    ) -> Result<Bundle<Patient>> {
        let __fhir: &::auth_fhir::FhirClient = &self.fhir;
        let mut __url = __fhir.url(&["Patient"])?;
        let mut __query = ::auth_fhir::SearchParams::new();
        __query.push("name", ::auth_fhir::__private::text(&name));
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
}
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Patient > ("Patient"),
    "the path `Patient/{{id}}` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Bundle < Patient > > ("Patient"),
    "the path `Patient` is about Patient resources, but the return type holds another resource type"
);
