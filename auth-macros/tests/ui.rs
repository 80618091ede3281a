//! Every compile-time check, as rustc reports it to a user. The expected output is
//! committed next to each case; `TRYBUILD=overwrite` rewrites it after an intended
//! change (review the diff).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
