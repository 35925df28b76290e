//! Scripted answers to plugin-to-plugin calls, for a plugin's tests.
//!
//! A test harness (`keel plugin harness`) may give the host [`CallStubs`]:
//! a call to a stubbed `(plugin, operation)` then answers the script
//! instead of running a callee, so a plugin that calls `rewards` is tested
//! without enabling `rewards`. Every check on the caller's side still
//! runs first (declared in `[[calls]]`, granted, depth, cycles, the input
//! a JSON object within its limit). `keel serve` never sets stubs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::bindings::{Refusal, WitError};

/// What a stubbed call answers: its output, or an error by the code a
/// GraphQL client would see (`NOT_FOUND`, `CONFLICT`, `BAD_USER_INPUT`,
/// `FORBIDDEN`, `INTERNAL`, or a plugin's own code, e.g. `INSUFFICIENT_POINTS`).
#[derive(Debug, Clone)]
pub enum StubAnswer {
    Output(Value),
    Error { code: String, message: String },
}

/// The stubs and the calls they answered, shared by every invocation of
/// the host that holds them.
#[derive(Debug, Clone, Default)]
pub struct CallStubs {
    inner: Arc<Mutex<Stubs>>,
}

#[derive(Debug, Default)]
struct Stubs {
    answers: HashMap<(String, String), StubAnswer>,
    calls: Vec<Value>,
}

impl CallStubs {
    /// Calls to `plugin.operation` answer `answer` from now on.
    pub fn set(&self, plugin: &str, operation: &str, answer: StubAnswer) {
        self.lock()
            .answers
            .insert((plugin.to_owned(), operation.to_owned()), answer);
    }

    /// The calls stubs answered, oldest first: `plugin`, `operation`,
    /// `input`, `caller` (the calling plugin); emptied with `clear`.
    pub fn calls(&self, clear: bool) -> Vec<Value> {
        let mut stubs = self.lock();
        if clear {
            std::mem::take(&mut stubs.calls)
        } else {
            stubs.calls.clone()
        }
    }

    /// The scripted answer to a call, if `plugin.operation` is stubbed.
    pub(crate) fn answer(
        &self,
        caller: &str,
        plugin: &str,
        operation: &str,
        input: &str,
    ) -> Option<Result<String, WitError>> {
        let mut stubs = self.lock();
        let answer = stubs
            .answers
            .get(&(plugin.to_owned(), operation.to_owned()))?
            .clone();
        stubs.calls.push(json!({
            "plugin": plugin,
            "operation": operation,
            "input": serde_json::from_str::<Value>(input).unwrap_or(Value::Null),
            "caller": caller,
        }));
        Some(match answer {
            StubAnswer::Output(v) => Ok(v.to_string()),
            StubAnswer::Error { code, message } => Err(match code.as_str() {
                "NOT_FOUND" => WitError::NotFound(message),
                "CONFLICT" => WitError::Conflict(message),
                "BAD_USER_INPUT" => WitError::InvalidInput(message),
                "FORBIDDEN" => WitError::Denied(message),
                "INTERNAL" => WitError::Internal(message),
                _ => WitError::Refused(Refusal { code, message }),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stubs> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
