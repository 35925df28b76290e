use std::collections::HashSet;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;

fn key(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

fn codec(batch_no: u32) -> BatchCodec {
    BatchCodec::new(&key(1), batch_no, key(batch_no as u8 ^ 0x5a))
}

/// Encodes an arbitrary (batch, serial, tag) in the default format: what
/// a forger who knows the format but no secret can print.
fn forge(tenant: &Key, batch_no: u32, serial: u32, tag: u128) -> String {
    let id = ((batch_no as u64) << 24) | serial as u64;
    let mut out = Vec::new();
    PRINT_SAFE.push_fixed(
        feistel(tenant, b'c', id, 22, false) as u128,
        ID_LEN,
        &mut out,
    );
    PRINT_SAFE.push_fixed(tag, TAG_LEN, &mut out);
    let check = PRINT_SAFE.check_char(&out).unwrap();
    out.push(check);
    String::from_utf8(out).unwrap()
}

#[test]
fn a_code_is_thirty_print_safe_characters_with_96_bits_of_tag() {
    let code = codec(3).code(77);
    assert_eq!(code.len(), CODE_LEN);
    assert!(code.bytes().all(|c| PRINT_SAFE.digit(c).is_some()));
    const { assert!(TAG_BITS >= 96 && GS1_TAG_BITS >= 80) };
    let p = parse_code(&key(1), &display(&code).to_lowercase()).unwrap();
    assert_eq!((p.batch_no, p.serial), (3, 77));
    assert!(codec(3).verify(&p));
    assert!(
        !codec(4).verify(&p),
        "another batch's secret does not verify it"
    );
}

#[test]
fn a_code_under_another_tenant_key_names_another_batch_or_fails() {
    let code = codec(3).code(77);
    match parse_code(&key(2), &code) {
        Ok(p) => assert!(!codec(p.batch_no).verify(&p)),
        Err(e) => assert_eq!(e, CodeError::Malformed),
    }
}

#[test]
fn serials_and_batches_yield_distinct_codes() {
    let mut seen = HashSet::new();
    for batch in [1, 2, MAX_BATCH_NO] {
        let c = codec(batch);
        for serial in (1..=20_000).chain([MAX_SERIAL - 1, MAX_SERIAL]) {
            assert!(seen.insert(c.code(serial)), "batch {batch} serial {serial}");
        }
    }
}

#[test]
fn gs1_serials_fit_ai_21_and_open_only_with_their_batch() {
    let c = codec(5);
    let s = c.gs1_serial(123_456);
    assert_eq!(s.len(), GS1_SERIAL_LEN);
    assert!(s.len() <= 20, "AI 21 holds at most 20 characters");
    assert_eq!(c.open_gs1_serial(&s), Ok(Some(123_456)));
    assert_eq!(codec(6).open_gs1_serial(&s), Ok(None));
    let mut typo = s.clone().into_bytes();
    typo[3] = if typo[3] == b'a' { b'b' } else { b'a' };
    assert_eq!(
        c.open_gs1_serial(std::str::from_utf8(&typo).unwrap()),
        Err(CodeError::Mistyped)
    );
    assert_eq!(c.open_gs1_serial("short"), Err(CodeError::Malformed));
}

#[test]
fn one_million_random_guesses_find_no_valid_code() {
    let tenant = key(1);
    let batch = codec(9);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b65656c);
    let mut well_formed = 0;
    for _ in 0..1_000_000 {
        // Half pure random text, half well-formed codes of the real batch
        // number and a real serial with a random tag.
        let guess = if rng.r#gen::<bool>() {
            (0..CODE_LEN)
                .map(|_| PRINT_SAFE_CHARS[rng.gen_range(0..PRINT_SAFE_CHARS.len())] as char)
                .collect::<String>()
        } else {
            let serial = rng.gen_range(1..=1_000_000);
            forge(&tenant, 9, serial, rng.r#gen::<u128>() >> (128 - TAG_BITS))
        };
        if let Ok(p) = parse_code(&tenant, &guess) {
            well_formed += 1;
            assert!(!batch.verify(&p), "the guess {guess} is valid");
        }
    }
    assert!(
        well_formed > 450_000,
        "most guesses reached verification: {well_formed}"
    );
}

const PRINT_SAFE_CHARS: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_single_changed_character_is_rejected(
        batch in 1..=MAX_BATCH_NO, serial in 1..=MAX_SERIAL,
        at in 0..CODE_LEN, with in 0..PRINT_SAFE_CHARS.len(),
    ) {
        let c = codec(batch);
        let code = c.code(serial);
        let mut typo = code.clone().into_bytes();
        prop_assume!(typo[at] != PRINT_SAFE_CHARS[with]);
        typo[at] = PRINT_SAFE_CHARS[with];
        let typo = String::from_utf8(typo).unwrap();
        prop_assert_eq!(parse_code(&key(1), &typo), Err(CodeError::Mistyped));
    }

    #[test]
    fn every_code_round_trips(batch in 1..=MAX_BATCH_NO, serial in 1..=MAX_SERIAL) {
        let c = codec(batch);
        let p = parse_code(&key(1), &c.code(serial)).unwrap();
        prop_assert_eq!((p.batch_no, p.serial), (batch, serial));
        prop_assert!(c.verify(&p));
        prop_assert_eq!(c.open_gs1_serial(&c.gs1_serial(serial)), Ok(Some(serial)));
    }

    #[test]
    fn distinct_serials_or_batches_never_share_a_code(
        a in (1..=MAX_BATCH_NO, 1..=MAX_SERIAL), b in (1..=MAX_BATCH_NO, 1..=MAX_SERIAL),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(codec(a.0).code(a.1), codec(b.0).code(b.1));
    }
}

#[test]
fn gtin_check_digits() {
    for (g, ok) in [
        ("6901234567892", true),
        ("96385074", true),
        ("6901234567891", false),
        ("690123456789", false),
        ("69012345678X2", false),
        ("", false),
    ] {
        assert_eq!(gtin_valid(g), ok, "{g}");
    }
    assert_eq!(gtin14("6901234567892"), "06901234567892");
}
