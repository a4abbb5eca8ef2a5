//! The AWS deployment's whole request path, as a factory meets it: an API
//! Gateway stand-in (written here, from API Gateway's documented REST
//! behaviour) calls the token authorizer Lambda (`authorizer`) for every
//! factory or admin route and the API Lambda (`bootstrap`) with the
//! authorizer's context, each a real process fed through a local Lambda
//! Runtime API, on DynamoDB (moto_server). The factory's own client and
//! provisioning flow run against it with the same `--backend URL` and token
//! they use for `provisiond`; tokens come from `provisiond token add` on the
//! same tables, and a revocation counts from the next request.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Invocation, Moto, RuntimeApi};
use serde_json::{json, Value};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");
const REGION_ACCOUNT_API: &str = "eu-north-1:123456789012:abcdef1234";

/// A Lambda function: its process and the Runtime API it polls.
struct Function {
    api: RuntimeApi,
    child: Child,
}

impl Function {
    fn start(binary: &str, env: &[(&str, String)]) -> Self {
        let api = RuntimeApi::start();
        let child = Command::new(binary)
            .envs(api.env())
            .envs(Moto::env())
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self { api, child }
    }

    fn call(&self, event: &Value) -> Invocation {
        self.api.invoke(event);
        self.api.answer()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What API Gateway answers for a request, given the two functions.
fn gateway_answer(
    authorizer: &Function,
    api: &Function,
    method: &str,
    path_and_query: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, String) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut context = Value::Null;
    if !path.starts_with("/v1/auth/") {
        // The template's token authorizer guards every other route; with no
        // Authorization header API Gateway answers 401 without calling it.
        let Some(token) = authorization else {
            return (401, r#"{"message":"Unauthorized"}"#.into());
        };
        let method_arn = format!("arn:aws:execute-api:{REGION_ACCOUNT_API}/prod/{method}{path}");
        let a = authorizer.call(&json!({
            "type": "TOKEN",
            "authorizationToken": token,
            "methodArn": method_arn,
        }));
        if a.kind == "error" {
            return (401, r#"{"message":"Unauthorized"}"#.into());
        }
        let policy: Value = serde_json::from_str(&a.body).unwrap();
        let statement = &policy["policyDocument"]["Statement"][0];
        assert_eq!(statement["Resource"], json!(method_arn), "{policy}");
        if statement["Effect"] != "Allow" {
            return (
                403,
                r#"{"Message":"User is not authorized to access this resource"}"#.into(),
            );
        }
        context = policy["context"].clone();
        context["principalId"] = policy["principalId"].clone();
    }
    let mut e: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DATA}apigw/rest-api-event.json")).unwrap(),
    )
    .unwrap();
    e["httpMethod"] = json!(method);
    e["path"] = json!(path);
    e["requestContext"]["httpMethod"] = json!(method);
    e["requestContext"]["path"] = json!(format!("/prod{path}"));
    e["pathParameters"]["proxy"] = json!(path.trim_start_matches('/'));
    // Token callers have no IAM identity; the authorizer's context names them.
    e["requestContext"]["identity"]["userArn"] = Value::Null;
    if !context.is_null() {
        e["requestContext"]["authorizer"] = context;
    }
    if !query.is_empty() {
        let mut single = serde_json::Map::new();
        let mut multi = serde_json::Map::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            single.insert(k.into(), json!(v));
            multi.insert(k.into(), json!([v]));
        }
        e["queryStringParameters"] = Value::Object(single);
        e["multiValueQueryStringParameters"] = Value::Object(multi);
    }
    e["body"] = if body.is_empty() {
        Value::Null
    } else {
        json!(body)
    };
    let a = api.call(&e);
    assert_eq!(a.kind, "response", "{a:?}");
    let resp: Value = serde_json::from_str(&a.body).unwrap();
    (
        resp["statusCode"].as_u64().unwrap() as u16,
        resp["body"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The stand-in gateway on a free port: one request at a time (each
/// function instance serves one invocation at a time).
fn serve_gateway(authorizer: Function, api: Function) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let functions = Arc::new(Mutex::new((authorizer, api)));
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let functions = Arc::clone(&functions);
            async move {
                let (status, body) = tokio::task::spawn_blocking(move || {
                    let f = functions.lock().unwrap();
                    gateway_answer(
                        &f.0,
                        &f.1,
                        method.as_str(),
                        uri.path_and_query().map_or("/", |p| p.as_str()),
                        headers.get("authorization").and_then(|v| v.to_str().ok()),
                        &String::from_utf8_lossy(&body),
                    )
                })
                .await
                .unwrap();
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    body,
                )
            }
        },
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
    });
    url
}

fn provisiond(args: &[&str], store: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(args)
        .args(["--store", store])
        .envs(Moto::env())
        .output()
        .unwrap()
}

#[test]
fn a_factory_provisions_through_the_token_authorizer_and_the_lambda_on_dynamodb() {
    let moto = Moto::start();
    let store = moto.store_uri("gw");
    let uri: lambda::config::StoreUri = store.parse().unwrap();
    // The deployment template creates the tables; here the store does.
    drop(uri.open().wait().unwrap());
    let out = provisiond(
        &["token", "add", "--name", "line-7", "--role", "factory"],
        &store,
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let authorizer = Function::start(
        env!("CARGO_BIN_EXE_authorizer"),
        &[("PROVISIOND_STORE", store.clone())],
    );
    let api = Function::start(
        env!("CARGO_BIN_EXE_bootstrap"),
        &[
            ("PROVISIOND_STORE", store.clone()),
            (
                "PROVISIOND_AUTHORITIES",
                std::fs::read_to_string(format!("{DATA}records/authority.pub.pem")).unwrap(),
            ),
        ],
    );
    let url = serve_gateway(authorizer, api);

    // The factory's client and flow, exactly as against provisiond.
    let mut backend =
        factory::backend::Backend::connect(&url, Some(token.clone().into()), &Default::default())
            .unwrap();
    backend.backoff = Duration::from_millis(5);
    let table = factory::chips::ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    let authority = signer::open_signer(&key).unwrap();
    let job = factory::provision::Job {
        chip,
        backend: &backend,
        authority: authority.as_ref(),
        product: Some("sensor".into()),
        boot_stage: None,
        firmware: None,
        lock: true,
        force: false,
        run_after: true,
        device_ca: None,
        key_origin: firmware::record::KeyOrigin::Device,
        key_timeout: Duration::from_secs(2),
        production: false,
    };
    let mut t = factory::target::FakeTarget::making_keys(chip, 3, 0x1234_5678);
    let r = factory::provision::provision(&mut t, &job);
    assert_eq!((r.outcome, r.serial), ("provisioned", Some(1)), "{r:?}");
    let device = uri
        .open()
        .wait()
        .unwrap()
        .device_by_serial(1)
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(device.status.as_str(), "active");
    // A second chip; the first chip asked again keeps its serial.
    let mut u = factory::target::FakeTarget::making_keys(chip, 4, 0x1234_5678);
    assert_eq!(factory::provision::provision(&mut u, &job).serial, Some(2));
    let again = backend
        .provision(firmware::record::HwId::from_deviceid(3, 0x1234_5678), None)
        .unwrap();
    assert_eq!((again.serial, again.created), (1, false));

    // Device routes need no token.
    let anonymous = factory::backend::Backend::connect(&url, None, &Default::default()).unwrap();
    assert!(anonymous.challenge(1).is_ok());
    // No token, an unknown one: 401 from the gateway.
    let hw = firmware::record::HwId::from_deviceid(9, 9);
    let refused = |b: &factory::backend::Backend| match b.provision(hw, None).unwrap_err() {
        factory::backend::BackendError::Refused { status, .. } => status,
        other => panic!("{other}"),
    };
    assert_eq!(refused(&anonymous), 401);
    let stranger = factory::backend::Backend::connect(
        &url,
        Some("pvd_0000".to_owned().into()),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(refused(&stranger), 401);

    // Revoked on the command line: the very next request is denied.
    let out = provisiond(&["token", "revoke", "--name", "line-7"], &store);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(refused(&backend), 403);

    let log = uri.open().wait().unwrap().audit_log().wait().unwrap();
    let actors: std::collections::BTreeSet<&str> =
        log.iter().map(|e| e.entry.actor.as_str()).collect();
    assert!(actors.contains("factory:line-7"), "{actors:?}");
    assert_eq!(
        lambda::audit::verify_chain(log.clone()).map(|n| n as usize),
        Ok(log.len())
    );
}
