//! The consumer page: the URL printed on the pack opens it. The page asks
//! for the phone's location (optional), calls the public `scan` operation
//! and says the verdict in plain words.
//!
//! Nothing from the request is written into the HTML: the script reads the
//! code from the address bar and renders with `textContent`.

use keel_sdk::{Context, Result, config};
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
    html: String,
}

pub(crate) fn page(ctx: &Context, input: PageInput) -> Result<Page> {
    let segments: Vec<&str> = input.path.split('/').filter(|s| !s.is_empty()).collect();
    let is_scan = matches!(segments.as_slice(), ["c", _])
        || matches!(segments.as_slice(), ["01", _, "10", _, "21", _]);
    if !is_scan {
        return Ok(Page {
            status: 404,
            html: NOT_FOUND_PAGE.to_owned(),
        });
    }
    // Whether the consumer is signed in and how they can sign in: fixed
    // words for the script, nothing taken from the request.
    // (Asked only of an anonymous visitor: it is a database read.)
    let signed_in = ctx.consumer().is_some();
    let sign_in = match signed_in {
        true => "",
        false => match config::consumer_sign_in()?.as_deref() {
            Some("wechat_openid") => "wechat_openid",
            _ => "",
        },
    };
    let signed_in = if signed_in { "true" } else { "false" };
    Ok(Page {
        status: 200,
        html: SCAN_PAGE.replacen(
            "<body data-verdict=\"PENDING\">",
            &format!(
                "<body data-verdict=\"PENDING\" data-signed-in=\"{signed_in}\" data-sign-in=\"{sign_in}\">"
            ),
            1,
        ),
    })
}
