//! WeChat web authorization (网页授权, `snsapi_base`): the redirect to
//! WeChat's authorize page, and the callback that exchanges the code for
//! the openid server-side and signs the consumer in.

use super::*;

/// `GET /t/{slug}/auth/wechat?next=…`
pub(super) async fn start(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    query: Result<Query<StartQuery>, QueryRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id(&headers);
    match start_inner(&app, addr, path, query, &uri, &headers).await {
        Ok(r) => r,
        Err(f) => failure_page(f, &rid),
    }
}

async fn start_inner(
    app: &AppState,
    addr: SocketAddr,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    query: Result<Query<StartQuery>, QueryRejection>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let tenant = tenant_of(app, addr, headers, path).await?;
    let Ok(Query(StartQuery { next: Some(next) })) = query else {
        return Err(Failure::BadLink);
    };
    if !valid_next(&tenant.slug, &next) {
        return Err(Failure::BadLink);
    }
    let db = &app.services.db;
    let mut conn = db
        .reader()
        .acquire()
        .await
        .map_err(Error::from)
        .map_err(internal("reading the tenant's WeChat app"))?;
    let wechat = core::wechat_app(&mut conn, &tenant.id)
        .await
        .map_err(internal("reading the tenant's WeChat app"))?
        .ok_or(Failure::NotConfigured)?;
    drop(conn);
    let auth = &app.consumer_auth;
    let key = auth
        .key(db)
        .await
        .map_err(internal("loading the consumer session key"))?;
    let base = base_url(&auth.config, headers, uri).ok_or(Failure::BadRequest)?;
    let callback = format!("{base}/t/{}/auth/wechat/callback", tenant.slug);
    let flow = Flow::new(&next, now());
    let state = key.sign_state(&tenant.id, &flow);
    let location = format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope=snsapi_base&state={}#wechat_redirect",
        auth.config.wechat_authorize_base.trim_end_matches('/'),
        encode(&wechat.app_id),
        encode(&callback),
        state,
    );
    let flow_cookie = cookie(
        FLOW_COOKIE,
        &flow.encode(),
        &flow_path(&tenant.slug),
        core::STATE_TTL_SECS,
        auth.config.secure_cookies,
    );
    redirect(&location, &[flow_cookie])
}

/// `GET /t/{slug}/auth/wechat/callback?code=…&state=…`
pub(super) async fn callback(
    State(app): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let rid = request_id(&headers);
    match callback_inner(&app, addr, path, query, &headers).await {
        Ok(r) => r,
        Err((f, slug)) => {
            let mut res = failure_page(f, &rid);
            // A sign-in that failed is over: forget its flow.
            if let Some(slug) = slug
                && let Ok(v) = HeaderValue::from_str(&cookie(
                    FLOW_COOKIE,
                    "",
                    &flow_path(&slug),
                    0,
                    app.consumer_auth.config.secure_cookies,
                ))
            {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
    }
}

async fn callback_inner(
    app: &AppState,
    addr: SocketAddr,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, (Failure, Option<String>)> {
    let tenant = tenant_of(app, addr, headers, path)
        .await
        .map_err(|f| (f, None))?;
    let slug = tenant.slug.clone();
    let fail = |f: Failure| (f, Some(slug.clone()));
    let Ok(Query(CallbackQuery {
        code: Some(code),
        state: Some(state),
    })) = query
    else {
        return Err(fail(Failure::BadLink));
    };
    let db = &app.services.db;
    let auth = &app.consumer_auth;
    let key = auth
        .key(db)
        .await
        .map_err(internal("loading the consumer session key"))
        .map_err(fail)?;
    let at = now();
    let flow = cookies(headers, FLOW_COOKIE)
        .into_iter()
        .filter_map(Flow::decode)
        .find(|f| key.verify_state(&tenant.id, f, &state, at))
        .ok_or_else(|| fail(Failure::Expired))?;
    if !valid_next(&tenant.slug, &flow.next) {
        return Err(fail(Failure::BadLink));
    }
    if code.is_empty() || code.len() > 512 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(fail(Failure::BadLink));
    }
    let creds = {
        let mut conn = db
            .reader()
            .acquire()
            .await
            .map_err(Error::from)
            .map_err(internal("reading the tenant's WeChat app"))
            .map_err(fail)?;
        let sealer = db
            .sealer()
            .map_err(internal("opening the WeChat app secret"))
            .map_err(fail)?;
        core::wechat_credentials(&mut conn, sealer, &tenant.id)
            .await
            .map_err(internal("opening the tenant's WeChat app"))
            .map_err(fail)?
            .ok_or_else(|| fail(Failure::NotConfigured))?
    };
    let openid = exchange(auth, &creds, &code).await.map_err(fail)?;
    let person_id = identify(db, &tenant.id, &openid).await.map_err(fail)?;
    let session = Session::new(
        &tenant.id,
        WECHAT_OPENID,
        &openid,
        &person_id,
        now(),
        auth.ttl_secs(),
    );
    let secure = auth.config.secure_cookies;
    let session_cookie = cookie(
        SESSION_COOKIE,
        &key.sign_session(&session),
        &session_path(&slug),
        auth.ttl_secs(),
        secure,
    );
    let clear_flow = cookie(FLOW_COOKIE, "", &flow_path(&slug), 0, secure);
    tracing::info!(person = %person_id, "consumer signed in with WeChat");
    redirect(&flow.next, &[session_cookie, clear_flow]).map_err(fail)
}

/// WeChat's answer to the code exchange: the openid, or an error code
/// (often with HTTP 200 and `text/plain`).
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    openid: Option<String>,
    errcode: Option<i64>,
    errmsg: Option<String>,
}

/// Exchanges `code` for the consumer's openid. Nothing of the secret, the
/// code or the access token reaches a log.
async fn exchange(
    auth: &ConsumerAuth,
    creds: &core::WechatCredentials,
    code: &str,
) -> Result<String, Failure> {
    let url = format!(
        "{}/sns/oauth2/access_token?appid={}&secret={}&code={}&grant_type=authorization_code",
        auth.config.wechat_api_base.trim_end_matches('/'),
        encode(&creds.app_id),
        encode(&creds.app_secret),
        encode(code),
    );
    let refused = |why: &str| {
        tracing::warn!(app_id = %creds.app_id, "WeChat code exchange failed: {why}");
        Failure::WechatRefused
    };
    let mut res = auth
        .http
        .get(url)
        .send()
        .await
        // The URL holds the secret: never let it into a message.
        .map_err(|e| refused(&e.without_url().to_string()))?;
    let status = res.status();
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| refused(&e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_WECHAT_ANSWER {
            return Err(refused("the answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|_| refused(&format!("HTTP {status} with an answer that is not JSON")))?;
    if let Some(code) = answer.errcode.filter(|c| *c != 0) {
        let msg = answer.errmsg.unwrap_or_default();
        let msg: String = msg.chars().take(200).collect();
        return Err(refused(&format!("errcode {code}: {msg}")));
    }
    let openid = answer
        .openid
        .ok_or_else(|| refused(&format!("HTTP {status} without an openid")))?;
    let plausible = (1..=128).contains(&openid.len())
        && openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plausible {
        return Err(refused("the openid is malformed"));
    }
    Ok(openid)
}

/// The person behind the openid, created on first sign-in.
async fn identify(db: &keel_core::Db, tenant: &TenantId, openid: &str) -> Result<String, Failure> {
    // A concurrent first sign-in of the same openid may claim it first: the
    // retry finds it.
    for attempt in 0..2 {
        let mut tx = db
            .begin()
            .await
            .map_err(internal("identifying a consumer"))?;
        let out = persons::identify(
            &mut tx,
            tenant,
            Identify {
                identifiers: vec![(WECHAT_OPENID.to_owned(), openid.to_owned())],
                attributes: None,
                merge: false,
            },
            "consumer-auth:wechat",
        )
        .await;
        match out {
            Ok(found) => {
                tx.commit()
                    .await
                    .map_err(Error::from)
                    .map_err(internal("identifying a consumer"))?;
                return Ok(found.person.id);
            }
            Err(Error::Conflict(_)) if attempt == 0 => continue,
            Err(Error::BadInput { .. }) => return Err(Failure::WechatRefused),
            Err(e) => return Err(internal("identifying a consumer")(e)),
        }
    }
    Err(Failure::Internal)
}
