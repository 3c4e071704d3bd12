//! Compile-time behaviour of `#[derive(Schema)]`: valid chains compile, and each mistake fails with
//! an error at the user's tokens that says what to do (trybuild, `tests/ui/`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass-*.rs");
    t.compile_fail("tests/ui/fail-*.rs");
}
