//! The Lambda entry point (`bootstrap`) as the Lambda service runs it: the
//! process started with the service's environment, fed API Gateway events
//! (REST and HTTP API, IAM-authorized, from `tests/data/apigw/`) through a
//! local Lambda Runtime API, on DynamoDB (moto_server). Callers are mapped to
//! roles by their IAM role ARN.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::process::{Command, Stdio};

use common::{Moto, RuntimeApi};
use serde_json::{json, Value};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");
const FACTORY: &str = "arn:aws:sts::123456789012:assumed-role/factory-station/line-3";
const ADMIN: &str = "arn:aws:iam::123456789012:user/security-officer";
const STRANGER: &str = "arn:aws:sts::123456789012:assumed-role/intern/laptop";

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{DATA}apigw/{name}")).unwrap()).unwrap()
}

/// A REST API (payload 1.0) event.
fn rest(method: &str, path: &str, body: Option<&str>, caller: &str) -> Value {
    let mut e = fixture("rest-api-event.json");
    e["httpMethod"] = json!(method);
    e["path"] = json!(path);
    e["requestContext"]["httpMethod"] = json!(method);
    e["requestContext"]["path"] = json!(format!("/prod{path}"));
    e["pathParameters"]["proxy"] = json!(path.trim_start_matches('/'));
    e["requestContext"]["identity"]["userArn"] = json!(caller);
    e["body"] = body.map_or(Value::Null, |b| json!(b));
    e
}

/// An HTTP API (payload 2.0) event.
fn http(method: &str, path: &str, body: Option<&str>, caller: &str) -> Value {
    let mut e = fixture("http-api-event.json");
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    e["requestContext"]["authorizer"]["iam"]["userArn"] = json!(caller);
    e["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    e["body"] = body.map_or(Value::Null, |b| json!(b));
    e
}

/// The status and JSON body of the function's answer.
fn answered(api: &RuntimeApi) -> (u64, Value) {
    let a = api.answer();
    assert_eq!(a.kind, "response", "{a:?}");
    let resp: Value = serde_json::from_str(&a.body).unwrap();
    let body = resp["body"].as_str().unwrap_or("null");
    (
        resp["statusCode"].as_u64().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

#[test]
fn api_gateway_events_through_the_runtime_api_on_dynamodb() {
    let moto = Moto::start();
    let store_uri = moto.store_uri("lambda");
    // The deployment template creates the tables; here the test does.
    let uri: lambda::config::StoreUri = store_uri.parse().unwrap();
    drop(uri.open().wait().unwrap());

    let api = RuntimeApi::start();
    let roles = json!({
        "arn:aws:iam::123456789012:role/factory-station": "factory",
        ADMIN: "admin",
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .envs(api.env())
        .envs(Moto::env())
        .env("PROVISIOND_STORE", &store_uri)
        .env(
            "PROVISIOND_AUTHORITIES",
            std::fs::read_to_string(format!("{DATA}records/authority.pub.pem")).unwrap(),
        )
        .env("PROVISIOND_CALLER_ROLES", roles.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let chip = r#"{"hw_id":"1234567800000003","product":"microbit-demo"}"#;
    api.invoke(&rest("POST", "/v1/provision", Some(chip), FACTORY));
    let (status, v) = answered(&api);
    assert_eq!((status, v["serial"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(v["created"], true);

    api.invoke(&http("POST", "/v1/provision", Some(chip), FACTORY));
    let (status, v) = answered(&api);
    assert_eq!(
        (status, v["serial"].as_u64(), v["created"].as_bool()),
        (200, Some(1), Some(false))
    );

    api.invoke(&rest("POST", "/v1/provision", Some(chip), STRANGER));
    let (status, v) = answered(&api);
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("unauthenticated"))
    );

    let record = hex::encode(std::fs::read(format!("{DATA}records/qemu-microbit.bin")).unwrap());
    let activate = format!(r#"{{"record":"{record}"}}"#);
    api.invoke(&http(
        "POST",
        "/v1/devices/1/activate",
        Some(&activate),
        FACTORY,
    ));
    let (status, v) = answered(&api);
    assert_eq!((status, v["status"].as_str()), (200, Some("active")), "{v}");

    api.invoke(&rest("GET", "/v1/devices/1", None, FACTORY));
    let (status, v) = answered(&api);
    assert_eq!(
        (status, v["hw_id"].as_str()),
        (200, Some("1234567800000003"))
    );

    let revoke = r#"{"reason":"returned"}"#;
    api.invoke(&http("POST", "/v1/devices/1/revoke", Some(revoke), FACTORY));
    let (status, v) = answered(&api);
    assert_eq!((status, v["error"].as_str()), (403, Some("forbidden")));

    api.invoke(&rest("POST", "/v1/provision", Some("{not json"), FACTORY));
    let (status, v) = answered(&api);
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_request")));

    api.invoke(&http("POST", "/v1/devices/1/revoke", Some(revoke), ADMIN));
    let (status, v) = answered(&api);
    assert_eq!((status, v["status"].as_str()), (200, Some("revoked")));

    child.kill().unwrap();
    child.wait().unwrap();

    let log = uri.open().wait().unwrap().audit_log().wait().unwrap();
    let factory = "factory:arn:aws:iam::123456789012:role/factory-station".to_owned();
    let admin = format!("admin:{ADMIN}");
    let row = |a: &String, b: &str, c: &str| (a.clone(), b.to_owned(), c.to_owned());
    common::assert_log_is(
        &log,
        |e| {
            (
                e.entry.actor.clone(),
                e.entry.action.clone(),
                e.entry.outcome.clone(),
            )
        },
        &[
            row(&factory, "provision", "ok"),
            row(&factory, "provision", "ok"),
            row(&factory, "activate", "ok"),
            row(&factory, "revoke", "forbidden"),
            row(&admin, "revoke", "ok"),
        ],
    );
    assert_eq!(lambda::audit::verify_chain(log), Ok(5));
}
