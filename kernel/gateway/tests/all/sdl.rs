//! The committed SDL is the API boundary: it must match the code.

#[test]
fn committed_sdl_matches_the_schema_in_code() {
    keel_testkit::assert_committed(
        "schemas/graphql/kernel.graphql",
        &keel_gateway::sdl(),
        "KEEL_BLESS=1 cargo test -p keel-gateway --test all sdl",
    );
}
