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

/// Codes already printed stay valid: these were derived by the first
/// released implementation and must never change.
#[test]
fn codes_match_the_golden_vectors_of_codes_already_printed() {
    let tenant = Key::from_bytes(*b"keel golden vectors: tenant key!");
    let golden = [
        (
            1,
            1,
            "9RCQ8GEV32YHE6GWCJWZ2QCXVA3CEV",
            "0BnG4GsNbCj3UZMWzu7",
        ),
        (
            1,
            2,
            "FY44MRBYY2NV7BHN32Q66W6BY34XHZ",
            "1LAf0zjmpITTLmHQ1hP",
        ),
        (
            1,
            1_000_000,
            "5TQUEWNE22QDFZMM3FJHNNFRCFK8KW",
            "0GFH47nfpp2lXH0lsOS",
        ),
        (
            1,
            MAX_SERIAL,
            "N2452Y9FC43GTXFV9GQXC7JX79JUGT",
            "5BkJruHXPdguUm1CdCT",
        ),
        (
            MAX_BATCH_NO,
            1,
            "FSERZ5EGX2Y4DHFJ8EV2J4H9CFWWQB",
            "06xw2JQJN7cuRXCBipi",
        ),
        (
            MAX_BATCH_NO,
            2,
            "5YCU7KEPF3F2MR394WC5SR3DHAMH9B",
            "2rjejh51Ds9NcvIOPw6",
        ),
        (
            MAX_BATCH_NO,
            1_000_000,
            "MW2W4W9M44U53GY7S4U23A8ZHPB9N6",
            "0U1UwWlw30qUGr6h5vc",
        ),
        (
            MAX_BATCH_NO,
            MAX_SERIAL,
            "8AE4K45U35E7NZSQNEVD88VC4YE7X8",
            "0otkbvOMuZVX9o2AJGv",
        ),
    ];
    let secret = |batch_no| {
        Key::from_bytes(if batch_no == 1 {
            *b"keel golden vectors: batch one!!"
        } else {
            *b"keel golden vectors: last batch!"
        })
    };
    for (batch_no, serial, code, gs1) in golden {
        let c = BatchCodec::new(&tenant, batch_no, secret(batch_no));
        assert_eq!(c.code(serial), code, "batch {batch_no} serial {serial}");
        assert_eq!(
            c.gs1_serial(serial),
            gs1,
            "batch {batch_no} serial {serial}"
        );
        for format in [CodeFormat::Default, CodeFormat::Gs1Serial] {
            let many = c.codes_each(format, serial, 1, &mut Software).unwrap();
            let want = if format == CodeFormat::Default {
                code
            } else {
                gs1
            };
            assert_eq!(
                many,
                want.as_bytes(),
                "batched, batch {batch_no} serial {serial}"
            );
        }
    }
}

/// The batched derivation (one hash call per Feistel round and one for the
/// tags, for a whole run of serials) gives byte for byte the codes of the
/// one-at-a-time derivation.
#[test]
fn batched_codes_are_the_codes_one_at_a_time() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..40 {
        let batch_no = rng.gen_range(1..=MAX_BATCH_NO);
        let c = codec(batch_no);
        let count = rng.gen_range(1..=300usize);
        let first = rng.gen_range(1..=MAX_SERIAL - count as u32 + 1);
        let codes = c
            .codes_each(CodeFormat::Default, first, count, &mut Software)
            .unwrap();
        let gs1 = c
            .codes_each(CodeFormat::Gs1Serial, first, count, &mut Software)
            .unwrap();
        assert_eq!(codes.len(), count * CODE_LEN);
        assert_eq!(gs1.len(), count * GS1_SERIAL_LEN);
        for (i, serial) in (first..first + count as u32).enumerate() {
            assert_eq!(
                &codes[i * CODE_LEN..][..CODE_LEN],
                c.code(serial).as_bytes()
            );
            assert_eq!(
                &gs1[i * GS1_SERIAL_LEN..][..GS1_SERIAL_LEN],
                c.gs1_serial(serial).as_bytes()
            );
        }
    }
}

#[test]
fn a_batch_outside_the_serials_is_refused_and_an_empty_one_is_empty() {
    let c = codec(2);
    assert_eq!(
        c.codes_each(CodeFormat::Default, 5, 0, &mut Software)
            .unwrap(),
        b""
    );
    for (first, count) in [(0, 1), (MAX_SERIAL, 2), (1, MAX_SERIAL as usize + 1)] {
        assert_eq!(
            c.codes_each(CodeFormat::Default, first, count, &mut Software),
            Err(BatchError::Serials { first, count }),
            "{first} + {count}"
        );
    }
}

/// A hash source that answers the wrong number of bytes is caught, not
/// turned into wrong codes.
#[test]
fn a_hash_source_of_the_wrong_length_is_an_error() {
    struct Short;
    impl Hashes for Short {
        type Error = std::convert::Infallible;
        fn sha256_each(
            &mut self,
            _: &[u8],
            _: &[u8],
            _: usize,
            _: usize,
        ) -> Result<Vec<u8>, Self::Error> {
            Ok(vec![0; 3])
        }
        fn hmac_sha256_each(
            &mut self,
            _: &[u8],
            _: &[u8],
            _: &[u8],
            _: usize,
            _: usize,
        ) -> Result<Vec<u8>, Self::Error> {
            Ok(vec![0; 3])
        }
    }
    assert_eq!(
        codec(2).codes_each(CodeFormat::Default, 1, 10, &mut Short),
        Err(BatchError::Length {
            expected: 80,
            got: 3
        })
    );
}

/// The software hashes: SHA-256 and HMAC-SHA-256 (RFC 4231 case 2) of a
/// prefix and each message, cut to the digest length asked.
#[test]
fn software_hashes_are_sha256_and_hmac_of_prefix_and_message() {
    let mut s = Software;
    // SHA-256("abc") = ba7816bf…; "abc" as prefix "a" + message "bc".
    let d = s.sha256_each(b"a", b"bc", 2, 4).unwrap();
    assert_eq!(d, [0xba, 0x78, 0x16, 0xbf]);
    // HMAC-SHA-256("Jefe", "what do ya want for nothing?") = 5bdcc146…
    let d = s
        .hmac_sha256_each(b"Jefe", b"what do ya want ", b"for nothing?", 12, 32)
        .unwrap();
    assert_eq!(&d[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    assert_eq!(d.len(), 32);
    let two = s.sha256_each(b"", b"abcabc", 3, 1).unwrap();
    assert_eq!(two, [0xba, 0xba]);
}
