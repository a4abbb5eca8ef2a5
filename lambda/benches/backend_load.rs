//! The provisioning backend under load, measured from outside: `provisiond
//! serve` (release build, SQLite with durable commits) on 127.0.0.1 and a
//! load generator of 32 keep-alive clients in the same run; then Lambda cold
//! starts of `bootstrap` through a local Lambda Runtime API.
//!
//! Peer: a bare rusqlite loop doing what one allocation does (look up,
//! take the next serial, insert the device, append an audit row) in one
//! durable transaction per allocation, on the same disk; the server's rate
//! is reported as a ratio to it.
//!
//! `cargo bench -p lambda --bench backend_load` (needs VENV_PYTHON for the
//! DynamoDB cold start; it is skipped without).
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::load::{self, Client};
use lambda::Wait;

const CLIENTS: usize = 32;
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

fn provisiond() -> Command {
    Command::new(env!("CARGO_BIN_EXE_provisiond"))
}

fn report(name: &str, answers: &[load::Answer], elapsed: Duration) -> f64 {
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{name}: a request failed"
    );
    let rate = answers.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<28} {:>7} requests  {rate:>9.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        answers.len(),
        load::quantile(answers, 0.50).as_secs_f64() * 1e3,
        load::quantile(answers, 0.99).as_secs_f64() * 1e3,
    );
    rate
}

/// One durable transaction per allocation, one thread: the peer.
fn bare_sqlite(path: &std::path::Path, n: u64) -> f64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE seq (id INTEGER PRIMARY KEY, next INTEGER);
         INSERT INTO seq VALUES (1, 1);
         CREATE TABLE devices (serial INTEGER PRIMARY KEY, hw_id TEXT UNIQUE, created INTEGER);
         CREATE TABLE audit (seq INTEGER PRIMARY KEY, entry TEXT, hash BLOB);",
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..n {
        let tx = conn.unchecked_transaction().unwrap();
        let hw = format!("{i:016x}");
        let found: Option<i64> = tx
            .query_row("SELECT serial FROM devices WHERE hw_id = ?1", [&hw], |r| {
                r.get(0)
            })
            .ok();
        assert!(found.is_none());
        let next: i64 = tx
            .query_row("SELECT next FROM seq", [], |r| r.get(0))
            .unwrap();
        tx.execute("UPDATE seq SET next = next + 1", []).unwrap();
        tx.execute(
            "INSERT INTO devices VALUES (?1, ?2, 0)",
            rusqlite::params![next, hw],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO audit (entry, hash) VALUES (?1, ?2)",
            rusqlite::params![hw, &[0u8; 32][..]],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn server_load(dir: &std::path::Path) {
    let db = dir.join("reg.db");
    let out = provisiond()
        .args([
            "token", "add", "--name", "bench", "--role", "admin", "--store",
        ])
        .arg(format!("sqlite:{}", db.display()))
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = common::free_port();
    let mut server = provisiond()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store"])
        .arg(format!("sqlite:{}", db.display()))
        // One device authenticating thousands of times a second is the
        // point here, not something to throttle.
        .args(["--auth-rate-per-source", "0", "--auth-rate-per-serial", "0"])
        .arg("--authority")
        .arg(format!("{DATA}records/authority.pub.pem"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_port(port, "provisiond");

    // The KAT device: serial 1, activated, for challenge-response.
    let mut c = Client::connect(port, &token).unwrap();
    c.request("POST", "/v1/provision", r#"{"hw_id":"1234567800000003"}"#)
        .unwrap();
    let record = hex::encode(std::fs::read(format!("{DATA}records/qemu-microbit.bin")).unwrap());
    let (s, _) = c
        .request(
            "POST",
            "/v1/devices/1/activate",
            &format!(r#"{{"record":"{record}"}}"#),
        )
        .unwrap();
    assert_eq!(s, 200);

    let per = 1500;
    let t = Instant::now();
    let answers = load::run(port, &token, CLIENTS, per, |c, i| {
        (
            "/v1/provision".into(),
            format!(
                r#"{{"hw_id":"{:016x}"}}"#,
                ((c as u64 + 1) << 32) | i as u64
            ),
        )
    });
    let new_rate = report("new provisions", &answers, t.elapsed());

    let t = Instant::now();
    let answers = load::run(port, &token, CLIENTS, 4 * per, |c, i| {
        (
            "/v1/provision".into(),
            format!(
                r#"{{"hw_id":"{:016x}"}}"#,
                ((c as u64 + 1) << 32) | (i % per) as u64
            ),
        )
    });
    let repeat_rate = report("repeat provisions", &answers, t.elapsed());

    // Challenge + verify pairs, answered with the KAT device key.
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::DecodePrivateKey;
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(format!("{DATA}records/device.pem")).unwrap(),
    )
    .unwrap();
    let hw = firmware::record::HwId::parse_hex("1234567800000003").unwrap();
    let pairs = 500;
    let t = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let key = &key;
                let token = &token;
                s.spawn(move || {
                    let mut c = Client::connect(port, token).unwrap();
                    (0..pairs)
                        .map(|_| {
                            let t = Instant::now();
                            let (s, ch) = c
                                .request("POST", "/v1/auth/challenge", r#"{"serial":1}"#)
                                .unwrap();
                            assert_eq!(s, 200);
                            let ch: serde_json::Value = serde_json::from_str(&ch).unwrap();
                            let nonce: [u8; 32] = hex::decode(ch["nonce"].as_str().unwrap())
                                .unwrap()
                                .try_into()
                                .unwrap();
                            let sig: p256::ecdsa::Signature = key
                                .sign_prehash(&lambda::api::auth_digest(&nonce, hw, 1))
                                .unwrap();
                            let body = format!(
                                r#"{{"challenge_id":"{}","serial":1,"hw_id":"1234567800000003","signature":"{}"}}"#,
                                ch["challenge_id"].as_str().unwrap(),
                                hex::encode(sig.to_bytes())
                            );
                            let (s, _) = c.request("POST", "/v1/auth/verify", &body).unwrap();
                            assert_eq!(s, 200);
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = t.elapsed();
    let mut sorted = latencies.clone();
    sorted.sort();
    println!(
        "{:<28} {:>7} pairs     {:>9.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        "challenge + verify",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        sorted[sorted.len() / 2].as_secs_f64() * 1e3,
        sorted[sorted.len() * 99 / 100].as_secs_f64() * 1e3,
    );
    let _ = server.kill();
    let _ = server.wait();

    let peer = bare_sqlite(&dir.join("peer.db"), 3000);
    println!(
        "{:<28} {:>7} allocations {peer:>7.0}/s",
        "peer: bare rusqlite loop", 3000
    );
    println!(
        "ratios: new provisions / peer = {:.2}x; repeat provisions = {:.0}/s; goals: new >= 2000/s with p99 < 20 ms, repeat >= 20000/s",
        new_rate / peer,
        repeat_rate
    );
}

/// Process start to the first answer posted to the runtime API.
fn cold_starts(label: &str, store: &str, extra_env: &[(&str, &str)], runs: usize) {
    let event: serde_json::Value = {
        let mut e: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{DATA}apigw/http-api-event.json")).unwrap(),
        )
        .unwrap();
        e["headers"]
            .as_object_mut()
            .unwrap()
            .remove("content-length");
        e
    };
    let roles = r#"{"arn:aws:iam::123456789012:role/factory-station": "factory"}"#;
    let authorities = std::fs::read_to_string(format!("{DATA}records/authority.pub.pem")).unwrap();
    let mut times = Vec::new();
    for _ in 0..runs {
        let api = common::RuntimeApi::start();
        api.invoke(&event);
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .envs(api.env())
            .envs(extra_env.iter().copied())
            .env("PROVISIOND_STORE", store)
            .env("PROVISIOND_AUTHORITIES", &authorities)
            .env("PROVISIOND_CALLER_ROLES", roles)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let a = api.answer();
        times.push(a.at - t);
        assert_eq!(a.kind, "response");
        assert!(a.body.contains("\"statusCode\":200"), "{}", a.body);
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    println!(
        "lambda cold start ({label}): {runs} runs  median {:.1} ms  p90 {:.1} ms  min {:.1} ms  (goal < 30 ms)",
        times[runs / 2].as_secs_f64() * 1e3,
        times[runs * 9 / 10].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    server_load(dir.path());

    let db = dir.path().join("cold.db");
    cold_starts("SQLite store", &format!("sqlite:{}", db.display()), &[], 20);
    if std::env::var_os("VENV_PYTHON").is_some() {
        let moto = common::Moto::start();
        let uri = moto.store_uri("cold");
        let parsed: lambda::config::StoreUri = uri.parse().unwrap();
        drop(parsed.open().wait().unwrap());
        let env = common::Moto::env();
        cold_starts("DynamoDB on moto_server", &uri, &env, 20);
    }
}
