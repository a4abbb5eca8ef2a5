//! The router over a real SQLite store: provisioning is idempotent per chip,
//! and every client mistake is a 4xx with a JSON error body.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lambda::api::{router, AppState};
use lambda::auth::{token_hash, BearerTokens};
use lambda::guard::{DeviceGuard, Limits, Rate};
use lambda::model::Role;
use lambda::{SqliteStore, Store};
use tower::ServiceExt;

/// The tokens `app` registers.
const ADMIN: &str = "pvd_test-admin";
const FACTORY: &str = "pvd_test-factory";

/// A call as the administrator.
async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    call_as(app, Some(ADMIN), method, uri, body).await
}

async fn call_as(
    app: &axum::Router,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Body::from(body.to_owned())).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/records/");

fn authority() -> firmware::P256PublicKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let pem = std::fs::read_to_string(format!("{DATA}authority.pub.pem")).unwrap();
    let k = p256::PublicKey::from_public_key_pem(&pem).unwrap();
    firmware::P256PublicKey::from_sec1(k.to_encoded_point(false).as_bytes()).unwrap()
}

fn record_hex(name: &str) -> String {
    hex::encode(std::fs::read(format!("{DATA}{name}")).unwrap())
}

async fn app(dir: &tempfile::TempDir) -> axum::Router {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("reg.db")).unwrap());
    store
        .add_token("admin-1", Role::Admin, &token_hash(ADMIN), None, "operator")
        .await
        .unwrap();
    store
        .add_token(
            "line-1",
            Role::Factory,
            &token_hash(FACTORY),
            None,
            "operator",
        )
        .await
        .unwrap();
    router(AppState {
        auth: Arc::new(BearerTokens::new(Arc::clone(&store))),
        store,
        authorities: Arc::new(vec![authority()]),
        // The rate limits have their own test; here they would only slow
        // the device requests down.
        guard: Arc::new(DeviceGuard::new(Limits {
            per_source: Rate::OFF,
            per_serial: Rate::OFF,
            ..Limits::default()
        })),
    })
}

#[tokio::test]
async fn callers_need_a_token_with_the_right_role() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let provision = r#"{"hw_id":"1234567800000003"}"#;
    for token in [None, Some("pvd_unknown"), Some("not-a-token")] {
        let (s, v) = call_as(&app, token, "POST", "/v1/provision", provision).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
            "{token:?}"
        );
        let (s, _) = call_as(&app, token, "GET", "/v1/devices/1", "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, v) = call_as(&app, Some(FACTORY), "POST", "/v1/provision", provision).await;
    assert_eq!((s, v["serial"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, _) = call_as(&app, Some(FACTORY), "GET", "/v1/devices/1", "").await;
    assert_eq!(s, StatusCode::OK);
    // Revocation is for administrators only; the refusal is audited.
    let revoke = r#"{"reason":"lost"}"#;
    let (s, v) = call_as(&app, Some(FACTORY), "POST", "/v1/devices/1/revoke", revoke).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, _) = call_as(&app, Some(ADMIN), "POST", "/v1/devices/1/revoke", revoke).await;
    assert_eq!(s, StatusCode::OK);
    // Device endpoints need no credential (the device is revoked: no
    // challenge, but no 401 either).
    let (s, v) = call_as(&app, None, "POST", "/v1/auth/challenge", r#"{"serial":1}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_device"))
    );

    let store = SqliteStore::open(&dir.path().join("reg.db")).unwrap();
    let log = store.audit_log().await.unwrap();
    let summary: Vec<(String, String, String)> = log
        .iter()
        .map(|e| {
            (
                e.entry.actor.clone(),
                e.entry.action.clone(),
                e.entry.outcome.clone(),
            )
        })
        .collect();
    let expect = |actor: &str, action: &str, outcome: &str| {
        (actor.to_owned(), action.to_owned(), outcome.to_owned())
    };
    assert_eq!(
        summary[2..],
        [
            expect("factory:line-1", "provision", "ok"),
            expect("factory:line-1", "revoke", "forbidden"),
            expect("admin:admin-1", "revoke", "ok"),
        ]
    );
    assert_eq!(lambda::audit::verify_chain(log), Ok(5));
}

#[tokio::test]
async fn provision_is_idempotent_per_chip() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let (s, v) = call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000003","product":"sensor-v2"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["serial"], 1);
    assert_eq!(v["status"], "factory_only");
    assert_eq!(v["created"], true);
    let (_, v) = call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000003"}"#,
    )
    .await;
    assert_eq!(
        (v["serial"].clone(), v["created"].clone()),
        (1.into(), false.into())
    );
    let (_, v) = call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000004"}"#,
    )
    .await;
    assert_eq!(v["serial"], 2);
    let (s, v) = call(&app, "GET", "/v1/devices/1", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["hw_id"], "1234567800000003");
    assert_eq!(v["product"], "sensor-v2");
}

#[tokio::test]
async fn client_mistakes_are_4xx_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let cases = [
        (
            "POST",
            "/v1/provision",
            "{not json",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/provision",
            r#"{"hw_id": 5}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/provision",
            r#"{"hw_id":"1234567800000003","x":1}"#,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/provision",
            r#"{"hw_id":"12345"}"#,
            StatusCode::BAD_REQUEST,
            "bad_hw_id",
        ),
        (
            "POST",
            "/v1/provision",
            r#"{"hw_id":"1234567800000003","product":"way-too-long-product-name"}"#,
            StatusCode::BAD_REQUEST,
            "bad_product",
        ),
        (
            "GET",
            "/v1/devices/abc",
            "",
            StatusCode::BAD_REQUEST,
            "bad_serial",
        ),
        (
            "GET",
            "/v1/devices/99",
            "",
            StatusCode::NOT_FOUND,
            "unknown_serial",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let (s, v) = call(&app, method, uri, body).await;
        assert_eq!(s, status, "{method} {uri} {body}");
        assert!(s.is_client_error());
        if !code.is_empty() {
            assert_eq!(v["error"], code, "{method} {uri} {body}");
        }
        assert!(v["message"].is_string(), "{method} {uri} {body}: {v}");
    }
    let big = format!(
        r#"{{"hw_id":"1234567800000003","product":"{}"}}"#,
        "a".repeat(20_000)
    );
    let (s, _) = call(&app, "POST", "/v1/provision", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn activation_checks_the_signed_record_against_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    // The KAT record is for hw_id 1234567800000003 as serial 1.
    let (_, v) = call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000003"}"#,
    )
    .await;
    assert_eq!(v["serial"], 1);
    // The field of earlier versions is refused, not silently dropped.
    let old = format!(
        r#"{{"record":"{}","device_secret_hash":"{}"}}"#,
        record_hex("qemu-microbit.bin"),
        "ab".repeat(32)
    );
    let (s, _) = call(&app, "POST", "/v1/devices/1/activate", &old).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let body = format!(r#"{{"record":"{}"}}"#, record_hex("qemu-microbit.bin"));
    let (s, v) = call(&app, "POST", "/v1/devices/1/activate", &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["key_origin"], "station", "an old record: flags 0");
    let (s, _) = call(&app, "POST", "/v1/devices/1/activate", &body).await;
    assert_eq!(s, StatusCode::OK, "idempotent for the same record");

    let mut tampered = std::fs::read(format!("{DATA}qemu-microbit.bin")).unwrap();
    tampered[30] ^= 1;
    let bad = format!(r#"{{"record":"{}"}}"#, hex::encode(&tampered));
    let (s, v) = call(&app, "POST", "/v1/devices/1/activate", &bad).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("bad_signature"))
    );
    let wrong_serial = format!(r#"{{"record":"{}"}}"#, record_hex("qemu-microbit.bin"));
    let (_, _) = call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000004"}"#,
    )
    .await;
    let (s, v) = call(&app, "POST", "/v1/devices/2/activate", &wrong_serial).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("serial_mismatch"))
    );
    let (s, v) = call(&app, "POST", "/v1/devices/1/activate", r#"{"record":"zz"}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_hex"))
    );
    let (s, v) = call(&app, "POST", "/v1/devices/1/activate", r#"{"record":"00"}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_record"))
    );
    let (s, v) = call(&app, "POST", "/v1/devices/9/activate", &body).await;
    assert!(s.is_client_error(), "{v}");
}

#[tokio::test]
async fn revoked_devices_get_no_serial_and_lookup_by_hw_id_works() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000003"}"#,
    )
    .await;
    let (s, v) = call(&app, "GET", "/v1/devices?hw_id=1234567800000003", "").await;
    assert_eq!((s, v["serial"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, v) = call(&app, "GET", "/v1/devices?hw_id=1234567800000009", "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_hw_id"))
    );
    let (s, v) = call(&app, "GET", "/v1/devices?serial=1", "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/devices/1/revoke",
        r#"{"reason":"stolen"}"#,
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("revoked")));
    let (s, v) = call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000003"}"#,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked"))
    );
    let (s, v) = call(&app, "POST", "/v1/devices/1/revoke", r#"{"reason":""}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_reason"))
    );
    let (s, v) = call(&app, "POST", "/v1/devices/5/revoke", r#"{"reason":"x"}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_serial"))
    );
}

#[tokio::test]
async fn challenge_response_with_the_device_key() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::DecodePrivateKey;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000003"}"#,
    )
    .await;
    // No challenge for a device that is not active, nor for an unknown
    // serial: the same answer for both.
    for serial in [1, 99] {
        let (s, v) = call(
            &app,
            "POST",
            "/v1/auth/challenge",
            &format!(r#"{{"serial":{serial}}}"#),
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str(), v["message"].as_str()),
            (
                StatusCode::NOT_FOUND,
                Some("unknown_device"),
                Some("no active device with this serial")
            )
        );
    }
    let device_key = p256::ecdsa::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(format!("{DATA}device.pem")).unwrap(),
    )
    .unwrap();
    let hw = firmware::record::HwId::parse_hex("1234567800000003").unwrap();
    let answer = |c: &serde_json::Value, serial: u32, hw_id: &str| {
        let nonce: [u8; 32] = hex::decode(c["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sig: p256::ecdsa::Signature = device_key
            .sign_prehash(&lambda::api::auth_digest(&nonce, hw, serial))
            .unwrap();
        format!(
            r#"{{"challenge_id":"{}","serial":{serial},"hw_id":"{hw_id}","signature":"{}"}}"#,
            c["challenge_id"].as_str().unwrap(),
            hex::encode(sig.to_bytes())
        )
    };
    let body = format!(r#"{{"record":"{}"}}"#, record_hex("qemu-microbit.bin"));
    assert_eq!(
        call(&app, "POST", "/v1/devices/1/activate", &body).await.0,
        StatusCode::OK
    );
    let (_, c) = call(&app, "POST", "/v1/auth/challenge", r#"{"serial":1}"#).await;
    let good = answer(&c, 1, "1234567800000003");
    let (s, v) = call(&app, "POST", "/v1/auth/verify", &good).await;
    assert_eq!(
        (s, v["authenticated"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    let (s, v) = call(&app, "POST", "/v1/auth/verify", &good).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replayed"))
    );

    let (_, c) = call(&app, "POST", "/v1/auth/challenge", r#"{"serial":1}"#).await;
    let (s, v) = call(
        &app,
        "POST",
        "/v1/auth/verify",
        &answer(&c, 1, "1234567800000004"),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("hw_id_mismatch"))
    );
    let (_, c) = call(&app, "POST", "/v1/auth/challenge", r#"{"serial":1}"#).await;
    let mut forged = answer(&c, 1, "1234567800000003");
    let at = forged.rfind('"').unwrap() - 1;
    forged.replace_range(
        at..at + 1,
        if &forged[at..at + 1] == "0" { "1" } else { "0" },
    );
    let (s, v) = call(&app, "POST", "/v1/auth/verify", &forged).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature"))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/auth/verify",
        r#"{"challenge_id":"x","serial":1,"hw_id":"1234567800000003","signature":"00"}"#,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_hex"))
    );
    let sig64 = "00".repeat(64);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/auth/verify",
        &format!(
            r#"{{"challenge_id":"x","serial":1,"hw_id":"1234567800000003","signature":"{sig64}"}}"#
        ),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unknown_challenge"))
    );

    // A challenge answered for another serial.
    let (_, c) = call(&app, "POST", "/v1/auth/challenge", r#"{"serial":1}"#).await;
    let (s, v) = call(
        &app,
        "POST",
        "/v1/auth/verify",
        &answer(&c, 2, "1234567800000003"),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("challenge_mismatch"))
    );
    // A challenge past its time (stored as the API stores them, expired).
    let store = SqliteStore::open(&dir.path().join("reg.db")).unwrap();
    let old = lambda::Challenge {
        id: "0123456789abcdef0123456789abcdef".into(),
        serial: 1,
        nonce: [7; 32],
        expires_at: lambda::unix_now() - 1,
    };
    store.create_challenge(&old).await.unwrap();
    let stale = serde_json::json!({"challenge_id": old.id, "nonce": hex::encode(old.nonce)});
    let (s, v) = call(
        &app,
        "POST",
        "/v1/auth/verify",
        &answer(&stale, 1, "1234567800000003"),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("expired"))
    );
    // Revoked between the challenge and the answer.
    let (_, c) = call(&app, "POST", "/v1/auth/challenge", r#"{"serial":1}"#).await;
    let (s, _) = call(
        &app,
        "POST",
        "/v1/devices/1/revoke",
        r#"{"reason":"stolen"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/auth/verify",
        &answer(&c, 1, "1234567800000003"),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revoked"))
    );

    // The log holds the one success; the refusals are counted, not chained
    // one by one (a summary entry comes once per interval).
    let log = store.audit_log().await.unwrap();
    let auth: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e.entry.action.starts_with("auth."))
        .map(|e| (e.entry.action.as_str(), e.entry.outcome.as_str()))
        .collect();
    assert_eq!(auth, [("auth.verify", "ok")]);
}

#[tokio::test]
async fn device_requests_are_rate_limited_per_serial_and_refusals_summed() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("reg.db")).unwrap());
    let app = router(AppState {
        auth: Arc::new(BearerTokens::new(Arc::clone(&store))),
        store: Arc::clone(&store),
        authorities: Arc::new(vec![authority()]),
        guard: Arc::new(DeviceGuard::new(Limits {
            per_source: Rate::OFF,
            per_serial: Rate {
                per_second: 0.5,
                burst: 3.0,
            },
            summary_every: std::time::Duration::ZERO,
        })),
    });
    let junk = |serial: u32| {
        format!(
            r#"{{"challenge_id":"x","serial":{serial},"hw_id":"1234567800000003","signature":"{}"}}"#,
            "00".repeat(64)
        )
    };
    for _ in 0..3 {
        let (s, _) = call_as(&app, None, "POST", "/v1/auth/verify", &junk(5)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let req = Request::builder()
        .method("POST")
        .uri("/v1/auth/verify")
        .header("content-type", "application/json")
        .body(Body::from(junk(5)))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "2");
    // Another serial is not held up.
    let (s, _) = call_as(&app, None, "POST", "/v1/auth/verify", &junk(6)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Summed at once here (interval zero): one entry per refusal counted
    // since the last, never one chained entry per junk request carrying
    // what the sender wrote.
    let log = store.audit_log().await.unwrap();
    let summaries: Vec<&str> = log
        .iter()
        .filter(|e| e.entry.action == "auth.refused")
        .map(|e| e.entry.subject.as_str())
        .collect();
    assert_eq!(summaries.len(), 4);
    assert!(
        summaries.iter().all(|s| *s == "unknown_challenge:1"),
        "{summaries:?}"
    );
    assert!(log.iter().all(|e| e.entry.action != "auth.verify"));
}

#[tokio::test]
async fn tokens_are_issued_listed_and_revoked_by_administrators_and_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    // A factory token cannot manage tokens; the refusal is audited.
    let (s, v) = call_as(&app, Some(FACTORY), "GET", "/v1/tokens", "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let until = lambda::unix_now() + 3600;
    let body = format!(r#"{{"name":"line-2","role":"factory","expires_at":{until}}}"#);
    let (s, v) = call(&app, "POST", "/v1/tokens", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["expires_at"].as_i64()),
        (Some("line-2"), Some(until))
    );
    let line2 = v["token"].as_str().unwrap().to_owned();
    assert!(line2.starts_with("pvd_"));
    let provision = r#"{"hw_id":"1234567800000003"}"#;
    let (s, _) = call_as(&app, Some(&line2), "POST", "/v1/provision", provision).await;
    assert_eq!(s, StatusCode::OK);
    // The list never shows a token's text.
    let (s, v) = call(&app, "GET", "/v1/tokens", "").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin-1", "line-1", "line-2"]);
    assert!(!v.to_string().contains(&line2[4..]), "{v}");
    // Bad requests.
    for (body, code) in [
        (r#"{"name":"","role":"factory"}"#, "bad_name"),
        (r#"{"name":"a b","role":"factory"}"#, "bad_name"),
        (r#"{"name":"x","role":"root"}"#, "bad_role"),
        (
            r#"{"name":"x","role":"factory","expires_at":1}"#,
            "bad_expiry",
        ),
    ] {
        let (s, v) = call(&app, "POST", "/v1/tokens", body).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let (s, v) = call(
        &app,
        "POST",
        "/v1/tokens",
        r#"{"name":"line-2","role":"admin"}"#,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );

    // Revoked: the very next request is refused, with its own code.
    let (s, v) = call(&app, "POST", "/v1/tokens/line-2/revoke", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].as_i64().is_some());
    let (s, v) = call_as(&app, Some(&line2), "POST", "/v1/provision", provision).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );
    let (s, v) = call(&app, "POST", "/v1/tokens/nobody/revoke", "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_token"))
    );
    // An administrator cannot revoke the token in hand.
    let (s, v) = call(&app, "POST", "/v1/tokens/admin-1/revoke", "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("own_token"))
    );

    // Expired: refused from its expiry on (a token stored as expiring a
    // second from now, then the clock passes it).
    let store = SqliteStore::open(&dir.path().join("reg.db")).unwrap();
    let soon = "pvd_test-soon";
    store
        .add_token(
            "soon",
            Role::Factory,
            &token_hash(soon),
            Some(lambda::unix_now() + 1),
            "operator",
        )
        .await
        .unwrap();
    let (s, _) = call_as(&app, Some(soon), "GET", "/v1/devices/1", "").await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, v) = call_as(&app, Some(soon), "GET", "/v1/devices/1", "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );

    let log = store.audit_log().await.unwrap();
    let token_events: Vec<(String, String)> = log
        .iter()
        .filter(|e| e.entry.action.starts_with("token."))
        .map(|e| (e.entry.action.clone(), e.entry.outcome.clone()))
        .collect();
    let want = [
        ("token.add", "ok"),
        ("token.add", "ok"),
        ("token.list", "forbidden"),
        ("token.add", "ok"),
        ("token.add", "name_taken"),
        ("token.revoke", "ok"),
        ("token.revoke", "unknown_token"),
        ("token.revoke", "own_token"),
        ("token.add", "ok"),
    ];
    assert_eq!(
        token_events,
        want.map(|(a, o)| (a.to_owned(), o.to_owned()))
    );
}

#[tokio::test]
async fn a_token_bound_to_an_order_provisions_only_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let store = SqliteStore::open(&dir.path().join("reg.db")).unwrap();
    let now = lambda::unix_now();
    store
        .open_order(
            &lambda::model::Order {
                name: "po-1".into(),
                product: "sensor".into(),
                quantity: 2,
                used: 0,
                not_before: now - 1,
                not_after: now + 600,
                allow: None,
                created_at: now,
            },
            "operator",
        )
        .await
        .unwrap();
    let (s, v) = call(
        &app,
        "POST",
        "/v1/tokens",
        r#"{"name":"line-po","role":"factory","order":"po-1"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["order"], "po-1");
    let token = v["token"].as_str().unwrap().to_owned();
    let provision = |hw: u32| format!(r#"{{"hw_id":"{hw:016x}"}}"#);
    for hw in [1, 2] {
        let (s, v) = call_as(&app, Some(&token), "POST", "/v1/provision", &provision(hw)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = call_as(&app, Some(&token), "POST", "/v1/provision", &provision(3)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("order_exhausted"))
    );
    // The chips it made keep their serials; the device takes the order's product.
    let (s, v) = call_as(&app, Some(&token), "POST", "/v1/provision", &provision(1)).await;
    assert_eq!(
        (s, v["serial"].as_u64(), v["created"].as_bool()),
        (StatusCode::OK, Some(1), Some(false))
    );
    let (_, d) = call(&app, "GET", "/v1/devices/1", "").await;
    assert_eq!(d["product"], "sensor");
    // A token without an order is not bound by it.
    let (s, _) = call_as(&app, Some(FACTORY), "POST", "/v1/provision", &provision(3)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/tokens",
        r#"{"name":"line-x","role":"factory","order":"po-none"}"#,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_order"))
    );
}

/// A release, its public-key export, a device's copy kept as its ENC TLV
/// value only, and the copy served: it decrypts with that device's key
/// alone, to the image the release key signed.
#[tokio::test]
async fn releases_are_kept_once_and_served_per_device() {
    use base64::Engine as _;
    use signer::image::encrypt::{
        decrypt_in_place, enc_public_key_from_pem, load_enc_private_key, rewrap,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let boot = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/boot/");
    let key =
        |path: String| load_enc_private_key(&format!("file:{path}").parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000003"}"#,
    )
    .await;
    call(
        &app,
        "POST",
        "/v1/provision",
        r#"{"hw_id":"1234567800000004"}"#,
    )
    .await;
    let body = format!(r#"{{"record":"{}"}}"#, record_hex("qemu-microbit.bin"));
    assert_eq!(
        call(&app, "POST", "/v1/devices/1/activate", &body).await.0,
        StatusCode::OK
    );

    // The export lists devices with a key (serial 2 has none yet).
    let (s, v) = call(&app, "GET", "/v1/registry/enc-keys", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let entries: Vec<lambda::api::EncKeyEntry> = serde_json::from_value(v).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].device, "1");
    let (s, _) = call_as(&app, Some(FACTORY), "GET", "/v1/registry/enc-keys", "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The release: imgtool's image encrypted for the station's key.
    let release = std::fs::read(format!("{boot}v2-enc-other-pending.bin")).unwrap();
    let station = key(format!("{boot}other-device-key.pem"));
    let upload = |bytes: &[u8]| format!(r#"{{"image":"{}"}}"#, b64.encode(bytes));
    let (s, v) = call(&app, "PUT", "/v1/releases/app-2.0.0", &upload(&release)).await;
    assert_eq!(
        (s, v["created"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "{v}"
    );
    let (s, v) = call(&app, "PUT", "/v1/releases/app-2.0.0", &upload(&release)).await;
    assert_eq!(
        (s, v["created"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{v}"
    );
    let clear = std::fs::read(format!("{boot}v2-pending.bin")).unwrap();
    let other = std::fs::read(format!("{boot}v2-enc-pending.bin")).unwrap();
    for (uri, bytes, status, code) in [
        (
            "/v1/releases/app-2.0.0",
            &other,
            StatusCode::CONFLICT,
            "name_taken",
        ),
        (
            "/v1/releases/clear",
            &clear,
            StatusCode::BAD_REQUEST,
            "not_encrypted",
        ),
        (
            "/v1/releases/junk",
            &vec![0u8; 100],
            StatusCode::BAD_REQUEST,
            "bad_image",
        ),
        (
            "/v1/releases/.hidden",
            &release,
            StatusCode::BAD_REQUEST,
            "bad_name",
        ),
    ] {
        let (s, v) = call(&app, "PUT", uri, &upload(bytes)).await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{uri}");
    }
    let (s, v) = call(&app, "PUT", "/v1/releases/x", r#"{"image":"***"}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_image"))
    );

    // The station wraps a copy for device 1 from the export and uploads it.
    let device_key = enc_public_key_from_pem("1", &entries[0].enc_public_key).unwrap();
    let copy = rewrap(&release, &station, &device_key).unwrap();
    let uri = "/v1/releases/app-2.0.0/devices/1";
    let (s, _) = call_as(&app, Some(FACTORY), "PUT", uri, &upload(&copy)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call(&app, "PUT", uri, &upload(&other)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("not_a_copy"))
    );
    for (uri, status, code) in [
        (
            "/v1/releases/app-2.0.0/devices/2",
            StatusCode::CONFLICT,
            "no_device_key",
        ),
        (
            "/v1/releases/app-2.0.0/devices/9",
            StatusCode::NOT_FOUND,
            "unknown_serial",
        ),
        (
            "/v1/releases/nope/devices/1",
            StatusCode::NOT_FOUND,
            "unknown_release",
        ),
    ] {
        let (s, v) = call(&app, "PUT", uri, &upload(&copy)).await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{uri}: {v}");
    }
    let (s, v) = call(&app, "PUT", uri, &upload(&copy)).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Served to the fleet's token: the same bytes, decrypted by device 1's
    // key only, to an image that verifies with the release key.
    let (s, v) = call_as(&app, Some(FACTORY), "GET", uri, "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let served: lambda::api::DeviceCopy = serde_json::from_value(v).unwrap();
    let mut bytes = b64.decode(&served.image).unwrap();
    assert_eq!(bytes, copy);
    assert!(decrypt_in_place(&mut bytes.clone(), &station).is_err());
    decrypt_in_place(&mut bytes, &key(format!("{DATA}device.pem"))).unwrap();
    let plain = firmware::image::Image::parse(&bytes).unwrap();
    let release_key = lambda::config::authorities_from_files(&[format!(
        "{}/../tests/data/images/dev-key.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    )
    .into()])
    .unwrap();
    assert!(plain
        .verify(&release_key, None)
        .unwrap()
        .signed_by
        .is_some());
    assert_eq!(
        call_as(
            &app,
            Some(FACTORY),
            "GET",
            "/v1/releases/app-2.0.0/devices/2",
            ""
        )
        .await
        .1["error"],
        "no_device_key"
    );

    // Revoked: no more copies.
    call(
        &app,
        "POST",
        "/v1/devices/1/revoke",
        r#"{"reason":"stolen"}"#,
    )
    .await;
    let (s, v) = call_as(&app, Some(FACTORY), "GET", uri, "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked"))
    );
    let (_, v) = call(&app, "GET", "/v1/registry/enc-keys", "").await;
    assert_eq!(v, serde_json::json!([]));
}
