//! Calls to the operations other plugins of the same tenant offer
//! (contract 0.2): only those this plugin's manifest declares under `calls`
//! and the tenant granted. The callee runs with its own capabilities and
//! namespace, inside this call's transaction: both commit or neither.
//!
//! ```no_run
//! # use serde::{Deserialize, Serialize};
//! # fn f(person: &keel_sdk::persons::Person, order_id: &str) -> keel_sdk::Result<()> {
//! #[derive(Serialize)]
//! struct Spend<'a> { person: &'a str, points: i64, idempotency_key: &'a str }
//! #[derive(Deserialize)]
//! struct Balance { balance: i64 }
//! let after: Balance = keel_sdk::plugins::call(
//!     "rewards", "spendPoints",
//!     &Spend { person: &person.id, points: 100, idempotency_key: order_id },
//! )?;
//! # let _ = after.balance;
//! # Ok(())
//! # }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::keel::plugin::plugins as wit;
use crate::{Error, Result};

/// Runs `operation` of `plugin` with `input` (serialized as a JSON object)
/// and decodes its output as `O`.
///
/// The callee's typed errors come back as they are — its
/// [`Error::Refused`] keeps its code (`INSUFFICIENT_POINTS`), a
/// [`Error::NotFound`] stays one — so returning them with `?` passes them
/// on to this plugin's caller. A callee that traps fails with
/// [`Error::Internal`]; an operation not granted is [`Error::Denied`].
pub fn call<I: Serialize, O: DeserializeOwned>(
    plugin: &str,
    operation: &str,
    input: &I,
) -> Result<O> {
    let input = serde_json::to_string(input).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let output = wit::call(plugin, operation, &input)?;
    serde_json::from_str(&output)
        .map_err(|e| Error::Internal(format!("the output of {plugin}.{operation}: {e}")))
}
