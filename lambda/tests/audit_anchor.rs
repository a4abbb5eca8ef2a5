//! Signed checkpoints anchor the backend's audit chain, on SQLite and on
//! DynamoDB (moto_server), through `provisiond audit checkpoint` and
//! `provisiond audit verify --checkpoint-key`: the attacks the hash chain
//! alone misses (an edit with the chain recomputed after it, a device chain
//! cut below a signed head, a tail cut back to an older checkpoint) and a
//! forged checkpoint are each detected, and text with control characters is
//! stored and shown escaped. On DynamoDB the log is many chains (the service
//! chain and the device chains); the checkpoints cover them all.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use firmware::record::HwId;
use lambda::audit::{entry_hash, AuditEntry};

/// Edits a stored log behind the store's back, as someone with write access
/// to the database could.
trait Tamper {
    fn uri(&self) -> &str;
    /// Replace entry `seq` of `chain`'s subject and recompute every hash of
    /// that chain from it on (and its head), so the chain verifies again.
    fn rewrite(&self, chain: u32, seq: u64, subject: &str);
    /// Keep only the first `keep` entries of `chain` (and move its head
    /// back, or remove it).
    fn truncate(&self, chain: u32, keep: u64);
}

struct Sqlite {
    path: PathBuf,
    uri: String,
}

impl Tamper for Sqlite {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn rewrite(&self, chain: u32, seq: u64, subject: &str) {
        assert_eq!(chain, 0, "SQLite keeps one chain");
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.execute(
            "UPDATE audit SET subject = ?1 WHERE seq = ?2",
            rusqlite::params![subject, seq as i64],
        )
        .unwrap();
        let rows: Vec<(i64, i64, String, String, String, String)> = conn
            .prepare("SELECT seq, time, actor, action, subject, outcome FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut prev = [0u8; 32];
        for (s, time, actor, action, subject, outcome) in rows {
            let e = AuditEntry {
                actor,
                action,
                subject,
                outcome,
            };
            let hash = entry_hash(&prev, s as u64, time, &e);
            conn.execute(
                "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                rusqlite::params![&prev[..], &hash[..], s],
            )
            .unwrap();
            prev = hash;
        }
    }

    fn truncate(&self, chain: u32, keep: u64) {
        assert_eq!(chain, 0, "SQLite keeps one chain");
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.execute("DELETE FROM audit WHERE seq > ?1", [keep as i64])
            .unwrap();
    }
}

/// The same on DynamoDB, with boto3 (the chain recomputed in Python from
/// docs/backend.md's definition).
struct Dynamo {
    moto: common::Moto,
    uri: String,
}

const DYNAMO_TAMPER: &str = r#"
import boto3, hashlib, struct, sys
endpoint, prefix, op, chain, arg = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
import os
db = boto3.client("dynamodb", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
audit, meta = prefix + "-audit", prefix + "-meta"
items = [i for i in db.scan(TableName=audit, ConsistentRead=True)["Items"] if int(i["chain"]["N"]) == chain]
items.sort(key=lambda i: int(i["seq"]["N"]))
head = {"name": {"S": "audit_head:%d" % chain}, "chain": {"N": str(chain)}}
genesis = bytes(32) if chain == 0 else hashlib.sha256(b"nrf-fleet/backend-audit-chain/v1\0" + struct.pack("<I", chain)).digest()
if op == "truncate":
    keep = int(arg[0])
    for i in items[keep:]:
        db.delete_item(TableName=audit, Key={"chain": i["chain"], "seq": i["seq"]})
    if keep == 0:
        db.delete_item(TableName=meta, Key={"name": head["name"]})
    else:
        last = items[keep - 1]
        db.put_item(TableName=meta, Item=dict(head, seq=last["seq"], hash=last["hash"]))
else:
    seq, subject = int(arg[0]), arg[1]
    prev = genesis
    for i in items:
        if int(i["seq"]["N"]) == seq:
            i["subject"] = {"S": subject}
        h = hashlib.sha256(prev)
        h.update(struct.pack("<Q", int(i["seq"]["N"])))
        h.update(struct.pack("<q", int(i["time"]["N"])))
        for f in ("actor", "action", "subject", "outcome"):
            b = i[f]["S"].encode()
            h.update(struct.pack("<I", len(b)) + b)
        i["prev_hash"] = {"B": prev}
        prev = h.digest()
        i["hash"] = {"B": prev}
        db.put_item(TableName=audit, Item=i)
    db.put_item(TableName=meta, Item=dict(head, seq=items[-1]["seq"], hash={"B": prev}))
"#;

impl Dynamo {
    fn run(&self, args: &[&str]) {
        let out = Command::new(std::env::var("VENV_PYTHON").unwrap())
            .arg("-c")
            .arg(DYNAMO_TAMPER)
            .arg(format!("http://127.0.0.1:{}", self.moto.port))
            .arg("anchor")
            .args(args)
            .envs(common::Moto::env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Tamper for Dynamo {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn rewrite(&self, chain: u32, seq: u64, subject: &str) {
        self.run(&["rewrite", &chain.to_string(), &seq.to_string(), subject]);
    }

    fn truncate(&self, chain: u32, keep: u64) {
        self.run(&["truncate", &chain.to_string(), &keep.to_string()]);
    }
}

fn provisiond(args: &[&str], store: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(args)
        .args(["--store", store])
        .envs(common::Moto::env())
        .output()
        .unwrap()
}

/// A P-256 key as a PKCS#8 PEM file and its public half, from `keytool`'s
/// sibling: the signer crate's file backend reads what p256 writes.
fn key_files(dir: &Path, name: &str) -> (String, PathBuf) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let sk = p256::SecretKey::random(&mut rand_core::OsRng);
    let private = dir.join(format!("{name}.pem"));
    std::fs::write(
        &private,
        sk.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(
        &public,
        sk.public_key().to_public_key_pem(LineEnding::LF).unwrap(),
    )
    .unwrap();
    (format!("file:{}", private.display()), public)
}

fn verify(t: &dyn Tamper, public: &Path, max_age: Option<&str>) -> (bool, serde_json::Value) {
    let mut args = vec!["audit", "verify", "--json", "--checkpoint-key"];
    let public = public.display().to_string();
    args.push(&public);
    if let Some(a) = max_age {
        args.extend(["--max-age", a]);
    }
    let out = provisiond(&args, t.uri());
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn checkpoint(t: &dyn Tamper, key: &str) {
    let out = provisiond(&["audit", "checkpoint", "--key", key], t.uri());
    assert!(out.status.success(), "{out:?}");
}

fn anchored_log_detects_what_the_chain_misses(t: &dyn Tamper, dir: &Path) {
    let (key, public) = key_files(dir, "checkpoint");
    let store = t
        .uri()
        .parse::<lambda::config::StoreUri>()
        .unwrap()
        .open()
        .wait()
        .unwrap();
    for i in 0..3 {
        store
            .provision(HwId::from_deviceid(i, 1), None, "factory:line-1")
            .wait()
            .unwrap();
    }
    // An actor name chosen by a caller, with a line break and a terminal
    // escape in it: stored and shown escaped.
    store
        .provision(
            HwId::from_deviceid(9, 1),
            Some("x"),
            "factory:evil\n\u{1b}[2J",
        )
        .wait()
        .unwrap();
    checkpoint(t, &key);
    let at_first_checkpoint = store.audit_heads().wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    store
        .provision(HwId::from_deviceid(4, 1), None, "factory:line-1")
        .wait()
        .unwrap();
    checkpoint(t, &key);
    // Where an entry is: (chain, seq) of the first whose subject has `text`.
    let find = |text: &str| {
        let log = store.audit_log().wait().unwrap();
        let e = log.iter().find(|e| e.entry.subject.contains(text)).unwrap();
        (e.chain, e.seq, e.entry.subject.clone())
    };
    let total = |heads: &[lambda::audit::ChainHead]| heads.iter().map(|h| h.seq).sum::<u64>();
    let (ok, v) = verify(t, &public, Some("2s"));
    assert!(ok, "{v}");
    assert_eq!(
        (v["checkpoints"].as_u64(), v["unanchored"].as_u64()),
        (Some(2), Some(0))
    );
    let shown = provisiond(&["audit", "show"], t.uri());
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("factory:evil\\u{a}\\u{1b}[2J"), "{shown}");
    assert!(!shown.contains('\u{1b}'));
    assert_eq!(
        shown.lines().count() as u64,
        total(&store.audit_heads().wait().unwrap())
    );

    // The plain chain check passes a rewritten history; the checkpoints do not.
    let (chain, seq, original) = find(&HwId::from_deviceid(1, 1).to_string());
    t.rewrite(chain, seq, "hw_id:0000000000000000");
    let out = provisiond(&["audit", "verify"], t.uri());
    assert!(out.status.success(), "the chain alone was fooled: {out:?}");
    let (ok, v) = verify(t, &public, None);
    assert!(!ok);
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("chain was rewritten"),
        "{v}"
    );
    // Put back (the same subject and times give the same hashes).
    t.rewrite(chain, seq, &original);
    let (ok, v) = verify(t, &public, None);
    assert!(ok, "{v}");

    // A checkpoint signed by another key.
    let (other, _) = key_files(dir, "other");
    checkpoint(t, &other);
    let (ok, v) = verify(t, &public, None);
    assert!(!ok);
    assert!(
        v["problem"].as_str().unwrap().contains("does not verify"),
        "{v}"
    );

    // A device chain cut below the head a checkpoint signed (with many
    // chains, the service chain and its checkpoints can stay whole).
    let (chain, seq, _) = find(&HwId::from_deviceid(4, 1).to_string());
    if chain != 0 {
        t.truncate(chain, seq - 1);
        let out = provisiond(&["audit", "verify"], t.uri());
        assert!(
            out.status.success(),
            "the chains alone were fooled: {out:?}"
        );
        let (ok, v) = verify(t, &public, None);
        assert!(!ok);
        assert!(v["problem"].as_str().unwrap().contains("cut back"), "{v}");
    }

    // Cut back to the first checkpoint: every remaining entry verifies, but
    // the newest checkpoint is older than the interval allows.
    let now = store.audit_heads().wait().unwrap();
    for head in &now {
        let keep = at_first_checkpoint
            .iter()
            .find(|h| h.chain == head.chain)
            .map_or(0, |h| h.seq);
        t.truncate(head.chain, keep);
    }
    let out = provisiond(&["audit", "verify"], t.uri());
    assert!(out.status.success());
    let (ok, v) = verify(t, &public, None);
    assert!(
        ok,
        "without --max-age a cut at a checkpoint looks whole: {v}"
    );
    let (ok, v) = verify(t, &public, Some("2s"));
    assert!(!ok);
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("may have been cut back"),
        "{v}"
    );
}

#[test]
fn sqlite_checkpoints_detect_rewrites_forgeries_and_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reg.db");
    let t = Sqlite {
        uri: format!("sqlite:{}", path.display()),
        path,
    };
    anchored_log_detects_what_the_chain_misses(&t, dir.path());
}

#[test]
fn dynamodb_checkpoints_detect_rewrites_forgeries_and_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let moto = common::Moto::start();
    let uri = moto.store_uri("anchor");
    let t = Dynamo { moto, uri };
    anchored_log_detects_what_the_chain_misses(&t, dir.path());
}

#[test]
fn a_running_server_checkpoints_at_its_interval_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reg.db");
    let t = Sqlite {
        uri: format!("sqlite:{}", path.display()),
        path,
    };
    let (key, public) = key_files(dir.path(), "checkpoint");
    let out = provisiond(
        &["token", "add", "--name", "l", "--role", "factory"],
        t.uri(),
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = common::free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            t.uri(),
        ])
        .args(["--checkpoint-key", &key, "--checkpoint-every", "1s"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_port(port, "provisiond");
    let mut c = common::load::Client::connect(port, &token).unwrap();
    for i in 0..3 {
        let (s, _) = c
            .request(
                "POST",
                "/v1/provision",
                &format!(r#"{{"hw_id":"{i:016x}"}}"#),
            )
            .unwrap();
        assert_eq!(s, 200);
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
    let stop = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    assert!(server.wait().unwrap().success(), "a clean stop");
    let (ok, v) = verify(&t, &public, None);
    assert!(ok, "{v}");
    // One at start (the token's entry), at least two on the interval after
    // provisions, one at the stop: nothing is left unanchored.
    assert!(v["checkpoints"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["unanchored"].as_u64(), Some(0), "{v}");
}
