::core::compile_error! {
    "`pid` is not in the path `Patient/{id}`: mark it #[query], #[params], #[header(\"…\")] or #[body]"
}
::core::compile_error! {
    "`{id}` in the path has no parameter; add one named `id` (or #[path(\"id\")])"
}
impl Patients {
    #[allow(unused_variables, clippy::unused_async)]
    pub async fn read(&self, pid: &str) -> Result<Patient> {
        ::core::unreachable!()
    }
}
