//! The HTTP API (JSON, versioned under `/v1`, specified in
//! `lambda/openapi.yaml`): one router for the local server and the Lambda
//! entry point. Every client mistake is a 4xx with
//! `{"error": CODE, "message": …}`; a 5xx only for a store failure.
//! Factory and admin endpoints need a caller ([`crate::auth`]); device
//! authentication needs none.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use firmware::record::{HwId, ProvisioningRecord};
use firmware::P256PublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::audit::AuditEntry;
use crate::auth::{new_token, token_hash, Authenticator, Identity};
use crate::guard::DeviceGuard;
use crate::model::{check_token_name, Caller, Device, Role, TokenInfo};
use crate::release::{self, ReleaseError, MAX_RELEASE};
use crate::store::{Activation, Challenge, ChallengeRefusal, Store, StoreError};
pub use firmware::api::{
    ActivateRequest, ChallengeRequest, ChallengeResponse, DeviceCopy, DeviceView, EncKeyEntry,
    ErrorBody, ImageUpload, NewTokenRequest, ProvisionRequest, ProvisionResponse, ReleaseView,
    RevokeRequest, TokenList, TokenView, VerifyRequest, VerifyResponse,
};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// Largest request body of the release uploads: a [`MAX_RELEASE`]-byte
/// image in base64, in its JSON object.
pub const MAX_RELEASE_BODY: usize = MAX_RELEASE / 3 * 4 + 4096;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub store: Arc<dyn Store>,
    /// Provisioning-authority keys whose records activation accepts.
    pub authorities: Arc<Vec<P256PublicKey>>,
    /// Who is calling.
    pub auth: Arc<dyn Authenticator>,
    /// Rate limits and refusal counts of the device endpoints.
    pub guard: Arc<DeviceGuard>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// An API error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds, for a `429`.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(seconds.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many device requests; try again later",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.code.into(),
                message: self.message.clone(),
            }),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = if status == StatusCode::BAD_REQUEST {
            "bad_request"
        } else {
            "bad_body"
        };
        Self::new(status, code, r.body_text())
    }
}

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        let status = match e {
            ReleaseError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ReleaseError::WrappedKeyLength { .. } => {
                tracing::error!(error = %e, "stored wrapped key does not fit its release");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "store failure",
                );
            }
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::Revoked(_) => StatusCode::FORBIDDEN,
            StoreError::UnknownSerial(_) => StatusCode::NOT_FOUND,
            StoreError::HwIdMismatch { .. }
            | StoreError::AlreadyActive(_)
            | StoreError::NameTaken(_) => StatusCode::CONFLICT,
            StoreError::UnknownToken(_) | StoreError::UnknownRelease(_) => StatusCode::NOT_FOUND,
            StoreError::NoDeviceKey(_) => StatusCode::CONFLICT,
            StoreError::UnknownOrder(_)
            | StoreError::OrderClosed(_)
            | StoreError::OrderExhausted(_)
            | StoreError::NotOnAllowList(_)
            | StoreError::WrongProduct(_) => StatusCode::FORBIDDEN,
            StoreError::SerialsExhausted => StatusCode::INSUFFICIENT_STORAGE,
            _ => {
                // The caller learns nothing of the cause; the log (inside
                // the request's span, with its id) does.
                tracing::error!(error = %e, "store failure");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "store failure",
                );
            }
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth.identify(parts).await? {
            Identity::Caller(c) => Ok(c),
            Identity::Anonymous => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "this endpoint needs a factory or admin credential",
            )),
            Identity::Refused(code) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                code,
                match code {
                    "token_revoked" => "this token was revoked",
                    _ => "this token has expired",
                },
            )),
        }
    }
}

/// The TCP peer of a local-server connection, plain or TLS (serve the
/// router `into_make_service_with_connect_info::<PeerAddr>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// The client's address, where the entry point knows it: the TCP peer of
/// the local server, or API Gateway's `sourceIp`.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for Source {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        use lambda_http::request::RequestContext;
        if let Some(axum::extract::ConnectInfo(PeerAddr(peer))) =
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<PeerAddr>>()
        {
            return Ok(Self(Some(peer.ip())));
        }
        let ip = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            _ => None,
        };
        Ok(Self(ip.and_then(|ip| ip.parse().ok())))
    }
}

/// Refuse (and audit) a caller whose role does not include `needed`.
async fn require(
    store: &dyn Store,
    caller: &Caller,
    needed: Role,
    action: &str,
    subject: &str,
) -> Result<(), ApiError> {
    if caller.role.allows(needed) {
        return Ok(());
    }
    let refusal = ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{action} needs the {} role", needed.as_str()),
    );
    audited(
        store,
        caller.actor(),
        action,
        subject.to_owned(),
        Err::<(), _>(refusal),
    )
    .await
}

fn parse_hw_id(text: &str) -> Result<HwId, ApiError> {
    HwId::parse_hex(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_hw_id",
            "hw_id must be 16 hex digits",
        )
    })
}

/// A device as the API shows it.
pub fn device_view(d: &Device) -> DeviceView {
    DeviceView {
        serial: d.serial,
        hw_id: d.hw_id.to_string(),
        status: d.status.as_str().into(),
        product: d.product.clone(),
        created_at: d.created_at,
        updated_at: d.updated_at,
        key_origin: d.key_origin.map(|o| o.as_str().into()),
    }
}

/// Write the audit entry for an operation's result (outcome `ok` or the
/// refusal's code) and pass the result on. Nothing is answered unaudited.
async fn audited<T>(
    store: &dyn Store,
    actor: String,
    action: &str,
    subject: String,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    audited_about(store, None, actor, action, subject, result).await
}

/// [`audited`], about the device `hw_id` when given (the entry goes to
/// that device's chain: device traffic never meets in one item).
async fn audited_about<T>(
    store: &dyn Store,
    hw_id: Option<HwId>,
    actor: String,
    action: &str,
    subject: String,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code,
    };
    let entry = AuditEntry {
        actor,
        action: action.into(),
        subject,
        outcome: outcome.into(),
    };
    match hw_id {
        Some(hw_id) => store.audit_device(hw_id, &entry).await?,
        None => store.audit(&entry).await?,
    };
    result
}

/// The request id: the caller's `x-request-id` if it is a plain token (up to
/// 64 of `[A-Za-z0-9._-]`), else API Gateway's, else a new random one.
fn request_id(req: &axum::extract::Request) -> String {
    use lambda_http::request::RequestContext;
    let plain = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if let Some(v) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| plain(v))
    {
        return v.to_owned();
    }
    let gateway = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    gateway.filter(|v| plain(v)).unwrap_or_else(|| {
        let mut id = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        hex::encode(id)
    })
}

/// Every request in a span with its id, method and path; one line when it
/// is answered (an error line for a 5xx, whose cause is logged inside the
/// span); the id goes back in `x-request-id`.
async fn log_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let id = request_id(&req);
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, ms, "answered");
        } else {
            tracing::info!(status, ms, "answered");
        }
    });
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn provision(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<ProvisionRequest>, JsonRejection>,
) -> Result<Json<ProvisionResponse>, ApiError> {
    let Json(req) = body?;
    let hw_id = parse_hw_id(&req.hw_id)?;
    if req.product.as_deref().is_some_and(|p| {
        p.is_empty() || p.len() > 16 || !p.bytes().all(|b| (0x20..=0x7e).contains(&b))
    }) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_product",
            "product: 1 to 16 printable ASCII characters",
        ));
    }
    let store = Arc::clone(&state.store);
    if !caller.role.allows(Role::Factory) {
        let subject = format!("hw_id:{hw_id}");
        require(
            store.as_ref(),
            &caller,
            Role::Factory,
            "provision",
            &subject,
        )
        .await?;
    }
    let p = store
        .provision_under(
            hw_id,
            req.product.as_deref(),
            caller.order.as_deref(),
            &caller.actor(),
        )
        .await?;
    Ok(Json(ProvisionResponse {
        serial: p.device.serial,
        hw_id: p.device.hw_id.to_string(),
        status: p.device.status.as_str().into(),
        created: p.created,
    }))
}

async fn device(
    State(state): State<AppState>,
    _caller: Caller,
    Path(serial): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let serial: u32 = serial.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_serial",
            "serial must be a positive integer",
        )
    })?;
    let store = Arc::clone(&state.store);
    async move {
        let d = store
            .device_by_serial(serial)
            .await?
            .ok_or(StoreError::UnknownSerial(serial))?;
        Ok(Json(device_view(&d)))
    }
    .await
}

fn parse_serial(text: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_serial",
            "serial must be a positive integer",
        )
    })
}

async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
    body: Result<Json<ActivateRequest>, JsonRejection>,
) -> Result<Json<DeviceView>, ApiError> {
    let serial = parse_serial(&serial)?;
    let Json(req) = body?;
    let bytes = hex::decode(&req.record)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_hex", "record must be hex"))?;
    let record_hash: [u8; 32] = Sha256::digest(&bytes).into();
    let authorities = Arc::clone(&state.authorities);
    let store = Arc::clone(&state.store);
    async move {
        let subject = format!("serial:{serial}");
        require(store.as_ref(), &caller, Role::Factory, "activate", &subject).await?;
        // A record that fails here is refused and audited; the store audits
        // the rest.
        let record = match check_record(&bytes, serial, &authorities) {
            Ok(r) => r,
            Err(refusal) => {
                let subject = format!("{subject} record:{}", hex::encode(record_hash));
                return audited(
                    store.as_ref(),
                    caller.actor(),
                    "activate",
                    subject,
                    Err(refusal),
                )
                .await;
            }
        };
        let activation = Activation {
            hw_id: record.body.hw_id,
            device_pubkey: *record.body.device_pubkey.sec1(),
            key_origin: record.body.key_origin,
            record_hash,
        };
        let device = store.activate(serial, &activation, &caller.actor()).await?;
        Ok(Json(device_view(&device)))
    }
    .await
}

/// Parse a provisioning record, check its signature against the configured
/// authorities and that it names `serial`.
fn check_record(
    bytes: &[u8],
    serial: u32,
    authorities: &[P256PublicKey],
) -> Result<ProvisioningRecord, ApiError> {
    let record = ProvisioningRecord::parse(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_record", e.to_string()))?;
    record.verify_signature(authorities).map_err(|e| {
        let code = match e {
            firmware::record::RecordError::UnknownAuthority => "unknown_authority",
            _ => "bad_signature",
        };
        ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
    })?;
    if record.body.serial != serial {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "serial_mismatch",
            "the record is for another serial",
        ));
    }
    Ok(record)
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Result<Json<DeviceView>, ApiError> {
    let serial = parse_serial(&serial)?;
    let Json(req) = body?;
    if req.reason.is_empty() || req.reason.chars().count() > 256 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_reason",
            "reason: 1 to 256 characters",
        ));
    }
    let store = Arc::clone(&state.store);
    async move {
        let subject = format!("serial:{serial}");
        require(store.as_ref(), &caller, Role::Admin, "revoke", &subject).await?;
        let device = store.revoke(serial, &req.reason, &caller.actor()).await?;
        Ok(Json(device_view(&device)))
    }
    .await
}

/// A token as the API shows it (without its text).
pub fn token_view(t: &TokenInfo) -> TokenView {
    TokenView {
        name: t.name.clone(),
        role: t.role.as_str().into(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        order: t.order.clone(),
        token: None,
    }
}

async fn tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, ApiError> {
    let store = Arc::clone(&state.store);
    async move {
        require(store.as_ref(), &caller, Role::Admin, "token.list", "tokens").await?;
        let tokens = store.tokens().await?.iter().map(token_view).collect();
        Ok(Json(TokenList { tokens }))
    }
    .await
}

async fn add_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewTokenRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let Json(req) = body?;
    check_token_name(&req.name)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "bad_name", why))?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_role",
            "role: factory or admin",
        )
    })?;
    if req.expires_at.is_some_and(|t| t <= crate::unix_now()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_expiry",
            "expires_at: a time in the future, Unix seconds",
        ));
    }
    let store = Arc::clone(&state.store);
    async move {
        let subject = format!("token:{}", req.name);
        require(store.as_ref(), &caller, Role::Admin, "token.add", &subject).await?;
        let text = new_token();
        let info = store
            .add_token_for(
                &req.name,
                role,
                &token_hash(&text),
                req.expires_at,
                req.order.as_deref(),
                &caller.actor(),
            )
            .await?;
        let mut view = token_view(&info);
        view.token = Some(text);
        Ok((StatusCode::CREATED, Json(view)))
    }
    .await
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    check_token_name(&name)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "bad_name", why))?;
    let store = Arc::clone(&state.store);
    async move {
        let subject = format!("token:{name}");
        require(
            store.as_ref(),
            &caller,
            Role::Admin,
            "token.revoke",
            &subject,
        )
        .await?;
        if caller.name == name {
            // An administrator cannot lock the API out by revoking the token
            // in hand; `provisiond token revoke` on the store can.
            return audited(
                store.as_ref(),
                caller.actor(),
                "token.revoke",
                subject,
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "own_token",
                    "a token cannot revoke itself through the API",
                )),
            )
            .await;
        }
        let info = store.revoke_token(&name, &caller.actor()).await?;
        Ok(Json(token_view(&info)))
    }
    .await
}

/// `GET /v1/devices?hw_id=` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// 16 hex digits.
    pub hw_id: String,
}

async fn device_by_hw_id(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<axum::extract::Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeviceView>, ApiError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let hw_id = parse_hw_id(&q.hw_id)?;
    let store = Arc::clone(&state.store);
    async move {
        let d = store.device_by_hw_id(hw_id).await?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_hw_id",
                format!("no device with hw_id {hw_id}"),
            )
        })?;
        Ok(Json(device_view(&d)))
    }
    .await
}

/// How long a challenge may be answered, in seconds.
pub const CHALLENGE_TTL: i64 = 60;

pub use firmware::auth::{auth_digest, AUTH_CONTEXT};

async fn challenge(
    State(state): State<AppState>,
    Source(source): Source,
    body: Result<Json<ChallengeRequest>, JsonRejection>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let Json(req) = body?;
    state
        .guard
        .admit(source, req.serial, std::time::Instant::now())
        .map_err(ApiError::rate_limited)?;
    let mut id = [0u8; 16];
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let c = Challenge {
        id: hex::encode(id),
        serial: req.serial,
        nonce,
        expires_at: crate::unix_now() + CHALLENGE_TTL,
    };
    let store = Arc::clone(&state.store);
    async move {
        // Only an active device gets a challenge. Unknown, not yet
        // activated and revoked serials get the same answer, after the same
        // one read, so the answer does not tell them apart.
        let active = store
            .device_by_serial(c.serial)
            .await?
            .is_some_and(|d| d.status == crate::model::DeviceStatus::Active);
        if !active {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_device",
                "no active device with this serial",
            ));
        }
        store.create_challenge(&c).await?;
        Ok(Json(ChallengeResponse {
            challenge_id: c.id,
            nonce: hex::encode(c.nonce),
            expires_at: c.expires_at,
        }))
    }
    .await
}

fn refused(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

async fn verify(
    State(state): State<AppState>,
    Source(source): Source,
    body: Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let Json(req) = body?;
    state
        .guard
        .admit(source, req.serial, std::time::Instant::now())
        .map_err(ApiError::rate_limited)?;
    let hw_id = parse_hw_id(&req.hw_id)?;
    let signature = <[u8; 64]>::try_from(
        hex::decode(&req.signature).unwrap_or_default().as_slice(),
    )
    .map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_hex",
            "signature must be 64 bytes of hex",
        )
    })?;
    let (store, guard) = (Arc::clone(&state.store), Arc::clone(&state.guard));
    async move {
        let outcome = async {
            let c = match store
                .consume_challenge(&req.challenge_id, crate::unix_now())
                .await?
            {
                Ok(c) => c,
                Err(ChallengeRefusal::Unknown) => {
                    return Err(refused("unknown_challenge", "unknown challenge"))
                }
                Err(ChallengeRefusal::Replayed) => {
                    return Err(refused("replayed", "challenge already used"))
                }
                Err(ChallengeRefusal::Expired) => {
                    return Err(refused("expired", "challenge expired"))
                }
            };
            if c.serial != req.serial {
                return Err(refused(
                    "challenge_mismatch",
                    "challenge was issued to another serial",
                ));
            }
            let d = store
                .device_by_serial(req.serial)
                .await?
                .ok_or_else(|| refused("unknown_device", "unknown serial"))?;
            match d.status {
                crate::model::DeviceStatus::Active => {}
                crate::model::DeviceStatus::Revoked => {
                    return Err(refused("revoked", "device revoked"))
                }
                crate::model::DeviceStatus::FactoryOnly => {
                    return Err(refused("not_active", "device not activated"))
                }
            }
            if d.hw_id != hw_id {
                return Err(refused("hw_id_mismatch", "hw_id does not match the serial"));
            }
            let key = d
                .device_pubkey
                .and_then(|k| P256PublicKey::from_sec1(&k).ok())
                .ok_or_else(|| refused("not_active", "device has no key"))?;
            key.verify_digest_raw(&auth_digest(&c.nonce, hw_id, req.serial), &signature)
                .map_err(|_| refused("bad_signature", "signature does not verify"))?;
            Ok(req.serial)
        }
        .await;
        let outcome = match outcome {
            // A refusal is counted, not chained: anyone can send junk here,
            // and the chains (each shared by many devices) must not grow
            // with it.
            // The counts go to the log as one entry per interval.
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                if let Some(counts) = guard.count_refusal(e.code, std::time::Instant::now()) {
                    store
                        .audit(&AuditEntry {
                            actor: "anonymous".into(),
                            action: "auth.refused".into(),
                            subject: counts,
                            outcome: "counted".into(),
                        })
                        .await?;
                }
                Err(e)
            }
            other => {
                let challenge: String = req.challenge_id.chars().take(64).collect();
                audited_about(
                    store.as_ref(),
                    Some(hw_id),
                    format!("device:{}", req.serial),
                    "auth.verify",
                    format!("challenge:{challenge}"),
                    other,
                )
                .await
            }
        };
        outcome.map(|serial| {
            Json(VerifyResponse {
                authenticated: true,
                serial,
            })
        })
    }
    .await
}

/// A release name from the path.
fn parse_release_name(name: &str) -> Result<&str, ApiError> {
    if firmware::api::is_plain_name(name) {
        Ok(name)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_name",
            "release names: 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot",
        ))
    }
}

/// The image of an upload (its size is bounded by the routes' body limit,
/// and checked against [`MAX_RELEASE`] with the image).
fn decode_image(upload: &ImageUpload) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(&upload.image)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_image",
                format!("image: not base64: {e}"),
            )
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `GET /v1/registry/enc-keys`: every device that may receive copies of
/// releases (activated, not revoked), with its public key, in the form
/// `keytool image wrap --registry` reads.
async fn enc_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<EncKeyEntry>>, ApiError> {
    let store = Arc::clone(&state.store);
    async move {
        require(
            store.as_ref(),
            &caller,
            Role::Admin,
            "registry.enc-keys",
            "devices",
        )
        .await?;
        let mut out = Vec::new();
        for d in store.devices().await? {
            let Some(key) = d.device_pubkey else { continue };
            if d.status == crate::model::DeviceStatus::Revoked {
                continue;
            }
            let key = P256PublicKey::from_sec1(&key)
                .map_err(|_| StoreError::Corrupt(format!("serial {}: public key", d.serial)))?;
            out.push(EncKeyEntry {
                device: d.serial.to_string(),
                enc_public_key: signer::public_key::to_pem(&key),
            });
        }
        Ok(Json(out))
    }
    .await
}

/// `PUT /v1/releases/{name}`: keep an encrypted release (its AES key
/// wrapped for the station's key).
async fn put_release(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<ImageUpload>, JsonRejection>,
) -> Result<(StatusCode, Json<ReleaseView>), ApiError> {
    let name = parse_release_name(&name)?.to_owned();
    let Json(upload) = body?;
    let store = Arc::clone(&state.store);
    async move {
        let subject = format!("release:{name}");
        require(
            store.as_ref(),
            &caller,
            Role::Admin,
            "release.put",
            &subject,
        )
        .await?;
        let image = decode_image(&upload)?;
        if let Err(e) = release::enc_tlv_span(&image) {
            // Refused before the store is reached: audited here.
            return audited(
                store.as_ref(),
                caller.actor(),
                "release.put",
                subject,
                Err(e.into()),
            )
            .await;
        }
        let r = crate::model::Release::new(&name, image, crate::unix_now());
        let created = store.put_release(&r, &caller.actor()).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            Json(ReleaseView {
                name: r.name.clone(),
                bytes: r.image.len() as u64,
                sha256: hex::encode(r.sha256),
                created,
            }),
        ))
    }
    .await
}

/// `PUT /v1/releases/{name}/devices/{serial}`: keep one device's copy (only
/// its ENC TLV value is stored).
async fn put_copy(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, serial)): Path<(String, String)>,
    body: Result<Json<ImageUpload>, JsonRejection>,
) -> Result<Json<ReleaseView>, ApiError> {
    let name = parse_release_name(&name)?.to_owned();
    let serial = parse_serial(&serial)?;
    let Json(upload) = body?;
    let store = Arc::clone(&state.store);
    async move {
        let subject = format!("release:{name} serial:{serial}");
        require(
            store.as_ref(),
            &caller,
            Role::Admin,
            "release.wrap",
            &subject,
        )
        .await?;
        let copy = decode_image(&upload)?;
        let checked = store
            .release(&name)
            .await?
            .ok_or_else(|| ApiError::from(StoreError::UnknownRelease(name.clone())))
            .and_then(|r| Ok((release::wrapped_key_of(&r.image, &copy)?, r.sha256)));
        let (wrapped, sha256) = match checked {
            Ok(found) => found,
            // A refusal before the store is reached is audited here.
            Err(e) => {
                let actor = caller.actor();
                return audited(store.as_ref(), actor, "release.wrap", subject, Err(e)).await;
            }
        };
        store
            .put_wrapped_key(&name, serial, &wrapped, &caller.actor())
            .await?;
        Ok(Json(ReleaseView {
            name,
            bytes: copy.len() as u64,
            sha256: hex::encode(sha256),
            created: true,
        }))
    }
    .await
}

/// `GET /v1/releases/{name}/devices/{serial}`: the device's copy of the
/// release, for a device that is known, has a key and is not revoked.
async fn get_copy(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, serial)): Path<(String, String)>,
) -> Result<Json<DeviceCopy>, ApiError> {
    let name = parse_release_name(&name)?.to_owned();
    let serial = parse_serial(&serial)?;
    let store = Arc::clone(&state.store);
    async move {
        let subject = format!("release:{name} serial:{serial}");
        require(
            store.as_ref(),
            &caller,
            Role::Factory,
            "release.copy",
            &subject,
        )
        .await?;
        let device = store.device_by_serial(serial).await?;
        let hw_id = device.as_ref().map(|d| d.hw_id);
        let copy = async {
            crate::store::may_receive_copies(device, serial)?;
            let r = store
                .release(&name)
                .await?
                .ok_or_else(|| StoreError::UnknownRelease(name.clone()))?;
            let wrapped = store.wrapped_key(&name, serial).await?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_copy",
                    format!("release {name:?} has no copy for serial {serial}"),
                )
            })?;
            Ok::<_, ApiError>(release::copy_for(&r.image, &wrapped)?)
        }
        .await;
        let copy = audited_about(
            store.as_ref(),
            hw_id,
            caller.actor(),
            "release.copy",
            subject,
            copy,
        )
        .await?;
        use base64::Engine as _;
        Ok(Json(DeviceCopy {
            name,
            serial,
            sha256: sha256_hex(&copy),
            image: base64::engine::general_purpose::STANDARD.encode(&copy),
        }))
    }
    .await
}

/// The router: the same for the local server and the Lambda entry point.
pub fn router(state: AppState) -> Router {
    let releases = Router::new()
        .route("/v1/releases/{name}", put(put_release))
        .route(
            "/v1/releases/{name}/devices/{serial}",
            put(put_copy).get(get_copy),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_RELEASE_BODY));
    Router::new()
        .route("/v1/provision", post(provision))
        .route("/v1/devices/{serial}", get(device))
        .route("/v1/devices", get(device_by_hw_id))
        .route("/v1/devices/{serial}/activate", post(activate))
        .route("/v1/devices/{serial}/revoke", post(revoke))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/verify", post(verify))
        .route("/v1/tokens", get(tokens).post(add_token))
        .route("/v1/tokens/{name}/revoke", post(revoke_token))
        .route("/v1/registry/enc-keys", get(enc_keys))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .merge(releases)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}
