//! The backend on DynamoDB as the fleet grows busy: `provisiond serve`
//! (release build) on the DynamoDB store, moto_server as DynamoDB, both on
//! 127.0.0.1, and factory clients in the same run: new provisions, repeat
//! provisions and device authentications (challenge + verify, 64 activated
//! devices), each with 1 client (the peer: the same server unloaded, in the
//! same run) and with 16 clients. The goal: with 16 clients, at least the
//! 1-client rate, no error, p99 under 1 s.
//!
//! `VENV_PYTHON=$PWD/.venv/bin/python cargo bench -p lambda --bench dynamo_scale`
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::load::{self, Answer, Client};
use firmware::record::{HwId, KeyOrigin, RecordBody};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");
const MANY: usize = 16;
const DEVICES: usize = 64;

struct Figures {
    rate: f64,
    p99: Duration,
    errors: usize,
}

fn report(name: &str, answers: &[Answer], elapsed: Duration) -> Figures {
    let errors = answers.iter().filter(|a| a.status != 200).count();
    let rate = answers.len() as f64 / elapsed.as_secs_f64();
    let p99 = load::quantile(answers, 0.99);
    println!(
        "{name:<34} {:>6} requests  {rate:>8.1}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  errors {errors}",
        answers.len(),
        load::quantile(answers, 0.50).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    Figures { rate, p99, errors }
}

fn verdict(what: &str, one: &Figures, many: &Figures) {
    let met = many.rate >= one.rate && many.errors == 0 && many.p99 < Duration::from_secs(1);
    println!(
        "{what}: {MANY} clients / 1 client = {:.2}x, p99 {:.0} ms, {} errors  (goal >= 1x, 0 errors, p99 < 1 s: {})",
        many.rate / one.rate,
        many.p99.as_secs_f64() * 1e3,
        many.errors,
        if met { "met" } else { "NOT met" }
    );
}

/// `clients` clients authenticate devices (client `c` takes device `c`,
/// `c + clients`, … in turn), `per_client` challenge + verify pairs each.
fn authenticate(
    port: u16,
    clients: usize,
    per_client: usize,
    devices: &[(HwId, u32, SigningKey)],
) -> (Vec<Answer>, Duration) {
    let t = Instant::now();
    let answers = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut client = Client::connect(port, "none").unwrap();
                    let mut out = Vec::new();
                    for i in 0..per_client {
                        let (hw_id, serial, key) = &devices[(c + i * clients) % devices.len()];
                        let t = Instant::now();
                        let (status, ch) = client
                            .request(
                                "POST",
                                "/v1/auth/challenge",
                                &format!(r#"{{"serial":{serial}}}"#),
                            )
                            .unwrap();
                        let (status, response) = if status == 200 {
                            let ch: serde_json::Value = serde_json::from_str(&ch).unwrap();
                            let nonce: [u8; 32] = hex::decode(ch["nonce"].as_str().unwrap())
                                .unwrap()
                                .try_into()
                                .unwrap();
                            let sig: p256::ecdsa::Signature = key
                                .sign_prehash(&lambda::api::auth_digest(&nonce, *hw_id, *serial))
                                .unwrap();
                            let body = format!(
                                r#"{{"challenge_id":"{}","serial":{serial},"hw_id":"{hw_id}","signature":"{}"}}"#,
                                ch["challenge_id"].as_str().unwrap(),
                                hex::encode(sig.to_bytes())
                            );
                            client.request("POST", "/v1/auth/verify", &body).unwrap()
                        } else {
                            (status, ch)
                        };
                        out.push(Answer {
                            client: c,
                            path: "/v1/auth/verify".into(),
                            body: String::new(),
                            status,
                            response,
                            latency: t.elapsed(),
                        });
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (answers, t.elapsed())
}

fn main() {
    if std::env::var_os("VENV_PYTHON").is_none() {
        println!("dynamo_scale: set VENV_PYTHON (moto_server runs from that venv)");
        return;
    }
    let moto = common::Moto::start();
    let store = moto.store_uri("scale");
    let provisiond = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provisiond"));
        c.envs(common::Moto::env());
        c
    };
    let port = common::free_port();
    let mut server = provisiond()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--store", &store])
        .args(["--authority", &format!("{DATA}records/authority.pub.pem")])
        // Many authentications per device and source are the load here.
        .args(["--auth-rate-per-source", "0", "--auth-rate-per-serial", "0"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_port(port, "provisiond");
    // `serve` has made the tables; the token is read through on each request.
    let out = provisiond()
        .args(["token", "add", "--name", "bench", "--role", "factory"])
        .args(["--store", &store])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // Warm up (tables, connections) with the devices the authentication
    // phases use: provisioned, their records signed by the test authority,
    // activated.
    let authority = SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(format!("{DATA}records/authority.pem")).unwrap(),
    )
    .unwrap();
    let authority_id = firmware::P256PublicKey::from_sec1(
        authority.verifying_key().to_encoded_point(false).as_bytes(),
    )
    .unwrap()
    .key_id();
    let mut c = Client::connect(port, &token).unwrap();
    let devices: Vec<(HwId, u32, SigningKey)> = (0..DEVICES as u32)
        .map(|i| {
            let hw_id = HwId::from_deviceid(0xdead_0000 + i, 7);
            let (s, body) = c
                .request(
                    "POST",
                    "/v1/provision",
                    &format!(r#"{{"hw_id":"{hw_id}"}}"#),
                )
                .unwrap();
            assert_eq!(s, 200, "{body}");
            let serial = serde_json::from_str::<serde_json::Value>(&body).unwrap()["serial"]
                .as_u64()
                .unwrap() as u32;
            let key = SigningKey::random(&mut rand_core::OsRng);
            let record = RecordBody {
                hw_id,
                serial,
                product: RecordBody::product_field("bench").unwrap(),
                device_pubkey: firmware::P256PublicKey::from_sec1(
                    key.verifying_key().to_encoded_point(false).as_bytes(),
                )
                .unwrap(),
                issued_at: 1_700_000_000,
                authority_key_id: authority_id,
                key_origin: KeyOrigin::Device,
            };
            let sig: p256::ecdsa::Signature = authority.sign_prehash(&record.digest()).unwrap();
            let bytes = record.to_record(&sig.to_bytes().into());
            let (s, body) = c
                .request(
                    "POST",
                    &format!("/v1/devices/{serial}/activate"),
                    &format!(r#"{{"record":"{}"}}"#, hex::encode(bytes)),
                )
                .unwrap();
            assert_eq!(s, 200, "{body}");
            (hw_id, serial, key)
        })
        .collect();

    let new = |base: u64, clients: usize, per: usize| {
        let t = Instant::now();
        let answers = load::run(port, &token, clients, per, |c, i| {
            (
                "/v1/provision".into(),
                format!(
                    r#"{{"hw_id":"{:016x}"}}"#,
                    (base + c as u64) << 32 | i as u64
                ),
            )
        });
        (answers, t.elapsed())
    };
    println!("provisiond on DynamoDB (moto_server), 127.0.0.1, release build");
    let (a, t) = new(0x1000, 1, 400);
    let one = report("new provisions, 1 client", &a, t);
    let (a, t) = new(0x2000, MANY, 50);
    let many = report("new provisions, 16 clients", &a, t);
    verdict("new provisions", &one, &many);

    let again = |clients: usize, per: usize| {
        let t = Instant::now();
        let answers = load::run(port, &token, clients, per, |c, i| {
            (
                "/v1/provision".into(),
                format!(
                    r#"{{"hw_id":"{:016x}"}}"#,
                    (0x2000 + c as u64) << 32 | (i % 50) as u64
                ),
            )
        });
        (answers, t.elapsed())
    };
    let (a, t) = again(1, 400);
    let one = report("repeat provisions, 1 client", &a, t);
    let (a, t) = again(MANY, 50);
    let many = report("repeat provisions, 16 clients", &a, t);
    verdict("repeat provisions", &one, &many);

    let (a, t) = authenticate(port, 1, 200, &devices);
    let one = report("authentications, 1 client", &a, t);
    let (a, t) = authenticate(port, MANY, 25, &devices);
    let many = report("authentications, 16 clients", &a, t);
    verdict("authentications", &one, &many);

    let _ = server.kill();
    let _ = server.wait();
}
