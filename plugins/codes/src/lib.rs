//! Keel's first-party `codes` plugin: one-item-one-code.
//!
//! Written only against `keel-sdk`, like any third-party plugin. The code
//! format itself lives in `keel-codes-core`; this crate is the business:
//!
//! - `products`, `batches` — products (SKUs of the kernel's catalogue), code
//!   batches (issue, activate, void, reprint) and the print file;
//! - `packing` — aggregation of units into cases and pallets;
//! - `regions`, `shipments` — sales regions (region nodes of the kernel's
//!   org tree) and shipments bound to them;
//! - `scan` — the public verification of a scan, with anti-diversion;
//! - `trace`, `reports`, `epcis` — traceability, per-day reports, EPCIS 2.0;
//! - `page` — the consumer page the printed URL opens;
//! - `upgrade` — moving codes 0.1's own products and regions into the
//!   kernel's catalogue and org tree.
//!
//! Nothing is stored per issued code: storage grows with batches, packing,
//! shipments and scans.

mod batches;
mod epcis;
mod model;
mod packing;
mod page;
mod products;
mod regions;
mod reports;
mod scan;
mod shipments;
mod trace;
mod upgrade;

use keel_sdk::records::{self, Expect};
use keel_sdk::{Result, plugin};
use serde::Deserialize;

/// The tenant's configuration (validated against the manifest's schema).
#[derive(Debug, Deserialize)]
pub(crate) struct Config {
    /// Ends in '/'; codes print as `{scan_base_url}c/{code}`.
    pub scan_base_url: String,
    #[serde(default = "default_invalid_scans_per_hour")]
    pub invalid_scans_per_hour: i64,
}

fn default_invalid_scans_per_hour() -> i64 {
    30
}

/// Enabling creates the tenant's code key once; upgrades keep it. Both
/// check that the catalogue and the org tree may be read, and move what
/// codes 0.1 kept of its own into them ([`upgrade`]), all in the call's
/// one transaction.
fn on_enable(config: Config) -> Result<()> {
    if !config.scan_base_url.ends_with('/') {
        return Err(keel_sdk::Error::invalid("scan_base_url must end with '/'"));
    }
    if records::get::<model::Settings>("settings", model::SETTINGS_KEY)?.is_none() {
        let settings = model::Settings {
            tenant_key: keel_codes_core::Key::from_bytes(model::random_bytes()?).to_hex(),
        };
        records::put("settings", model::SETTINGS_KEY, &settings, Expect::Absent)?;
    }
    upgrade::check_grants()?;
    upgrade::run()
}

plugin! {
    operations: {
        "codeProducts" => products::list,
        "codeProduct" => products::get,
        "createCodeProduct" => products::create,
        "codeBatches" => batches::list,
        "codeBatch" => batches::get,
        "issueCodeBatch" => batches::issue,
        "activateCodes" => batches::activate,
        "voidCodes" => batches::void,
        "reprintCode" => batches::reprint,
        "printFileChunk" => batches::print_file_chunk,
        "aggregateCodes" => packing::aggregate,
        "disaggregateCodes" => packing::disaggregate,
        "defineRegion" => regions::define,
        "regions" => regions::list,
        "region" => regions::get,
        "createShipment" => shipments::create,
        "cancelShipment" => shipments::cancel,
        "shipment" => shipments::get,
        "shipments" => shipments::list,
        "scan" => scan::scan,
        "traceCode" => trace::trace,
        "codeScans" => reports::scans,
        "diversionAlerts" => reports::diversions,
        "scanReport" => reports::report,
        "epcisChunk" => epcis::chunk,
        "page" => page::page,
    },
    on_enable: on_enable,
}
