impl Patients {
    /// The SMART v2 scopes this client's endpoints need, and no more: `system/Patient.cud`. Give them to the token manager with `TokenManager::scoped(Self::SCOPES)` (or a source's `with_scopes`) for a token that allows exactly this.
    #[allow(dead_code)]
    pub const SCOPES: &'static [&'static str] = &["system/Patient.cud"];
    #[allow(clippy::needless_question_mark)]
    pub async fn create(
        &self,
        patient: &Patient,
        condition: Option<&str>,
    ) -> Result<Created<Patient>> {
        let __fhir: &::auth_fhir::FhirClient = &self.api;
        let mut __url = __fhir.url(&["Patient"])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let mut __headers = ::auth_fhir::__private::HeaderMap::new();
        if let ::core::option::Option::Some(__v) = &condition {
            ::auth_fhir::__private::header(
                &mut __headers,
                "If-None-Exist",
                &::auth_fhir::__private::text(__v),
            )?;
        }
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::POST,
                __url,
                __headers,
                ::core::option::Option::Some(::auth_fhir::__private::body(&patient)?),
            )
            .await?;
        ::core::result::Result::Ok(
            <Created<
                Patient,
            > as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn update(
        &self,
        id: &str,
        patient: &Patient,
        version: &str,
    ) -> Result<Patient> {
        let __fhir: &::auth_fhir::FhirClient = &self.api;
        let __segment_id = ::auth_fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id])?;
        let __query = ::auth_fhir::SearchParams::new();
        ::auth_fhir::__private::set_query(&mut __url, &__query);
        let mut __headers = ::auth_fhir::__private::HeaderMap::new();
        ::auth_fhir::__private::header(
            &mut __headers,
            "If-Match",
            &::auth_fhir::__private::text(&version),
        )?;
        let __response = __fhir
            .send(
                ::auth_fhir::__private::Method::PUT,
                __url,
                __headers,
                ::core::option::Option::Some(::auth_fhir::__private::body(&patient)?),
            )
            .await?;
        ::core::result::Result::Ok(
            <Patient as ::auth_fhir::__private::FromResponse>::from_response(__response)?,
        )
    }
    #[allow(clippy::needless_question_mark)]
    pub async fn delete(&self, id: &str) -> Result<()> {
        let __fhir: &::auth_fhir::FhirClient = &self.api;
        let __segment_id = ::auth_fhir::__private::segment(&id);
        let mut __url = __fhir.url(&["Patient", &__segment_id])?;
        let __query = ::auth_fhir::SearchParams::new();
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
    fn helper(&self) -> u32 {
        1
    }
}
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Created < Patient > > ("Patient"),
    "the path `Patient` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < Patient > ("Patient"),
    "the path `Patient/{{id}}` is about Patient resources, but the return type holds another resource type"
);
const _: () = ::core::assert!(
    ::auth_fhir::__private::returns:: < () > ("Patient"),
    "the path `Patient/{{id}}` is about Patient resources, but the return type holds another resource type"
);
