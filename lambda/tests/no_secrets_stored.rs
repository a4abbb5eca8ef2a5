//! After an end-to-end run over HTTP (token, provision, activate with the
//! record, challenge-response with the device key), the whole store holds no
//! bearer token and no private-key bytes, in any encoding we could have
//! written them in; and it does hold what it should (the token's hash, the
//! device public key), so the scan would see them.
//! Run on SQLite (every file of the database) and on DynamoDB (every item of
//! every table, through the SDK).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::process::{Child, Command, Stdio};

use common::load::Client;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::DecodePrivateKey;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/records/");

/// Named byte strings to look for.
type Needles = Vec<(String, Vec<u8>)>;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the whole device story against `store`; returns (secrets that must
/// not be stored, values that must be).
fn end_to_end(store: &str) -> (Needles, Needles) {
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args([
            "token", "add", "--name", "line-1", "--role", "admin", "--store", store,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = common::free_port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_provisiond"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--store",
                store,
            ])
            .arg("--authority")
            .arg(format!("{DATA}authority.pub.pem"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(port, "provisiond");
    let mut c = Client::connect(port, &token).unwrap();

    let (s, v) = c
        .request("POST", "/v1/provision", r#"{"hw_id":"1234567800000003"}"#)
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let record = std::fs::read(format!("{DATA}qemu-microbit.bin")).unwrap();
    let body = format!(r#"{{"record":"{}"}}"#, hex::encode(&record));
    let (s, v) = c.request("POST", "/v1/devices/1/activate", &body).unwrap();
    assert_eq!(s, 200, "{v}");

    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(format!("{DATA}device.pem")).unwrap(),
    )
    .unwrap();
    let (_, ch) = c
        .request("POST", "/v1/auth/challenge", r#"{"serial":1}"#)
        .unwrap();
    let ch: serde_json::Value = serde_json::from_str(&ch).unwrap();
    let nonce: [u8; 32] = hex::decode(ch["nonce"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let hw = firmware::record::HwId::parse_hex("1234567800000003").unwrap();
    let sig: p256::ecdsa::Signature = key
        .sign_prehash(&lambda::api::auth_digest(&nonce, hw, 1))
        .unwrap();
    let body = format!(
        r#"{{"challenge_id":"{}","serial":1,"hw_id":"1234567800000003","signature":"{}"}}"#,
        ch["challenge_id"].as_str().unwrap(),
        hex::encode(sig.to_bytes())
    );
    let (s, v) = c.request("POST", "/v1/auth/verify", &body).unwrap();
    assert_eq!(s, 200, "{v}");

    let scalar = key.to_bytes().to_vec();
    let secrets = vec![
        ("device private key".to_owned(), scalar.clone()),
        (
            "device private key, hex".to_owned(),
            hex::encode(&scalar).into_bytes(),
        ),
        ("bearer token".to_owned(), token.clone().into_bytes()),
        (
            "bearer token secret part".to_owned(),
            token.as_bytes()["pvd_".len()..].to_vec(),
        ),
    ];
    let pubkey = record[8 + 8 + 4 + 16..8 + 8 + 4 + 16 + 65].to_vec();
    let expected = vec![
        (
            "token hash".to_owned(),
            lambda::auth::token_hash(&token).to_vec(),
        ),
        ("device public key".to_owned(), pubkey),
    ];
    (secrets, expected)
}

fn check(haystack: &[u8], secrets: &Needles, expected: &Needles) {
    let contains = |needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    for (what, bytes) in expected {
        assert!(
            contains(bytes),
            "the scan must see the {what}: is the store where we look?"
        );
    }
    for (what, bytes) in secrets {
        assert!(!contains(bytes), "the store holds the {what}");
    }
}

#[test]
fn sqlite_store_holds_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reg.db");
    let (secrets, expected) = end_to_end(&format!("sqlite:{}", db.display()));
    let mut haystack = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        haystack.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    check(&haystack, &secrets, &expected);
}

#[test]
fn dynamodb_store_holds_no_secret() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = common::Moto::start();
    let uri = moto.store_uri("scan");
    // Tables as `serve` creates them (token add expects them to exist).
    drop(
        uri.parse::<lambda::config::StoreUri>()
            .unwrap()
            .open()
            .wait()
            .unwrap(),
    );
    let (secrets, expected) = end_to_end(&uri);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let haystack = rt.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{}", moto.port))
            .load()
            .await;
        let client = aws_sdk_dynamodb::Client::new(&conf);
        fn dump(v: &AttributeValue, out: &mut Vec<u8>) {
            match v {
                AttributeValue::S(s) | AttributeValue::N(s) => out.extend(s.as_bytes()),
                AttributeValue::B(b) => out.extend(b.as_ref()),
                AttributeValue::M(m) => m.values().for_each(|v| dump(v, out)),
                AttributeValue::L(l) => l.iter().for_each(|v| dump(v, out)),
                other => out.extend(format!("{other:?}").as_bytes()),
            }
            out.push(0);
        }
        let mut out = Vec::new();
        let tables = client.list_tables().send().await.unwrap();
        // devices, meta, audit, challenges, tokens, releases, wrapped.
        assert_eq!(tables.table_names().len(), 7);
        for table in tables.table_names() {
            let scan = client.scan().table_name(table).send().await.unwrap();
            for item in scan.items() {
                for (k, v) in item {
                    out.extend(k.as_bytes());
                    dump(v, &mut out);
                }
            }
        }
        out
    });
    check(&haystack, &secrets, &expected);
}
