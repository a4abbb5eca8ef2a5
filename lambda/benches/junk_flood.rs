//! Provisioning while anonymous junk floods the device endpoint: `provisiond
//! serve` (release build, SQLite) on 127.0.0.1, 32 factory clients
//! provisioning new chips, first alone (the peer: the same server unloaded,
//! in the same run), then while senders keep 2,000 junk `/v1/auth/verify`
//! requests per second coming (unknown challenges, random serials), with
//! the server's default device limits and with them off. The goal: p99 of
//! provisioning under the flood within 2x the unloaded p99.
//!
//! `cargo bench -p lambda --bench junk_flood`
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::load::{self, Client};

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 1_500;
const JUNK_PER_SECOND: u64 = 2_000;
const JUNK_SENDERS: u64 = 8;

struct Server {
    child: Child,
    port: u16,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, limits: &[&str]) -> Server {
    let db = dir.join(format!("reg-{}.db", limits.len()));
    let store = format!("sqlite:{}", db.display());
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args([
            "token", "add", "--name", "line", "--role", "factory", "--store", &store,
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &store,
        ])
        .args(limits)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_port(port, "provisiond");
    Server { child, port, token }
}

/// 32 clients provisioning new chips (`base` keeps runs apart); p50, p99.
fn provisioning(s: &Server, base: u64) -> (Duration, Duration, f64) {
    let t = Instant::now();
    let answers = load::run(s.port, &s.token, CLIENTS, PER_CLIENT, |c, i| {
        (
            "/v1/provision".into(),
            format!(
                r#"{{"hw_id":"{:016x}"}}"#,
                base + (c * PER_CLIENT + i) as u64
            ),
        )
    });
    let elapsed = t.elapsed();
    assert_eq!(answers.len(), CLIENTS * PER_CLIENT);
    assert!(
        answers.iter().all(|a| a.status == 200),
        "a provision failed"
    );
    (
        load::quantile(&answers, 0.50),
        load::quantile(&answers, 0.99),
        answers.len() as f64 / elapsed.as_secs_f64(),
    )
}

/// Junk verifications at `JUNK_PER_SECOND` until `stop`; (sent, by status).
fn flood(port: u16, stop: &AtomicBool) -> (u64, Vec<(u16, u64)>) {
    let sent = AtomicU64::new(0);
    let statuses: Vec<AtomicU64> = (0..600).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        for sender in 0..JUNK_SENDERS {
            let (sent, statuses) = (&sent, &statuses);
            s.spawn(move || {
                let mut c = Client::connect(port, "none").unwrap();
                let every = Duration::from_secs_f64(JUNK_SENDERS as f64 / JUNK_PER_SECOND as f64);
                let t0 = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let due = t0 + every * n as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let serial = (sender * 1_000_003 + n * 7919) % 4_000_000_000;
                    let body = format!(
                        r#"{{"challenge_id":"{n:032x}","serial":{serial},"hw_id":"00000000{n:08x}","signature":"{}"}}"#,
                        "ab".repeat(64)
                    );
                    match c.request("POST", "/v1/auth/verify", &body) {
                        Ok((status, _)) => {
                            statuses[usize::from(status).min(599)].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => c = Client::connect(port, "none").unwrap(),
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
    });
    let by_status = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let n = n.load(Ordering::Relaxed);
            (n > 0).then_some((i as u16, n))
        })
        .collect();
    (sent.load(Ordering::Relaxed), by_status)
}

fn under_flood(s: &Server, base: u64) -> (Duration, Duration, f64, f64, Vec<(u16, u64)>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let junk = scope.spawn(|| {
            let t = Instant::now();
            let (sent, statuses) = flood(s.port, &stop);
            (sent as f64 / t.elapsed().as_secs_f64(), statuses)
        });
        // Let the flood reach its rate first.
        std::thread::sleep(Duration::from_millis(500));
        let (p50, p99, rate) = provisioning(s, base);
        stop.store(true, Ordering::Relaxed);
        let (junk_rate, statuses) = junk.join().unwrap();
        (p50, p99, rate, junk_rate, statuses)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for (name, limits) in [
        ("default device limits", &[][..]),
        (
            "device limits off",
            &["--auth-rate-per-source", "0", "--auth-rate-per-serial", "0"][..],
        ),
    ] {
        let s = start(dir.path(), limits);
        // Warm up (connections, page cache), then measure.
        provisioning(&s, 1 << 40);
        let (p50, p99, rate) = provisioning(&s, 2 << 40);
        let (fp50, fp99, frate, junk, statuses) = under_flood(&s, 3 << 40);
        println!("{name}:");
        println!(
            "  unloaded        {rate:>7.0} provisions/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
            ms(p50),
            ms(p99)
        );
        println!(
            "  junk {junk:>5.0}/s   {frate:>7.0} provisions/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99 ratio {:.2}x  junk answers {statuses:?}",
            ms(fp50),
            ms(fp99),
            fp99.as_secs_f64() / p99.as_secs_f64()
        );
    }
}
