//! Releases under a written policy, through the real binary: the release key
//! and one officer's approval key live in a SoftHSM2 token, the other
//! officers use files, signed images are checked with imgtool. One test per
//! attack a signing station must stop; every refusal leaves nothing signed
//! and exactly one audit entry saying why.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{imgtool, ok, stderr};
use policies::audit::Entry;
use sha2::{Digest, Sha256};
use signer::testing::SoftHsmToken;

const RELEASE_KEY: &str = "pkcs11:token=release;object=sensor-release";
const ALICE_KEY: &str = "pkcs11:token=release;object=alice";

/// A station: a token, file keys, a policy and its audit log in a directory.
struct Station {
    token: SoftHsmToken,
    dir: PathBuf,
    station_key: String,
    /// Officers whose approval keys are in their own tokens: name → URI.
    officers: std::collections::HashMap<String, String>,
}

fn fingerprint_of_der(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

impl Station {
    /// `products` is appended to a policy holding the keys and officers.
    fn new(production: bool, products: &str) -> Self {
        let token = SoftHsmToken::new("release", "1234").unwrap();
        token.generate_p256("sensor-release", "01").unwrap();
        token.generate_p256("alice", "02").unwrap();
        token.generate_p256("station", "03").unwrap();
        let dir = token.dir.path().join("station");
        std::fs::create_dir(&dir).unwrap();
        let station_key = if production {
            "pkcs11:token=release;object=station".to_owned()
        } else {
            format!("file:{}", dir.join("station.pem").display())
        };
        let s = Self {
            token,
            dir,
            station_key,
            officers: Default::default(),
        };
        for name in ["authority", "station", "bob", "carol", "dave", "outsider"] {
            ok(s.keytool()
                .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
                .arg(s.path(&format!("{name}.pem"))));
        }
        for (name, key) in [
            ("alice", ALICE_KEY.to_owned()),
            ("bob", s.file_key("bob")),
            ("carol", s.file_key("carol")),
            ("dave", s.file_key("dave")),
        ] {
            let pem = ok(s.keytool().args(["key", "getpub", "-e", "pem", "-k", &key]));
            std::fs::write(s.path(&format!("{name}.pub.pem")), pem).unwrap();
        }
        let release_fp = s.fingerprint(RELEASE_KEY);
        let authority_fp = s.fingerprint(&s.file_key("authority"));
        let (authority_uri, station_uri) = if production {
            // Production keys must not be files; these are never opened by
            // the tests that use a production policy.
            (
                "pkcs11:token=release;object=authority",
                "pkcs11:token=release;object=station",
            )
        } else {
            ("file:authority.pem", "file:station.pem")
        };
        let station_fp = if production {
            s.fingerprint("pkcs11:token=release;object=station")
        } else {
            s.fingerprint(&s.file_key("station"))
        };
        let policy = format!(
            r#"name = "test-fleet"
production = {production}
audit_log = "audit.jsonl"
station_key = "{station_uri}"
station_key_fingerprint = "{station_fp}"

[keys.sensor-release]
uri = "{RELEASE_KEY}"
role = "release"
fingerprint = "{release_fp}"

[keys.authority]
uri = "{authority_uri}"
role = "authority"
fingerprint = "{authority_fp}"

[officers]
alice = {{ public_key = "alice.pub.pem" }}
bob = {{ public_key = "bob.pub.pem" }}
carol = {{ public_key = "carol.pub.pem" }}
dave = {{ public_key = "dave.pub.pem" }}

{products}"#
        );
        std::fs::write(s.policy(), policy).unwrap();
        if production {
            // A production station never starts its history by itself.
            ok(s.keytool().args(["audit", "init"]));
        }
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn policy(&self) -> PathBuf {
        self.path("policy.toml")
    }

    fn log(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    fn file_key(&self, name: &str) -> String {
        format!("file:{}", self.path(&format!("{name}.pem")).display())
    }

    fn officer_key(&self, name: &str) -> String {
        if let Some(uri) = self.officers.get(name) {
            uri.clone()
        } else if name == "alice" {
            ALICE_KEY.to_owned()
        } else {
            self.file_key(name)
        }
    }

    fn keytool(&self) -> Command {
        let mut c = self.token.command(env!("CARGO_BIN_EXE_keytool"));
        c.env("KEYTOOL_POLICY", self.dir.join("policy.toml"));
        c.env("USER", "release-engineer");
        c
    }

    fn fingerprint(&self, key: &str) -> String {
        let out = self
            .keytool()
            .args(["key", "getpub", "-e", "raw", "-k", key])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        fingerprint_of_der(&out.stdout)
    }

    /// An unsigned image of `size` payload bytes (pseudo-random, by `seed`).
    fn image(&self, name: &str, version: &str, counter: u32, size: usize, seed: u8) -> PathBuf {
        let raw = self.path(&format!("{name}.raw"));
        let payload: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        std::fs::write(&raw, payload).unwrap();
        let out = self.path(&format!("{name}.unsigned.bin"));
        ok(Command::new(env!("CARGO_BIN_EXE_keytool"))
            .args([
                "image",
                "sign",
                "-v",
                version,
                "-H",
                "0x200",
                "--pad-header",
            ])
            .args(["-S", "0x20000", "-s", &counter.to_string()])
            .arg(&raw)
            .arg(&out));
        out
    }

    fn request(&self, image: &Path, product: &str, extra: &[&str]) -> PathBuf {
        let req = image.with_extension("req.json");
        ok(self
            .keytool()
            .args(["release", "request", "--product", product, "-o"])
            .arg(&req)
            .args(extra)
            .arg(image));
        req
    }

    fn approve(&self, req: &Path, officer: &str) -> Output {
        self.keytool()
            .args([
                "release",
                "approve",
                "--yes",
                "--officer-key",
                &self.officer_key(officer),
            ])
            .arg(req)
            .output()
            .unwrap()
    }

    fn approve_ok(&self, req: &Path, officers: &[&str]) {
        for o in officers {
            let out = self.approve(req, o);
            assert!(out.status.success(), "approve {o}: {}", stderr(&out));
        }
    }

    fn sign(&self, req: &Path, image: &Path, key: &str, out: &Path) -> Output {
        self.keytool()
            .args(["release", "sign", "-k", key, "--image"])
            .arg(image)
            .arg("-o")
            .arg(out)
            .arg(req)
            .output()
            .unwrap()
    }

    /// `release sign` with the release key unlocked by `unlock` (NAME=URI).
    fn sign_unlocked(&self, req: &Path, image: &Path, out: &Path, unlock: &[&str]) -> Output {
        let mut c = self.keytool();
        c.args(["release", "sign", "-k", RELEASE_KEY, "--image"])
            .arg(image)
            .arg("-o")
            .arg(out)
            .arg(req);
        for u in unlock {
            c.args(["--unlock", u]);
        }
        c.output().unwrap()
    }

    /// `release request` for the sensor product, as it went.
    fn try_request(&self, image: &Path, out: &Path) -> Output {
        self.keytool()
            .args(["release", "request", "--product", "sensor", "-o"])
            .arg(out)
            .arg(image)
            .output()
            .unwrap()
    }

    /// An unsigned image, its request for `product` approved by `officers`,
    /// and where its signed image would go.
    #[allow(clippy::too_many_arguments)]
    fn approved(
        &self,
        name: &str,
        version: &str,
        counter: u32,
        size: usize,
        seed: u8,
        product: &str,
        officers: &[&str],
    ) -> (PathBuf, PathBuf, PathBuf) {
        let image = self.image(name, version, counter, size, seed);
        let req = self.request(&image, product, &[]);
        self.approve_ok(&req, officers);
        (image, req, self.path(&format!("{name}.signed.bin")))
    }

    fn release(&self, image: &Path, officers: &[&str]) -> PathBuf {
        let req = self.request(image, "sensor", &[]);
        self.approve_ok(&req, officers);
        let out = image.with_extension("signed.bin");
        let o = self.sign(&req, image, RELEASE_KEY, &out);
        assert!(o.status.success(), "sign: {}", stderr(&o));
        out
    }

    /// The log's entries other than checkpoints.
    fn events(&self) -> Vec<Entry> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Entry>(l).unwrap())
            .filter(|e| e.action != "checkpoint")
            .collect()
    }

    /// Run `f`, which must be refused: exit 1, `out` not written, and exactly
    /// one new audit entry for `action`, refused, naming `reason`.
    fn assert_refused(
        &self,
        action: &str,
        reason: &str,
        out: Option<&Path>,
        f: impl FnOnce() -> Output,
    ) {
        let before = self.events().len();
        let o = f();
        assert_eq!(
            o.status.code(),
            Some(1),
            "expected a refusal: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(reason),
            "{reason:?} not in: {}",
            stderr(&o)
        );
        if let Some(out) = out {
            assert!(!out.exists(), "{} was written", out.display());
        }
        let events = self.events();
        assert_eq!(events.len(), before + 1, "one audit entry per refusal");
        let last = events.last().unwrap();
        assert_eq!(last.action, action);
        assert!(
            last.outcome.starts_with("refused: ") && last.outcome.contains(reason),
            "{:?}",
            last.outcome
        );
        self.assert_log_verifies();
    }

    /// `release sign` with the release key must be refused for `reason`.
    fn assert_release_refused(&self, req: &Path, image: &Path, out: &Path, reason: &str) {
        self.assert_refused("release.sign", reason, Some(out), || {
            self.sign(req, image, RELEASE_KEY, out)
        });
    }

    fn assert_log_verifies(&self) {
        ok(self
            .keytool()
            .args(["audit", "verify", "-k", &self.station_key, "--log"])
            .arg(self.log()));
    }
}

const SENSOR: &str = r#"
[products.sensor]
slot_size = 0x20000
release_keys = ["sensor-release"]
officers = ["alice", "bob", "carol", "dave"]
quorum = 2
rollback_quorum = 3
max_major_jump = 1
required_tlvs = ["SEC_CNT"]

[products.tiny]
slot_size = 0x800
release_keys = ["sensor-release"]
officers = ["alice", "bob", "carol"]
quorum = 2
rollback_quorum = 3
"#;

fn imgtool_verifies(station: &Station, signed: &Path) {
    let pem = station.path("release.pub.pem");
    std::fs::write(
        &pem,
        ok(station
            .keytool()
            .args(["key", "getpub", "-e", "pem", "-k", RELEASE_KEY])),
    )
    .unwrap();
    let out = imgtool()
        .arg("verify")
        .arg("-k")
        .arg(&pem)
        .arg(signed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "imgtool verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn a_release_needs_a_quorum_of_distinct_officers_and_verifies_with_imgtool() {
    let s = Station::new(false, SENSOR);
    ok(s.keytool().arg("policy").arg("check").arg(s.policy()));
    let image = s.image("app", "1.2.0", 3, 3000, 1);
    let req = s.request(&image, "sensor", &[]);
    let out = s.path("app.signed.bin");

    // Alice (HSM) approves; her second approval is refused and logged.
    s.approve_ok(&req, &["alice"]);
    s.assert_refused(
        "release.approve",
        "alice has already approved",
        None,
        || s.approve(&req, "alice"),
    );
    // An outsider's key is nobody's approval key.
    s.assert_refused("release.approve", "no officer's approval key", None, || {
        s.keytool()
            .args([
                "release",
                "approve",
                "--yes",
                "--officer-key",
                &s.file_key("outsider"),
            ])
            .arg(&req)
            .output()
            .unwrap()
    });
    // Alice's approval copied in twice still counts once.
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&req).unwrap()).unwrap();
    let first = file["approvals"][0].clone();
    file["approvals"].as_array_mut().unwrap().push(first);
    std::fs::write(&req, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    s.assert_refused("release.sign", "1 of 2 needed (alice)", Some(&out), || {
        s.sign(&req, &image, RELEASE_KEY, &out)
    });
    assert!(stderr(&s.sign(&req, &image, RELEASE_KEY, &out)).contains("counted once"));

    s.approve_ok(&req, &["bob"]);
    let o = s.sign(&req, &image, RELEASE_KEY, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    imgtool_verifies(&s, &out);
    let last = s.events().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("release.sign", "ok")
    );
    assert!(
        last.subjects.contains(&"version:1.2.0+0".to_owned()),
        "{last:?}"
    );
    assert!(
        last.subjects.contains(&"approved-by:alice,bob".to_owned()),
        "{last:?}"
    );
    s.assert_log_verifies();
}

#[test]
fn rollbacks_lower_counters_and_fast_forwards_need_more_or_are_refused() {
    let s = Station::new(false, SENSOR);
    s.release(&s.image("v120", "1.2.0", 3, 2000, 1), &["alice", "bob"]);

    // A lower version: a rollback, which the normal quorum cannot sign.
    let (old, req, out) = s.approved("v110", "1.1.0", 3, 2000, 2, "sensor", &["bob", "carol"]);
    s.assert_release_refused(&req, &old, &out, "2 of 3 needed for a rollback");
    // The rollback quorum signs it; the log now holds 1.1.0 as the last.
    s.approve_ok(&req, &["dave"]);
    let o = s.sign(&req, &old, RELEASE_KEY, &out);
    assert!(o.status.success(), "{}", stderr(&o));

    // A lower security counter is never signed, whatever the approvals.
    let (low, req, out) = s.approved(
        "v130",
        "1.3.0",
        2,
        2000,
        3,
        "sensor",
        &["alice", "bob", "carol", "dave"],
    );
    s.assert_release_refused(
        &req,
        &low,
        &out,
        "security counter 2 is below the last release's 3",
    );

    // A jump of two major versions is a fast-forward.
    let (far, req, out) = s.approved("v300", "3.0.0", 9, 2000, 4, "sensor", &["alice", "bob"]);
    s.assert_release_refused(&req, &far, &out, "2 of 3 needed for a fast-forward");
    s.approve_ok(&req, &["carol"]);
    assert!(s.sign(&req, &far, RELEASE_KEY, &out).status.success());
    imgtool_verifies(&s, &out);

    // A normal step after it needs only the normal quorum again.
    s.release(&s.image("v310", "3.1.0", 10, 2000, 5), &["alice", "dave"]);
}

#[test]
fn approvals_bind_exactly_one_image_and_version() {
    let s = Station::new(false, SENSOR);
    let a = s.image("a", "1.0.0", 1, 2000, 1);
    let req_a = s.request(&a, "sensor", &[]);
    s.approve_ok(&req_a, &["alice", "bob"]);

    // Another image of the same version, with A's approvals pasted in.
    let b = s.image("b", "1.0.0", 1, 2000, 9);
    let req_b = s.request(&b, "sensor", &[]);
    let approvals: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&req_a).unwrap())
            .unwrap()["approvals"]
            .clone();
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&req_b).unwrap()).unwrap();
    file["approvals"] = approvals;
    std::fs::write(&req_b, serde_json::to_string(&file).unwrap()).unwrap();
    let out = s.path("b.signed.bin");
    s.assert_release_refused(&req_b, &b, &out, "2 signature(s) not over this request");

    // A's approved request, with B's image: the image does not match.
    s.assert_refused("release.sign", "is not the requested", Some(&out), || {
        s.sign(&req_a, &b, RELEASE_KEY, &out)
    });

    // A's request edited to another version: every approval is void.
    let text = std::fs::read_to_string(&req_a)
        .unwrap()
        .replace("\"1.0.0+0\"", "\"1.0.1+0\"");
    let edited = s.path("edited.req.json");
    std::fs::write(&edited, text).unwrap();
    s.assert_refused("release.sign", "not over this request", Some(&out), || {
        s.sign(&edited, &a, RELEASE_KEY, &out)
    });
}

#[test]
fn an_expired_request_is_refused() {
    let s = Station::new(false, SENSOR);
    let image = s.image("app", "1.0.0", 1, 2000, 1);
    let req = s.request(&image, "sensor", &["--valid-for", "2s"]);
    s.approve_ok(&req, &["alice", "bob"]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = s.path("app.signed.bin");
    s.assert_refused("release.sign", "unexpired: expired", Some(&out), || {
        s.sign(&req, &image, RELEASE_KEY, &out)
    });
    s.assert_refused("release.approve", "expired", None, || {
        s.approve(&req, "carol")
    });
}

#[test]
fn keys_sign_only_within_their_role() {
    let s = Station::new(false, SENSOR);
    let (image, req, out) = s.approved("app", "1.0.0", 1, 2000, 1, "sensor", &["alice", "bob"]);
    // The authority key may not sign an image.
    s.assert_refused(
        "release.sign",
        "is a authority key; it may not sign images",
        Some(&out),
        || s.sign(&req, &image, &s.file_key("authority"), &out),
    );
    // A key the policy does not know may not sign at all.
    s.assert_refused("release.sign", "is not in the policy", Some(&out), || {
        s.sign(&req, &image, &s.file_key("outsider"), &out)
    });

    // The release key may not sign a provisioning record; the authority may.
    let dev_pub = s.path("bob.pub.pem");
    let record = |key: &str, out: &Path| {
        s.keytool()
            .args([
                "record",
                "sign",
                "-k",
                key,
                "--hw-id",
                "1234567800000003",
                "--serial",
                "7",
            ])
            .arg("--device-pubkey")
            .arg(&dev_pub)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    };
    let rec = s.path("rec.bin");
    s.assert_refused(
        "record.sign",
        "is a release key; it may not sign provisioning records",
        Some(&rec),
        || record(RELEASE_KEY, &rec),
    );
    let o = record(&s.file_key("authority"), &rec);
    assert!(o.status.success(), "{}", stderr(&o));
    let last = s.events().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("record.sign", "ok")
    );
    assert!(last.subjects.contains(&"serial:7".to_owned()), "{last:?}");

    // Under a policy an image is never signed directly, even by a release key.
    let direct = s.path("direct.bin");
    s.assert_refused(
        "image.sign",
        "images are signed only by `keytool release sign`",
        Some(&direct),
        || {
            s.keytool()
                .args([
                    "image",
                    "sign",
                    "-k",
                    RELEASE_KEY,
                    "-v",
                    "1.0.0",
                    "-H",
                    "0x200",
                ])
                .args(["--pad-header", "-S", "0x20000"])
                .arg(s.path("app.raw"))
                .arg(&direct)
                .output()
                .unwrap()
        },
    );
}

#[test]
fn an_image_larger_than_its_slot_is_refused() {
    let s = Station::new(false, SENSOR);
    let (image, req, out) = s.approved("big", "1.0.0", 1, 3000, 1, "tiny", &["alice", "bob"]);
    s.assert_refused("release.sign", "slot-size", Some(&out), || {
        s.sign(&req, &image, RELEASE_KEY, &out)
    });
    // And an image without the required security counter TLV.
    let raw = s.path("big.raw");
    let no_counter = s.path("nocnt.unsigned.bin");
    ok(Command::new(env!("CARGO_BIN_EXE_keytool"))
        .args([
            "image",
            "sign",
            "-v",
            "1.0.0",
            "-H",
            "0x200",
            "--pad-header",
            "-S",
            "0x20000",
        ])
        .arg(&raw)
        .arg(&no_counter));
    let req = s.request(&no_counter, "sensor", &[]);
    s.approve_ok(&req, &["alice", "bob"]);
    let out = s.path("nocnt.signed.bin");
    s.assert_release_refused(
        &req,
        &no_counter,
        &out,
        "missing from the protected TLVs: SEC_CNT",
    );
}

#[test]
fn a_production_policy_refuses_file_keys() {
    // A production policy that names file keys fails its check, each named.
    let s = Station::new(false, SENSOR);
    let text = std::fs::read_to_string(s.policy())
        .unwrap()
        .replace("production = false", "production = true");
    let bad = s.path("prod-bad.toml");
    std::fs::write(&bad, text).unwrap();
    let o = s
        .keytool()
        .arg("policy")
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("station_key: a production policy refuses file: keys"),
        "{e}"
    );
    assert!(
        e.contains("keys.authority.uri: a production policy refuses file: keys"),
        "{e}"
    );

    // A valid production policy: a file key is refused at signing time, and a
    // file officer key at approval time.
    let p = Station::new(true, SENSOR);
    ok(p.keytool().arg("policy").arg("check").arg(p.policy()));
    let image = p.image("app", "1.0.0", 1, 2000, 1);
    let req = p.request(&image, "sensor", &[]);
    p.assert_refused("release.approve", "refuses file: keys", None, || {
        p.approve(&req, "bob")
    });
    p.approve_ok(&req, &["alice"]);
    let out = p.path("app.signed.bin");
    p.assert_refused("release.sign", "refuses file: keys", Some(&out), || {
        p.sign(&req, &image, &p.file_key("authority"), &out)
    });

    // Nor does a file recover the AES key of an encrypted release for
    // per-device copies (docs/encryption.md): the station's encryption key
    // must be a token's.
    let enc = p.path("station-enc.pem");
    ok(p.keytool()
        .args(["key", "generate", "-t", "x25519", "-k"])
        .arg(&enc));
    let encrypted = p.path("app.enc.bin");
    ok(p.keytool()
        .args(["key", "generate", "-t", "ed25519", "-k"])
        .arg(p.path("dev-sign.pem")));
    ok(std::process::Command::new(env!("CARGO_BIN_EXE_keytool"))
        .args(["image", "sign", "-k"])
        .arg(p.path("dev-sign.pem"))
        .arg("-E")
        .arg(&enc)
        .args([
            "-v",
            "1.0.0",
            "-H",
            "0x200",
            "--pad-header",
            "-S",
            "0x20000",
        ])
        .arg(p.path("app.raw"))
        .arg(&encrypted));
    let copy = p.path("copy.bin");
    let o = p
        .keytool()
        .args(["image", "wrap", "--image"])
        .arg(&encrypted)
        .arg("--enc-key")
        .arg(&enc)
        .arg("--device-key")
        .arg(&enc)
        .arg("-o")
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refuses a file as the encryption key"),
        "{}",
        stderr(&o)
    );
    assert!(!copy.exists());
}

#[test]
fn a_tampered_audit_log_stops_the_station() {
    let s = Station::new(false, SENSOR);
    s.release(&s.image("v1", "1.0.0", 1, 2000, 1), &["alice", "bob"]);
    let image = s.image("v2", "1.1.0", 2, 2000, 2);
    let req = s.request(&image, "sensor", &[]);
    s.approve_ok(&req, &["alice", "bob"]);
    let intact = std::fs::read_to_string(s.log()).unwrap();
    let lines: Vec<&str> = intact.lines().collect();
    let out = s.path("v2.signed.bin");

    let edited = intact.replacen("\"version:1.0.0+0\"", "\"version:9.0.0+0\"", 1);
    let mut deleted = lines.clone();
    deleted.remove(2);
    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    let truncated = &lines[..lines.len() - 2];
    for (what, text) in [
        ("edited", edited),
        ("deleted", deleted.join("\n") + "\n"),
        ("reordered", reordered.join("\n") + "\n"),
        ("truncated", truncated.join("\n") + "\n"),
    ] {
        std::fs::write(s.log(), &text).unwrap();
        let v = s
            .keytool()
            .args(["audit", "verify", "-k", &s.file_key("station"), "--log"])
            .arg(s.log())
            .output()
            .unwrap();
        assert_eq!(v.status.code(), Some(1), "{what}: audit verify passed");
        assert!(
            stderr(&v).contains("broken at line"),
            "{what}: {}",
            stderr(&v)
        );
        let o = s.sign(&req, &image, RELEASE_KEY, &out);
        assert_eq!(o.status.code(), Some(1), "{what}: signed anyway");
        assert!(
            stderr(&o).contains("nothing is signed until it verifies"),
            "{what}: {}",
            stderr(&o)
        );
        assert!(!out.exists(), "{what}: output written");
        assert_eq!(
            std::fs::read_to_string(s.log()).unwrap(),
            text,
            "{what}: log touched"
        );
    }
    std::fs::write(s.log(), &intact).unwrap();
    assert!(s.sign(&req, &image, RELEASE_KEY, &out).status.success());
}

#[test]
fn policy_check_explains_every_error() {
    let s = Station::new(false, "");
    let text = std::fs::read_to_string(s.policy()).unwrap()
        + r#"
[products.broken]
slot_size = 0
release_keys = ["authority", "nosuch"]
officers = ["alice", "bob", "mallory", "bob"]
quorum = 5
rollback_quorum = 2
required_tlvs = ["SEC_CNT", "NOT_A_TLV"]
"#;
    let text = text.replacen("\nfingerprint = \"sha256:", "\nfingerprint = \"sha1:", 1);
    let bad = s.path("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let o = s
        .keytool()
        .args(["policy", "check", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let problems: Vec<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}: {}",
                p["at"].as_str().unwrap(),
                p["message"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "keys.sensor-release.fingerprint: expected sha256:",
        "products.broken.slot_size",
        "products.broken.release_keys: \"authority\" is a authority key",
        "products.broken.release_keys: \"nosuch\" is not in [keys]",
        "products.broken.officers: names an officer twice",
        "products.broken.officers: \"mallory\" is not in [officers]",
        "products.broken.quorum: must be between 1 and the 3 officers named",
        "products.broken.rollback_quorum: must be larger than quorum (5)",
        "products.broken.required_tlvs: \"NOT_A_TLV\" is not an MCUboot TLV name",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected:?} missing from {problems:#?}"
        );
    }
    // A syntax error names its line.
    std::fs::write(&bad, "name = \"x\"\n[products.a]\nquorum = \"two\"\n").unwrap();
    let o = s
        .keytool()
        .arg("policy")
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 3"), "{}", stderr(&o));
}

/// An officer's own token, beside the release token (same SoftHSM2 store),
/// and a file holding its PIN.
fn officer_token(s: &Station, name: &str, pin: &str) -> String {
    ok(s.token
        .command("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &format!("{name}-token"),
        ])
        .args(["--pin", pin, "--so-pin", "0000"]));
    let pin_file = s.path(&format!("{name}.pin"));
    std::fs::write(&pin_file, pin).unwrap();
    format!(
        "{name}=pkcs11:token={name}-token?pin-source={}",
        pin_file.display()
    )
}

/// The share a quorum stored in an officer's token, read with pkcs11-tool
/// as the officer (their PIN): magic, threshold, then the share.
fn stored_share(s: &Station, name: &str, pin: &str) -> Vec<u8> {
    let out = s
        .token
        .command("pkcs11-tool")
        .args(["--module", &s.token.module])
        .args(["--token-label", &format!("{name}-token")])
        .args(["--login", "--pin", pin, "--read-object", "--type", "data"])
        .args(["--label", "nrf-fleet quorum share: release"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

#[test]
fn a_quorum_unlocked_release_token_signs_only_with_m_officers_shares() {
    let s = Station::new(false, SENSOR);
    let officers = [
        officer_token(&s, "alice", "1111"),
        officer_token(&s, "bob", "2222"),
        officer_token(&s, "carol", "3333"),
    ];
    // A CA key in the same token, used below with the officers' shares.
    s.token.generate_p256("root", "0a").unwrap();
    let mut init = s.keytool();
    init.args(["ceremony", "init", "--token", "release", "--threshold", "2"])
        .env("PKCS11_SO_PIN", "5678");
    for o in &officers {
        init.args(["--officer", o]);
    }
    let shown = ok(&mut init);
    assert!(shown.contains("2 of 3 officers"), "{shown}");
    let status = ok(s
        .keytool()
        .args(["ceremony", "status", "--token", "release", "--json"]));
    let cfg: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(cfg["threshold"], 2);
    assert_eq!(cfg["officers"][2]["token"], "carol-token");
    let init_entry = s
        .events()
        .into_iter()
        .find(|e| e.action == "ceremony.init")
        .expect("the ceremony is audited");
    assert_eq!(init_entry.outcome, "ok");
    s.assert_log_verifies();

    // The old PIN opens nothing any more: not keytool, not imgtool's
    // personality, not pkcs11-tool.
    let image = s.image("app", "1.2.0", 3, 3000, 1);
    let direct = s
        .keytool()
        .env_remove("KEYTOOL_POLICY")
        .args(["image", "sign", "-k", RELEASE_KEY, "--header-size", "0x200"])
        .args([
            "--pad-header",
            "--align",
            "4",
            "-v",
            "1.2.0",
            "-S",
            "0x10000",
        ])
        .arg(&image)
        .arg(s.path("direct.bin"))
        .output()
        .unwrap();
    assert!(!direct.status.success());
    assert!(
        stderr(&direct).contains("quorum-unlocked"),
        "{}",
        stderr(&direct)
    );
    // The same through keytool's imgtool personality (a link named imgtool).
    let link = s.path("bin/imgtool");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keytool"), &link).unwrap();
    let personality = s
        .token
        .command(&link)
        .args(["sign", "-k", RELEASE_KEY, "--header-size", "0x200"])
        .args([
            "--pad-header",
            "--align",
            "4",
            "-v",
            "1.2.0",
            "-S",
            "0x10000",
        ])
        .arg(&image)
        .arg(s.path("personality.bin"))
        .output()
        .unwrap();
    assert!(
        !personality.status.success(),
        "the imgtool personality signed"
    );
    assert!(
        stderr(&personality).contains("quorum-unlocked"),
        "{}",
        stderr(&personality)
    );
    let tool = s
        .token
        .command("pkcs11-tool")
        .args(["--module", &s.token.module, "--token-label", "release"])
        .args(["--login", "--pin", "1234", "--sign", "-m", "ECDSA"])
        .args(["--label", "sensor-release", "--input-file"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        !tool.status.success(),
        "pkcs11-tool logged in with the old PIN"
    );
    let so = s
        .token
        .command("pkcs11-tool")
        .args(["--module", &s.token.module, "--token-label", "release"])
        .args([
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            "5678",
            "--init-pin",
        ])
        .args(["--new-pin", "9999"])
        .output()
        .unwrap();
    assert!(!so.status.success(), "the old SO PIN reset the user PIN");

    // Certificate issuing takes the shares too (no policy here: the root is
    // no policy key); without them the token does not open.
    let root = |unlock: &[&str]| {
        let mut c = s.keytool();
        c.env_remove("KEYTOOL_POLICY")
            .args(["ca", "init-root", "-k", "pkcs11:token=release;object=root"])
            .args(["--subject", "CN=Quorum Root", "-o"])
            .arg(s.path("root.pem"));
        for u in unlock {
            c.args(["--unlock", u]);
        }
        c.output().unwrap()
    };
    let o = root(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("quorum-unlocked"), "{}", stderr(&o));
    let o = root(&[&officers[1], &officers[2]]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(s.path("root.pem"))
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    // A release approved by two officers (their approval keys are files
    // here) needs two shares as well.
    let req = s.request(&image, "sensor", &[]);
    s.approve_ok(&req, &["bob", "carol"]);
    let out = s.path("app.signed.bin");
    let sign = |unlock: &[&str]| s.sign_unlocked(&req, &image, &out, unlock);
    let one = sign(&[&officers[0]]);
    assert!(!one.status.success());
    assert!(
        stderr(&one).contains("1 of 3 officers' shares given; this token needs 2"),
        "{}",
        stderr(&one)
    );
    assert!(!out.exists());
    let two = sign(&[&officers[0], &officers[2]]);
    assert!(two.status.success(), "{}", stderr(&two));
    imgtool_verifies(&s, &out);

    // The shares are real (any two rebuild a PIN that opens the token), and
    // neither the PIN nor a share is in any file of the station or the
    // token store, or in the log.
    let shares: Vec<blahaj::Share> = [("alice", "1111"), ("bob", "2222")]
        .iter()
        .map(|(n, p)| {
            let raw = stored_share(&s, n, p);
            assert_eq!((&raw[..4], raw[4]), (&b"QSH1"[..], 2));
            blahaj::Share::try_from(&raw[5..]).unwrap()
        })
        .collect();
    let secret = blahaj::Sharks(2).recover(&shares).unwrap();
    let pin = hex::encode(&secret[..32]);
    let login = s
        .token
        .command("pkcs11-tool")
        .args(["--module", &s.token.module, "--token-label", "release"])
        .args(["--login", "--pin", &pin, "--list-objects"])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    let mut needles = vec![
        pin.clone().into_bytes(),
        hex::encode(&secret[32..]).into_bytes(),
    ];
    for share in &shares {
        needles.push(Vec::<u8>::from(share));
        needles.push(hex::encode(Vec::<u8>::from(share)).into_bytes());
    }
    let mut files = vec![];
    let mut stack = vec![s.token.dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 5);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == &n[..]),
                "{} holds a PIN or a share",
                f.display()
            );
        }
    }

    // Rotation under the old quorum: three of three from now on.
    let mut rotate = s.keytool();
    rotate.args([
        "ceremony",
        "rotate",
        "--token",
        "release",
        "--threshold",
        "3",
    ]);
    rotate.args(["--unlock", &officers[1], "--unlock", &officers[2]]);
    for o in &officers {
        rotate.args(["--officer", o]);
    }
    assert!(ok(&mut rotate).contains("3 of 3 officers"));
    let image2 = s.image("app2", "1.3.0", 4, 3000, 2);
    let req2 = s.request(&image2, "sensor", &[]);
    s.approve_ok(&req2, &["bob", "carol"]);
    let out2 = s.path("app2.signed.bin");
    let two = s.sign_unlocked(&req2, &image2, &out2, &[&officers[0], &officers[1]]);
    assert!(stderr(&two).contains("needs 3"), "{}", stderr(&two));
    let all: Vec<&str> = officers.iter().map(String::as_str).collect();
    let three = s.sign_unlocked(&req2, &image2, &out2, &all);
    assert!(three.status.success(), "{}", stderr(&three));
    s.assert_log_verifies();

    // The history is anchored in the release token: deleting, cutting or
    // restoring an older copy of the log stops the next signature, and a
    // downgrade still needs the rollback quorum afterwards.
    let sign_with_all =
        |image: &Path, req: &Path, out: &Path| s.sign_unlocked(req, image, out, &all);
    let (log, head) = (s.log(), s.path("audit.jsonl.head"));
    let older = (std::fs::read(&log).unwrap(), std::fs::read(&head).unwrap());
    let image3 = s.image("app3", "1.4.0", 5, 3000, 3);
    let req3 = s.request(&image3, "sensor", &[]);
    s.approve_ok(&req3, &["bob", "carol"]);
    let out3 = s.path("app3.signed.bin");
    // While it signs, neither the PIN nor a share is in the process's
    // arguments or environment (read from /proc as it runs): the PINs and
    // shares of the quorum as it is now, after the rotation.
    let now_shares: Vec<blahaj::Share> = [("alice", "1111"), ("bob", "2222"), ("carol", "3333")]
        .iter()
        .map(|(n, p)| blahaj::Share::try_from(&stored_share(&s, n, p)[5..]).unwrap())
        .collect();
    let now_secret = blahaj::Sharks(3).recover(&now_shares).unwrap();
    let login = s
        .token
        .command("pkcs11-tool")
        .args(["--module", &s.token.module, "--token-label", "release"])
        .args([
            "--login",
            "--pin",
            &hex::encode(&now_secret[..32]),
            "--list-objects",
        ])
        .output()
        .unwrap();
    assert!(login.status.success(), "the rotated shares rebuild the PIN");
    let mut needles = vec![
        hex::encode(&now_secret[..32]).into_bytes(),
        hex::encode(&now_secret[32..]).into_bytes(),
    ];
    for share in &now_shares {
        needles.push(Vec::<u8>::from(share));
        needles.push(hex::encode(Vec::<u8>::from(share)).into_bytes());
    }
    let mut c = s.keytool();
    c.args(["release", "sign", "-k", RELEASE_KEY, "--image"])
        .arg(&image3)
        .arg("-o")
        .arg(&out3)
        .arg(&req3)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for u in &all {
        c.args(["--unlock", u]);
    }
    let child = c.spawn().unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
    let mut seen = Vec::new();
    let mut snapshots = 0;
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        for f in ["cmdline", "environ"] {
            if let Ok(bytes) = std::fs::read(proc_dir.join(f)) {
                seen.extend(bytes);
                snapshots += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(snapshots > 0, "the process was never seen running");
    for n in &needles {
        assert!(
            !seen.windows(n.len()).any(|w| w == &n[..]),
            "a PIN or a share is in the signing process's arguments or environment"
        );
    }
    let current = (std::fs::read(&log).unwrap(), std::fs::read(&head).unwrap());
    let downgrade = s.image("old", "1.0.0", 1, 3000, 4);
    let req_old = s.request(&downgrade, "sensor", &[]);
    s.approve_ok(&req_old, &["bob", "carol"]);
    let out_old = s.path("old.signed.bin");
    for (what, bytes) in [
        ("an older copy", Some(older.clone())),
        ("a deleted log", None),
        (
            "a cut log",
            Some((current.0[..current.0.len() / 2].to_vec(), older.1.clone())),
        ),
    ] {
        match &bytes {
            Some((l, h)) => {
                std::fs::write(&log, l).unwrap();
                std::fs::write(&head, h).unwrap();
            }
            None => {
                std::fs::remove_file(&log).unwrap();
                std::fs::remove_file(&head).unwrap();
            }
        }
        let o = sign_with_all(&downgrade, &req_old, &out_old);
        assert!(!o.status.success(), "{what}: signed");
        let e = stderr(&o);
        assert!(
            e.contains("does not hold the history") || e.contains("audit log"),
            "{what}: {e}"
        );
        assert!(!out_old.exists(), "{what}");
    }
    std::fs::write(&log, &current.0).unwrap();
    std::fs::write(&head, &current.1).unwrap();
    let o = sign_with_all(&downgrade, &req_old, &out_old);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("rollback"),
        "a downgrade still needs the rollback quorum: {}",
        stderr(&o)
    );
}

#[test]
fn a_station_key_other_than_the_pinned_one_is_refused() {
    let s = Station::new(false, SENSOR);
    // Someone puts another key where the policy's station key URI points.
    ok(s.keytool()
        .env_remove("KEYTOOL_POLICY")
        .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
        .arg(s.path("other-station.pem")));
    std::fs::rename(s.path("other-station.pem"), s.path("station.pem")).unwrap();
    let image = s.image("app", "1.0.0", 1, 1000, 1);
    let o = s.try_request(&image, &s.path("app.req.json"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not the pinned"), "{}", stderr(&o));
}

#[test]
fn an_image_carrying_unsigned_bytes_is_refused() {
    let s = Station::new(false, SENSOR);
    let image = s.image("app", "1.0.0", 1, 1000, 1);
    let mut bytes = std::fs::read(&image).unwrap();
    bytes.extend_from_slice(b"\x00\x01smuggled");
    std::fs::write(&image, &bytes).unwrap();
    let o = s.try_request(&image, &s.path("app.req.json"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("after"), "{}", stderr(&o));
}

#[test]
fn twenty_concurrent_sessions_leave_an_intact_log() {
    let s = Station::new(false, SENSOR);
    let images: Vec<PathBuf> = (0..20u8)
        .map(|i| s.image(&format!("c{i}"), "1.0.0", 1, 1000, i))
        .collect();
    let children: Vec<_> = images
        .iter()
        .map(|image| {
            s.keytool()
                .args(["release", "request", "--product", "sensor", "-o"])
                .arg(image.with_extension("req.json"))
                .arg(image)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    s.assert_log_verifies();
    let requests = s
        .events()
        .into_iter()
        .filter(|e| e.action == "release.request")
        .count();
    assert_eq!(requests, 20);
}

#[test]
fn an_approval_binds_the_request_the_officer_was_shown() {
    let s = Station::new(false, SENSOR);
    let image = s.image("app", "1.0.0", 1, 1000, 1);
    let req = s.request(&image, "sensor", &[]);
    // Without a terminal and without --yes nothing is approved; the request
    // is shown either way.
    let o = s
        .keytool()
        .args(["release", "approve", "--officer-key", &s.file_key("bob")])
        .arg(&req)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("version   1.0.0") && e.contains("--yes"), "{e}");
    // A policy cap on validity: a longer request is refused at request time
    // and by the evaluation.
    let capped = std::fs::read_to_string(s.policy())
        .unwrap()
        .replace("audit_log =", "max_request_validity = \"1h\"\naudit_log =");
    std::fs::write(s.policy(), capped).unwrap();
    let o = s
        .keytool()
        .args([
            "release",
            "request",
            "--product",
            "sensor",
            "--valid-for",
            "2h",
            "-o",
        ])
        .arg(s.path("long.req.json"))
        .arg(&image)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at most 3600 s"), "{}", stderr(&o));
    s.approve_ok(&req, &["bob", "carol"]);
    let out = s.path("app.signed.bin");
    let o = s.sign(&req, &image, RELEASE_KEY, &out);
    assert!(!o.status.success(), "a 72 h request under a 1 h cap");
    assert!(
        stderr(&o).contains("the policy allows at most 3600 s"),
        "{}",
        stderr(&o)
    );
}

/// A production station with its keys where production keeps them: the
/// station key in its own token, each officer's approval key in that
/// officer's own token, the release key in a token the ceremony makes
/// quorum-unlocked (2 of 3), which then anchors the history.
fn production_quorum_station() -> (Station, Vec<String>) {
    let token = SoftHsmToken::new("release", "1234").unwrap();
    let dir = token.dir.path().join("station");
    std::fs::create_dir(&dir).unwrap();
    let station_key = "pkcs11:token=station-token;object=station".to_owned();
    let mut s = Station {
        token,
        dir,
        station_key,
        officers: Default::default(),
    };
    // Production keys are made in their token by keytool (sign-only, never
    // extractable); the station key in its own token, which the test
    // environment's PIN opens.
    for key in [RELEASE_KEY, "pkcs11:token=release;object=authority"] {
        ok(s.keytool().env_remove("KEYTOOL_POLICY").args([
            "key",
            "generate",
            "-t",
            "ecdsa-p256",
            "-k",
            key,
        ]));
    }
    ok(s.token
        .command("softhsm2-util")
        .args(["--init-token", "--free", "--label", "station-token"])
        .args(["--pin", "1234", "--so-pin", "0000"]));
    ok(s.keytool().env_remove("KEYTOOL_POLICY").args([
        "key",
        "generate",
        "-t",
        "ecdsa-p256",
        "-k",
        &s.station_key,
    ]));
    let mut unlock = vec![];
    for (name, pin) in [("alice", "1111"), ("bob", "2222"), ("carol", "3333")] {
        unlock.push(officer_token(&s, name, pin));
        let key = format!(
            "pkcs11:token={name}-token;object=approval?pin-source={}",
            s.path(&format!("{name}.pin")).display()
        );
        ok(s.keytool().env_remove("KEYTOOL_POLICY").args([
            "key",
            "generate",
            "-t",
            "ecdsa-p256",
            "-k",
            &key,
        ]));
        let pem = ok(s.keytool().args(["key", "getpub", "-e", "pem", "-k", &key]));
        std::fs::write(s.path(&format!("{name}.pub.pem")), pem).unwrap();
        s.officers.insert(name.to_owned(), key);
    }
    let release_fp = s.fingerprint(RELEASE_KEY);
    let authority_fp = s.fingerprint("pkcs11:token=release;object=authority");
    let station_fp = s.fingerprint(&s.station_key);
    let policy = format!(
        r#"name = "prod-fleet"
production = true
require_quorum_keys = true
audit_log = "audit.jsonl"
station_key = "{}"
station_key_fingerprint = "{station_fp}"

[keys.sensor-release]
uri = "{RELEASE_KEY}"
role = "release"
fingerprint = "{release_fp}"

[keys.authority]
uri = "pkcs11:token=release;object=authority"
role = "authority"
fingerprint = "{authority_fp}"

[officers]
alice = {{ public_key = "alice.pub.pem" }}
bob = {{ public_key = "bob.pub.pem" }}
carol = {{ public_key = "carol.pub.pem" }}

[products.sensor]
slot_size = 0x20000
release_keys = ["sensor-release"]
officers = ["alice", "bob", "carol"]
quorum = 2
rollback_quorum = 3
"#,
        s.station_key
    );
    std::fs::write(s.policy(), policy).unwrap();
    ok(s.keytool().arg("policy").arg("check").arg(s.policy()));
    ok(s.keytool().args(["audit", "init"]));
    let mut init = s.keytool();
    init.args(["ceremony", "init", "--token", "release", "--threshold", "2"])
        .env("PKCS11_SO_PIN", "5678");
    for o in &unlock {
        init.args(["--officer", o]);
    }
    ok(&mut init);
    (s, unlock)
}

#[test]
fn under_production_a_reset_history_stops_release_signing() {
    let (s, unlock) = production_quorum_station();
    let two = [unlock[0].as_str(), unlock[1].as_str()];
    let (image, req, out) = s.approved("v1", "1.1.0", 2, 3000, 1, "sensor", &["alice", "bob"]);
    // The verdict needs no shares (the public key is read without logging
    // in); signing does: without them the release token does not open.
    let verdict = ok(s
        .keytool()
        .args(["release", "check", "--json", "-k", RELEASE_KEY, "--image"])
        .arg(&image)
        .arg(&req));
    let verdict: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    let rules = verdict["rules"].as_array().unwrap();
    assert!(rules.iter().all(|r| r["passed"] == true), "{verdict}");
    assert_eq!(verdict["approvers"], serde_json::json!(["alice", "bob"]));
    let o = s.sign(&req, &image, RELEASE_KEY, &out);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("quorum-unlocked"), "{}", stderr(&o));
    let o = s.sign_unlocked(&req, &image, &out, &two);
    assert!(o.status.success(), "{}", stderr(&o));
    imgtool_verifies(&s, &out);
    s.assert_log_verifies();

    let (log, head) = (s.log(), s.path("audit.jsonl.head"));
    let older = (std::fs::read(&log).unwrap(), std::fs::read(&head).unwrap());
    let (image, req, out) = s.approved("v2", "1.2.0", 3, 3000, 2, "sensor", &["bob", "carol"]);
    let o = s.sign_unlocked(&req, &image, &out, &two);
    assert!(o.status.success(), "{}", stderr(&o));
    let current = (std::fs::read(&log).unwrap(), std::fs::read(&head).unwrap());

    // A downgrade, approved by two (the rollback quorum is three), then each
    // way an operator alone could reset the history.
    let (old, req_old, out_old) =
        s.approved("old", "1.0.0", 3, 3000, 3, "sensor", &["alice", "bob"]);
    let put = |bytes: Option<&(Vec<u8>, Vec<u8>)>| match bytes {
        Some((l, h)) => {
            std::fs::write(&log, l).unwrap();
            std::fs::write(&head, h).unwrap();
        }
        None => {
            let _ = std::fs::remove_file(&log);
            let _ = std::fs::remove_file(&head);
        }
    };
    // The current log without its last entry, the head as it was before.
    let last = current.0[..current.0.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap();
    let cut = (current.0[..=last].to_vec(), older.1.clone());
    for (what, bytes, fresh) in [
        ("an older copy", Some(&older), false),
        ("a cut log", Some(&cut), false),
        ("a deleted log", None, false),
        ("a new log started by audit init", None, true),
    ] {
        put(bytes);
        if fresh {
            ok(s.keytool().args(["audit", "init"]));
        }
        let o = s.sign_unlocked(&req_old, &old, &out_old, &two);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("does not hold the history the token anchored")
                || (bytes.is_none() && !fresh && e.contains("audit log")),
            "{what}: {e}"
        );
        assert!(!out_old.exists(), "{what}: signed");
    }
    // With the history back, the downgrade still needs the rollback quorum.
    put(Some(&current));
    let o = s.sign_unlocked(&req_old, &old, &out_old, &two);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("rollback"), "{}", stderr(&o));
    assert!(!out_old.exists());
    s.approve_ok(&req_old, &["carol"]);
    let o = s.sign_unlocked(&req_old, &old, &out_old, &two);
    assert!(o.status.success(), "{}", stderr(&o));
    imgtool_verifies(&s, &out_old);
    s.assert_log_verifies();
}

/// Key rotation under the policy (docs/key-rotation.md): generation 1 (the
/// HSM key) releases alone; an image signed by generations 1 and 2 (an
/// Ed25519 file key) needs the normal quorum and verifies with either key;
/// the first image signed by generation 2 alone needs the rollback quorum;
/// after it generation 1 is retired by the log, and a `retired_after` date
/// in the past retires a key outright.
#[test]
fn key_generations_rotate_under_the_policy() {
    let products = |retired: &str| {
        format!(
            r#"[keys.gen2]
uri = "file:gen2.pem"
role = "release"
fingerprint = "FP2"

[products.sensor]
slot_size = 0x20000
release_keys = [
  {{ key = "sensor-release", generation = 1{retired} }},
  {{ key = "gen2", generation = 2 }},
]
officers = ["alice", "bob", "carol"]
quorum = 2
rollback_quorum = 3
"#
        )
    };
    let s = Station::new(false, &products(""));
    let gen2 = s.path("gen2.pem");
    ok(s.keytool()
        .args(["key", "generate", "-t", "ed25519", "-k"])
        .arg(&gen2));
    let gen2_uri = format!("file:{}", gen2.display());
    let fp2 = s.fingerprint(&gen2_uri);
    let text = std::fs::read_to_string(s.policy())
        .unwrap()
        .replace("FP2", &fp2);
    std::fs::write(s.policy(), &text).unwrap();
    // The Ed25519 release key resolves to its fingerprint like any other.
    ok(s.keytool()
        .args(["policy", "check", "--resolve-keys"])
        .arg(s.policy()));

    // Generation 1 alone.
    let v1 = s.image("v1", "1.0.0", 1, 2000, 1);
    let req = s.request(&v1, "sensor", &["--release-key", "sensor-release"]);
    s.approve_ok(&req, &["alice", "bob"]);
    let signed = s.path("v1.signed.bin");
    let o = s.sign(&req, &v1, RELEASE_KEY, &signed);
    assert!(o.status.success(), "{}", stderr(&o));
    imgtool_verifies(&s, &signed);

    // Both generations: the normal quorum, two signatures.
    let v2 = s.image("v2", "1.1.0", 2, 2000, 2);
    let req = s.request(
        &v2,
        "sensor",
        &["--release-key", "sensor-release", "--release-key", "gen2"],
    );
    s.approve_ok(&req, &["alice", "bob"]);
    let out = s.path("v2.signed.bin");
    let o = s
        .keytool()
        .args([
            "release",
            "sign",
            "-k",
            RELEASE_KEY,
            "-k",
            &gen2_uri,
            "--image",
        ])
        .arg(&v2)
        .arg("-o")
        .arg(&out)
        .arg(&req)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    imgtool_verifies(&s, &out);
    let said = ok(imgtool().args(["verify", "-k"]).arg(&gen2).arg(&out));
    assert!(said.contains("correctly validated"), "{said}");
    let last = s.events().pop().unwrap();
    assert!(last.subjects.contains(&"key:gen2".to_owned()), "{last:?}");
    assert!(
        last.subjects.contains(&"key:sensor-release".to_owned()),
        "{last:?}"
    );

    // Generation 2 alone for the first time: a key rotation.
    let v3 = s.image("v3", "1.2.0", 3, 2000, 3);
    let req = s.request(&v3, "sensor", &["--release-key", "gen2"]);
    s.approve_ok(&req, &["alice", "bob"]);
    let out = s.path("v3.signed.bin");
    s.assert_refused(
        "release.sign",
        "2 of 3 needed for a key rotation",
        Some(&out),
        || s.sign(&req, &v3, &gen2_uri, &out),
    );
    s.approve_ok(&req, &["carol"]);
    let o = s.sign(&req, &v3, &gen2_uri, &out);
    assert!(o.status.success(), "{}", stderr(&o));

    // Generation 1 is retired now: the log shows generation 2 alone went out.
    let v4 = s.image("v4", "1.3.0", 4, 2000, 4);
    let req = s.request(&v4, "sensor", &["--release-key", "sensor-release"]);
    s.approve_ok(&req, &["alice", "bob", "carol"]);
    let out = s.path("v4.signed.bin");
    s.assert_refused("release.sign", "generation 1, retired", Some(&out), || {
        s.sign(&req, &v4, RELEASE_KEY, &out)
    });
    // Generation 2 goes on with the normal quorum.
    let v5 = s.image("v5", "1.4.0", 5, 2000, 5);
    let req = s.request(&v5, "sensor", &["--release-key", "gen2"]);
    s.approve_ok(&req, &["alice", "bob"]);
    let o = s.sign(&req, &v5, &gen2_uri, &s.path("v5.signed.bin"));
    assert!(o.status.success(), "{}", stderr(&o));
    s.assert_log_verifies();

    // A retirement date in the past retires a key before any release.
    let s = Station::new(false, &products(", retired_after = 2020-01-01"));
    ok(s.keytool()
        .args(["key", "generate", "-t", "ed25519", "-k"])
        .arg(s.path("gen2.pem")));
    let fp2 = s.fingerprint(&format!("file:{}", s.path("gen2.pem").display()));
    let text = std::fs::read_to_string(s.policy())
        .unwrap()
        .replace("FP2", &fp2);
    std::fs::write(s.policy(), &text).unwrap();
    let v1 = s.image("v1", "1.0.0", 1, 2000, 1);
    let req = s.request(&v1, "sensor", &["--release-key", "sensor-release"]);
    s.approve_ok(&req, &["alice", "bob", "carol"]);
    let out = s.path("v1.signed.bin");
    s.assert_refused("release.sign", "retired", Some(&out), || {
        s.sign(&req, &v1, RELEASE_KEY, &out)
    });
}
