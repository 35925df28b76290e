//! `keel:plugin/crypto`: the kernel hashes many messages for a plugin, and
//! refuses a call past its limits with a clear error.

use hmac::{Hmac, Mac};
use keel_core::Backend;
use keel_host::PluginError;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Fixture, call};

/// The digests the probe got for `args` (see its `crypto` capability).
async fn hash(f: &Fixture, args: Value) -> keel_host::Result<Vec<u8>> {
    let out = hash_len(f, args).await?;
    Ok(serde_json::from_value(out["bytes"].clone()).unwrap())
}

async fn hash_len(f: &Fixture, args: Value) -> keel_host::Result<Value> {
    let probe = f.probe().await;
    let arg = args.to_string();
    call(
        &f.host,
        &probe,
        "call",
        json!({"capability": "crypto", "arg": arg}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernel_hashes_each_message_after_the_prefix() {
    let f = Fixture::new(Backend::Sqlite).await;
    let messages = ["alpha", "bravo", "delta"];
    let got = hash(&f, json!({"prefix": "keel:", "messages": messages.concat(), "message_len": 5, "digest_len": 12}))
        .await
        .unwrap();
    let want: Vec<u8> = messages
        .iter()
        .flat_map(|m| Sha256::digest(format!("keel:{m}"))[..12].to_vec())
        .collect();
    assert_eq!(got, want);

    let got = hash(&f, json!({"key": "secret", "prefix": "p", "messages": messages.concat(), "message_len": 5, "digest_len": 32}))
        .await
        .unwrap();
    let want: Vec<u8> = messages
        .iter()
        .flat_map(|m| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"secret").unwrap();
            mac.update(format!("p{m}").as_bytes());
            mac.finalize().into_bytes().to_vec()
        })
        .collect();
    assert_eq!(got, want);

    // No messages: no digests.
    let none = hash(
        &f,
        json!({"prefix": "", "messages": "", "message_len": 1, "digest_len": 1}),
    );
    assert_eq!(none.await.unwrap(), Vec::<u8>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_call_past_its_limits_is_invalid_input() {
    // What is checked is the limits' refusals, not speed: the call at the
    // limit hashes 65,536 messages in a debug build, which under a loaded
    // CI run can pass the fixture's usual 500 ms deadline.
    let f = Fixture::with(Backend::Sqlite, |c| {
        crate::support::limits(c);
        c.deadline = std::time::Duration::from_secs(10);
    })
    .await;
    let long = "x".repeat(1025);
    let cases = [
        (
            json!({"prefix": "", "messages": "abc", "message_len": 2, "digest_len": 8}),
            "not a whole number of 2-byte messages",
        ),
        (
            json!({"prefix": "", "messages": "ab", "message_len": 0, "digest_len": 8}),
            "message-len: 1 to 1024",
        ),
        (
            json!({"prefix": "", "messages": long, "message_len": 1025, "digest_len": 8}),
            "message-len: 1 to 1024",
        ),
        (
            json!({"prefix": "", "messages": "ab", "message_len": 1, "digest_len": 0}),
            "digest-len: 1 to 32",
        ),
        (
            json!({"prefix": "", "messages": "ab", "message_len": 1, "digest_len": 33}),
            "digest-len: 1 to 32",
        ),
        (
            json!({"prefix": long, "messages": "ab", "message_len": 1, "digest_len": 8}),
            "prefix: at most 1024",
        ),
        (
            json!({"key": long, "prefix": "", "messages": "ab", "message_len": 1, "digest_len": 8}),
            "key: at most 1024",
        ),
        (
            json!({"prefix": "", "messages": "", "repeat": 65_537, "message_len": 1, "digest_len": 8}),
            "at most 65536 messages",
        ),
        (
            json!({"prefix": "", "messages": "", "repeat": (1 << 20) + 2, "message_len": 2, "digest_len": 8}),
            "at most 1048576 bytes",
        ),
    ];
    for (args, why) in cases {
        match hash_len(&f, args.clone()).await {
            Err(PluginError::Returned { code, message, .. }) => {
                assert_eq!(code, "BAD_USER_INPUT", "{args}: {message}");
                assert!(message.contains(why), "{args}: {message} (wanted {why:?})")
            }
            other => panic!("{args}: {other:?}, wanted invalid input ({why})"),
        }
    }
    // The most messages allowed work (small ones: a debug build under a
    // loaded CI must stay inside the probe's deadline).
    let max =
        json!({"prefix": "", "messages": "", "repeat": 65_536, "message_len": 1, "digest_len": 1});
    assert_eq!(hash_len(&f, max).await.unwrap()["len"], json!(65_536));
}
