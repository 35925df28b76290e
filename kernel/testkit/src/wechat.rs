//! A fake of WeChat's web authorization (网页授权) endpoints on a loopback
//! port, for tests of consumer sign-in: the authorize page redirects back
//! at once with a single-use code, and the code exchange answers as WeChat
//! does (HTTP 200, `text/plain`, errors as `{"errcode", "errmsg"}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The app id the fake accepts.
pub const APP_ID: &str = "wx0123456789abcdef";
/// The app secret the fake accepts.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// WeChat's authorize page and code exchange, as far as the kernel sees them.
#[derive(Debug, Default)]
pub struct Fake {
    /// The openid the next authorization hands out.
    pub openid: String,
    /// Codes handed out and not yet exchanged (WeChat's are single-use).
    pub codes: HashMap<String, String>,
    pub issued: u64,
    /// The query string of the last authorize request, as sent.
    pub last_authorize: String,
    pub exchanges: u64,
}

/// The fake server: its base URL and what it saw.
#[derive(Clone, Debug)]
pub struct FakeWechat {
    pub url: String,
    pub state: Arc<Mutex<Fake>>,
}

impl FakeWechat {
    /// Starts the fake; it signs consumers in as `o-alice` until told otherwise.
    pub async fn start() -> FakeWechat {
        let state = Arc::new(Mutex::new(Fake {
            openid: "o-alice".into(),
            ..Fake::default()
        }));
        let router = axum::Router::new()
            .route("/connect/oauth2/authorize", axum::routing::get(authorize))
            .route("/sns/oauth2/access_token", axum::routing::get(access_token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakeWechat { url, state }
    }

    /// The openid the next sign-in gets.
    pub fn signs_in_as(&self, openid: &str) {
        self.state.lock().unwrap().openid = openid.into();
    }
}

async fn authorize(
    State(fake): State<Arc<Mutex<Fake>>>,
    RawQuery(raw): RawQuery,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut f = fake.lock().unwrap();
    f.last_authorize = raw.unwrap_or_default();
    f.issued += 1;
    let code = format!("code{}", f.issued);
    let openid = f.openid.clone();
    f.codes.insert(code.clone(), openid);
    let to = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

async fn access_token(
    State(fake): State<Arc<Mutex<Fake>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut f = fake.lock().unwrap();
    f.exchanges += 1;
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let body = if get("appid") != APP_ID || get("secret") != SECRET {
        json!({"errcode": 40125, "errmsg": "invalid appsecret"})
    } else if get("grant_type") != "authorization_code" {
        json!({"errcode": 40002, "errmsg": "invalid grant_type"})
    } else if let Some(openid) = f.codes.remove(get("code")) {
        json!({"access_token": "ACCESS_TOKEN_SECRET", "expires_in": 7200,
               "refresh_token": "REFRESH", "openid": openid, "scope": "snsapi_base"})
    } else {
        json!({"errcode": 40029, "errmsg": "invalid code"})
    };
    // WeChat answers 200 with text/plain, errors included.
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        body.to_string(),
    )
        .into_response()
}
