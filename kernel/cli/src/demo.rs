//! `keel serve --demo`: the demo tenant with the first-party plugins
//! enabled and a small catalogue to scan — a product, a batch of activated
//! codes, regions and a running scan-to-win campaign.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use keel_core::TenantId;
use keel_gateway::Kernel;
use keel_host::{CallContext, Grants};
use serde_json::{Value, json};

/// What the demo has to show, printed on start.
#[derive(Debug)]
pub struct Demo {
    /// The printed URL of the demo batch's first code.
    pub scan_url: Option<String>,
}

/// The plugins the demo enables, with their configuration.
fn plugins(addr: SocketAddr) -> [(&'static str, Value); 3] {
    [
        (
            "codes",
            json!({"scan_base_url": format!("http://{addr}/t/demo/p/codes/")}),
        ),
        ("rewards", json!({})),
        ("cdp", json!({})),
    ]
}

/// Enables (or upgrades to the bundled version) `codes`, `rewards` and `cdp` for
/// the demo tenant, and seeds it once.
pub async fn prepare(kernel: &Kernel, tenant: &TenantId, addr: SocketAddr) -> Result<Demo> {
    let registry = kernel.registry();
    for (name, config) in plugins(addr) {
        let bundled = keel_plugins::get(name)
            .with_context(|| format!("the {name} plugin is not bundled"))?
            .manifest()
            .map_err(anyhow::Error::msg)?;
        let current = registry
            .list(tenant)
            .await?
            .into_iter()
            .find(|e| e.name == name && e.disabled_at.is_none());
        match current {
            Some(e) if e.version == bundled.version => {}
            Some(_) => {
                // A newer bundled version may ask for more (codes 0.2 reads
                // the kernel's catalogue and org tree): the demo grants it.
                let mut grants = Grants::all_requested(&bundled);
                grants.http_hosts.clear();
                kernel
                    .upgrade(tenant, name, &bundled.version, Some(grants))
                    .await
                    .with_context(|| format!("upgrading {name} for the demo tenant"))?;
            }
            None => {
                let mut grants = Grants::all_requested(&bundled);
                grants.http_hosts.clear();
                kernel
                    .enable(tenant, name, Some(&bundled.version), grants, config)
                    .await
                    .with_context(|| format!("enabling {name} for the demo tenant"))?;
            }
        }
    }
    seed(kernel, tenant).await
}

async fn call(
    kernel: &Kernel,
    tenant: &TenantId,
    plugin: &str,
    op: &str,
    input: Value,
) -> Result<Value> {
    let ctx = CallContext {
        caller: Some("cli:demo".into()),
        request_id: format!("demo-{op}"),
        ..CallContext::default()
    };
    kernel
        .call(tenant, plugin, op, input, ctx)
        .await
        .with_context(|| format!("demo: {plugin} {op}"))
}

/// A product, 1,000 activated codes, Guangdong and Shanghai, and a
/// campaign giving a coupon for each first scan — unless already there.
async fn seed(kernel: &Kernel, tenant: &TenantId) -> Result<Demo> {
    let existing = call(
        kernel,
        tenant,
        "codes",
        "codeProduct",
        json!({"sku": "DEMO-WINE"}),
    )
    .await?;
    if existing.is_null() {
        call(
            kernel,
            tenant,
            "codes",
            "createCodeProduct",
            json!({"sku": "DEMO-WINE", "name": "Demo Red Wine 750ml", "gtin": "6901234567892"}),
        )
        .await?;
        let batch = call(
            kernel,
            tenant,
            "codes",
            "issueCodeBatch",
            json!({"product": "DEMO-WINE", "lot": "DEMO-L1", "quantity": 1000,
                   "productionDate": "2026-11-01", "expiryDate": "2031-11-01"}),
        )
        .await?;
        call(
            kernel,
            tenant,
            "codes",
            "activateCodes",
            json!({"batch": batch["id"]}),
        )
        .await?;
        for (code, name, boundary) in [
            ("CN", "China", Value::Null),
            ("CN-GD", "Guangdong", square(109.6, 20.2, 117.3, 25.5)),
            ("CN-SH", "Shanghai", square(120.8, 30.6, 122.2, 31.9)),
        ] {
            call(
                kernel,
                tenant,
                "codes",
                "defineRegion",
                json!({"code": code, "name": name, "boundary": boundary}),
            )
            .await?;
        }
        // A coupon for every first scan: the demo tenant has no consumer
        // sign-in (no WeChat app), so its consumers are anonymous and may
        // win only prizes that need no person.
        let campaign = call(kernel, tenant, "rewards", "createCampaign", json!({"input": {
            "name": "Demo: a coupon for every first scan",
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2036-01-01T00:00:00Z",
            "rule": {"first_scan": true},
            "prizes": [{"id": "coupon", "name": "10% off coupon", "kind": "COUPON", "weight": 1, "stock": 200}],
        }})).await?;
        let coupons: Vec<String> = (1..=200).map(|n| format!("DEMO-{n:04}")).collect();
        call(
            kernel,
            tenant,
            "rewards",
            "addCoupons",
            json!({"campaign": campaign["id"], "prize": "coupon", "codes": coupons}),
        )
        .await?;
        call(
            kernel,
            tenant,
            "rewards",
            "setCampaignStatus",
            json!({"id": campaign["id"], "status": "ACTIVE"}),
        )
        .await?;
    }
    let batches = call(
        kernel,
        tenant,
        "codes",
        "codeBatches",
        json!({"product": "DEMO-WINE", "limit": 1}),
    )
    .await?;
    let scan_url = match batches.get(0).and_then(|b| b["id"].as_str()) {
        Some(id) => call(
            kernel,
            tenant,
            "codes",
            "reprintCode",
            json!({"batch": id, "serial": 1}),
        )
        .await?["url"]
            .as_str()
            .map(str::to_owned),
        None => None,
    };
    Ok(Demo { scan_url })
}

fn square(lon0: f64, lat0: f64, lon1: f64, lat1: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]})
}
