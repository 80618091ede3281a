::core::compile_error! {
    "an endpoint has no body: end the signature with `;` and the macro writes the body"
}
::core::compile_error! {
    "the path must be relative to the FHIR base (no scheme, host or leading `/`)"
}
::core::compile_error! {
    "a method without a body needs an endpoint attribute: #[get(\"…\")], #[post(\"…\")], #[put(\"…\")], #[patch(\"…\")], #[delete(\"…\")], #[history], #[operation(\"…\")] or #[transaction]"
}
impl<T: Clone> Patients<T> {
    const LIMIT: u32 = 10;
    /// Documented.
    #[allow(unused_variables, clippy::unused_async)]
    pub async fn read(&self, id: &str) -> Result<Patient> {
        ::core::unreachable!()
    }
    #[allow(unused_variables, clippy::unused_async)]
    pub async fn with_body(&self, id: &str) -> Result<Patient> {
        ::core::unreachable!()
    }
    #[allow(unused_variables, clippy::unused_async)]
    pub async fn search(&self, name: &str) -> Result<Bundle<Patient>> {
        ::core::unreachable!()
    }
    #[allow(unused_variables, clippy::unused_async)]
    pub async fn forgotten(&self, p: &Patient) -> Result<()> {
        ::core::unreachable!()
    }
    fn helper(&self) -> u32 {
        1
    }
}
