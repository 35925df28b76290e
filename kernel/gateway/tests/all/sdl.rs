//! The committed SDL is the API boundary: it must match the code.

use std::path::PathBuf;

#[test]
fn committed_sdl_matches_the_schema_in_code() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/graphql/kernel.graphql");
    let actual = keel_gateway::sdl();
    if std::env::var("KEEL_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == actual,
        "schemas/graphql/kernel.graphql is out of date with the code; \
         regenerate it with `KEEL_BLESS=1 cargo test -p keel-gateway --test all sdl` \
         (or `keel schema > schemas/graphql/kernel.graphql`) and review the diff"
    );
}
