//! The consumer page: the URL printed on the pack opens it. The page asks
//! for the phone's location (optional), calls the public `scan` operation
//! and says the verdict in plain words.
//!
//! Nothing from the request is written into the HTML: the script reads the
//! code from the address bar and renders with `textContent`.

use keel_sdk::{Context, Result};
use serde::{Deserialize, Serialize};

const SCAN_PAGE: &str = include_str!("../assets/scan.html");
const NOT_FOUND_PAGE: &str = include_str!("../assets/not-found.html");

#[derive(Deserialize)]
pub(crate) struct PageInput {
    path: String,
}

/// The kernel's page protocol: a status and an HTML document.
#[derive(Serialize)]
pub(crate) struct Page {
    status: u16,
    html: &'static str,
}

pub(crate) fn page(_ctx: &Context, input: PageInput) -> Result<Page> {
    let segments: Vec<&str> = input.path.split('/').filter(|s| !s.is_empty()).collect();
    let is_scan = matches!(segments.as_slice(), ["c", _])
        || matches!(segments.as_slice(), ["01", _, "10", _, "21", _]);
    Ok(if is_scan {
        Page {
            status: 200,
            html: SCAN_PAGE,
        }
    } else {
        Page {
            status: 404,
            html: NOT_FOUND_PAGE,
        }
    })
}
