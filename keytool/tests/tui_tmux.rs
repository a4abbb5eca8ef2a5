//! `keytool tui` end to end, driven by key presses through tmux: a release
//! requested, approved by two officers (each typing their token's PIN) and
//! signed with a SoftHSM2 key under a production policy; the signed image
//! passes `imgtool verify` and the audit log holds the entry; the same with
//! the release and authority keys in a quorum-unlocked vault, unlocked on
//! screen by two officers' own tokens. And the idle lock.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{imgtool, ok};
use policies::audit::Entry;
use sha2::{Digest, Sha256};
use signer::testing::SoftHsmToken;

const PIN: &str = "80417";

/// A tmux server of our own, killed when dropped.
struct Tmux {
    socket: String,
    /// Where the TUI's stderr goes, for failure messages.
    errors: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Self {
        let socket = format!(
            "keytool-test-{}-{}",
            std::process::id(),
            dir.display().to_string().len()
        );
        let t = Self {
            socket,
            errors: dir.join("tui.err"),
        };
        let out = t
            .tmux()
            .args([
                "new-session",
                "-d",
                "-s",
                "station",
                "-x",
                "100",
                "-y",
                "30",
            ])
            .arg(command)
            .output()
            .unwrap_or_else(|e| panic!("tmux: {e} (scripts/setup.sh installs it)"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self
                .tmux()
                .args(["send-keys", "-t", "station", k])
                .output()
                .unwrap();
            assert!(out.status.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "station"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the screen shows `text`; the screen as it was then.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared; the screen:\n{s}\nstderr: {}",
                std::fs::read_to_string(&self.errors).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn running(&self) -> bool {
        self.tmux()
            .args(["has-session", "-t", "station"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

struct Station {
    token: SoftHsmToken,
    dir: PathBuf,
    /// The token holding the release and authority keys.
    vault: &'static str,
}

/// The officers' own tokens (label, PIN) when the release and authority
/// keys are in a quorum-unlocked token of their own.
const CARDS: [(&str, &str, &str); 3] = [
    ("alice", "alice-card", "1111"),
    ("bob", "bob-card", "2222"),
    ("carol", "carol-card", "3333"),
];

fn key_fp(token: &SoftHsmToken, uri: &str) -> String {
    let out = token
        .command(env!("CARGO_BIN_EXE_keytool"))
        .args(["key", "getpub", "-e", "raw", "-k", uri])
        .output()
        .unwrap();
    assert!(out.status.success());
    format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout)))
}

impl Station {
    /// A production station whose keys are all in one token, `station`.
    fn new(idle_lock: &str) -> Self {
        Self::build(idle_lock, false)
    }

    /// The release and authority keys in a token of their own, `vault`,
    /// made quorum-unlocked (2 of the 3 officers' cards) by a ceremony.
    fn with_quorum_vault(idle_lock: &str) -> Self {
        Self::build(idle_lock, true)
    }

    fn build(idle_lock: &str, quorum: bool) -> Self {
        let token = SoftHsmToken::new("station", PIN).unwrap();
        let vault = if quorum { "vault" } else { "station" };
        if quorum {
            ok(token
                .command("softhsm2-util")
                .args(["--init-token", "--free", "--label", vault])
                .args(["--pin", PIN, "--so-pin", "5678"]));
            for (_, card, pin) in CARDS {
                ok(token
                    .command("softhsm2-util")
                    .args(["--init-token", "--free", "--label", card])
                    .args(["--pin", pin, "--so-pin", "0000"]));
            }
        }
        for (label, id) in [
            ("release", "01"),
            ("alice", "02"),
            ("bob", "03"),
            ("audit", "04"),
            ("carol", "05"),
            ("authority", "06"),
        ] {
            // A production policy checks how keys are held on use: made by
            // keytool in the token (sign-only, never extractable).
            let holder = if matches!(label, "release" | "authority") {
                vault
            } else {
                "station"
            };
            ok(token.command(env!("CARGO_BIN_EXE_keytool")).args([
                "key",
                "generate",
                "-t",
                "ecdsa-p256",
                "-k",
                &format!("pkcs11:token={holder};object={label};id=%{id}"),
            ]));
        }
        let dir = token.dir.path().join("station");
        std::fs::create_dir_all(dir.join("media")).unwrap();
        for o in ["alice", "bob", "carol"] {
            let pem = ok(token.command(env!("CARGO_BIN_EXE_keytool")).args([
                "key",
                "getpub",
                "-e",
                "pem",
                "-k",
                &format!("pkcs11:token=station;object={o}"),
            ]));
            std::fs::write(dir.join(format!("{o}.pub.pem")), pem).unwrap();
        }
        let release_fp = key_fp(&token, &format!("pkcs11:token={vault};object=release"));
        let authority_fp = key_fp(&token, &format!("pkcs11:token={vault};object=authority"));
        let station_fp = key_fp(&token, "pkcs11:token=station;object=audit");
        std::fs::write(
            dir.join("policy.toml"),
            format!(
                r#"name = "tui-fleet"
production = true
require_quorum_keys = {quorum}
station_key = "pkcs11:token=station;object=audit"
station_key_fingerprint = "{station_fp}"

[keys.sensor-release]
uri = "pkcs11:token={vault};object=release"
role = "release"
fingerprint = "{release_fp}"

[keys.factory-authority]
uri = "pkcs11:token={vault};object=authority"
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
required_tlvs = ["SEC_CNT"]
"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("station.toml"),
            format!(
                "policy = \"policy.toml\"\nimages = \"media\"\nidle_lock = \"{idle_lock}\"\n\
                 [officers]\nalice = \"pkcs11:token=station;object=alice\"\n\
                 bob = \"pkcs11:token=station;object=bob\"\n"
            ),
        )
        .unwrap();
        // A production station's history is started once, on purpose.
        ok(token
            .command(env!("CARGO_BIN_EXE_keytool"))
            .env("KEYTOOL_POLICY", dir.join("policy.toml"))
            .args(["audit", "init"]));
        if quorum {
            // The vault's PINs become shares in the officers' cards; the
            // ceremony anchors the history there.
            let mut init = token.command(env!("CARGO_BIN_EXE_keytool"));
            init.env("KEYTOOL_POLICY", dir.join("policy.toml"))
                .env("PKCS11_SO_PIN", "5678")
                .args(["ceremony", "init", "--token", vault, "--threshold", "2"]);
            for (name, card, pin) in CARDS {
                let file = dir.join(format!("{name}.card-pin"));
                std::fs::write(&file, pin).unwrap();
                init.args([
                    "--officer",
                    &format!("{name}=pkcs11:token={card}?pin-source={}", file.display()),
                ]);
            }
            ok(&mut init);
            for (name, ..) in CARDS {
                std::fs::remove_file(dir.join(format!("{name}.card-pin"))).unwrap();
            }
        }
        let raw = dir.join("app.raw");
        std::fs::write(
            &raw,
            (0..6000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>(),
        )
        .unwrap();
        ok(Command::new(env!("CARGO_BIN_EXE_keytool"))
            .args([
                "image",
                "sign",
                "-v",
                "2.1.0",
                "-H",
                "0x200",
                "--pad-header",
                "-S",
                "0x20000",
                "-s",
                "5",
            ])
            .arg(&raw)
            .arg(dir.join("media/app.unsigned.bin")));
        // A provisioning request: one device, its key given as PEM.
        let device = std::fs::read_to_string(dir.join("bob.pub.pem")).unwrap();
        let line = serde_json::json!({"hw_id": "1234567800000003", "serial": 42,
            "product": "sensor", "device_pubkey": device});
        std::fs::write(dir.join("line-1.jsonl"), format!("{line}\n")).unwrap();
        Self { token, dir, vault }
    }

    /// The public half of the key `object` in the vault, as a PEM file.
    fn public_pem(&self, object: &str) -> PathBuf {
        let pem = self.dir.join(format!("{object}.pub.pem"));
        std::fs::write(
            &pem,
            ok(self.token.command(env!("CARGO_BIN_EXE_keytool")).args([
                "key",
                "getpub",
                "-e",
                "pem",
                "-k",
                &format!("pkcs11:token={};object={object}", self.vault),
            ])),
        )
        .unwrap();
        pem
    }

    /// `imgtool verify` accepts the signed image with the release key.
    fn imgtool_verifies(&self, signed: &Path) {
        let out = imgtool()
            .arg("verify")
            .arg("-k")
            .arg(self.public_pem("release"))
            .arg(signed)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The TUI under tmux. The release and station keys log in with
    /// `PKCS11_PIN`; the officers type theirs.
    fn tui(&self) -> Tmux {
        let env: Vec<String> = self
            .token
            .env()
            .iter()
            .map(|(k, v)| format!("{k}='{v}'"))
            .collect();
        let cmd = format!(
            "cd '{}' && env {} TERM=xterm-256color '{}' tui --config station.toml 2>tui.err",
            self.dir.display(),
            env.join(" "),
            env!("CARGO_BIN_EXE_keytool")
        );
        Tmux::start(&self.dir, &cmd)
    }
}

#[test]
fn a_release_signed_through_key_presses_verifies_and_is_audited() {
    let s = Station::new("1h");
    let t = s.tui();
    t.wait_for("no request yet");
    t.keys(&["n"]);
    t.wait_for("app.unsigned.req.json");
    for (officer, count, approvals) in [("alice", 1, "alice"), ("bob", 2, "alice, bob")] {
        t.keys(&["a"]);
        t.wait_for("Which officer approves?");
        t.keys(&["Enter"]);
        t.wait_for(&format!("{officer}: enter the PIN of your own token."));
        for c in PIN.chars() {
            t.keys(&[&c.to_string()]);
        }
        let screen = t.wait_for("PIN: *****");
        assert!(
            screen
                .lines()
                .filter(|l| l.contains("PIN:"))
                .all(|l| !l.contains(PIN)),
            "the PIN is on screen:\n{screen}"
        );
        t.keys(&["Enter"]);
        t.wait_for(&format!("{officer} approved; {count} approval(s)"));
        t.wait_for(&format!("Approvals {approvals}"));
    }
    t.wait_for("PASS: may be signed");
    t.keys(&["s"]);
    t.wait_for("[y] yes");
    t.keys(&["y"]);
    let screen = t.wait_for("SIGNED");
    assert!(screen.contains("release.sign by"), "{screen}");
    std::fs::write(s.dir.join("release-screen.txt"), &screen).unwrap();

    // The signed image, next to the input, verifies with imgtool.
    s.imgtool_verifies(&s.dir.join("media/app.signed.bin"));

    // Keys: the policy's and the token's; the selected one exported as PEM.
    t.keys(&["1"]);
    t.wait_for("sensor-release");
    t.wait_for("factory-authority");
    t.keys(&["e"]);
    t.wait_for("exported factory-authority");
    let exported = s.dir.join("factory-authority.pub.pem");
    // A new key in the token: its URI typed, the confirmation names token and label.
    t.keys(&["g"]);
    t.wait_for("Key URI");
    for c in "fw-2027".chars() {
        t.keys(&[&c.to_string()]);
    }
    t.keys(&["Enter"]);
    t.wait_for("labelled \"fw-2027\" in token \"station\"");
    t.keys(&["y"]);
    t.wait_for("generated pkcs11:token=station;object=fw-2027");
    t.wait_for("fw-2027");
    assert!(std::fs::read_to_string(&exported)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    // Provisioning: the batch signed with the authority key, each record verifies.
    t.keys(&["3"]);
    t.wait_for("line-1.jsonl");
    t.keys(&["Enter"]);
    t.wait_for("[y] yes");
    t.keys(&["y"]);
    t.wait_for("1 records signed");
    let record = s.dir.join("line-1.records/1234567800000003.rec");
    ok(Command::new(env!("CARGO_BIN_EXE_keytool"))
        .args(["record", "verify", "--hw-id", "1234567800000003", "-a"])
        .arg(&exported)
        .arg(&record));

    // The audit log: verified on the Audit screen, and by the command line.
    t.keys(&["4", "v"]);
    t.wait_for("Chain: INTACT");
    t.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.running() {
        assert!(Instant::now() < deadline, "keytool tui did not quit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = s.dir.join("audit.jsonl");
    let entries: Vec<Entry> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Entry| e.action != "checkpoint")
        .collect();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        actions[0].0, "audit.init",
        "the history was started on purpose"
    );
    assert_eq!(
        &actions[1..4],
        [
            ("release.request", actions[1].1),
            ("release.approve", "alice"),
            ("release.approve", "bob")
        ]
    );
    let signed = entries.iter().find(|e| e.action == "release.sign").unwrap();
    assert_eq!(signed.outcome, "ok");
    assert!(
        signed
            .subjects
            .contains(&"approved-by:alice,bob".to_owned()),
        "{signed:?}"
    );
    let last = entries.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("record.sign", "ok")
    );
    assert!(last.subjects.contains(&"serial:42".to_owned()), "{last:?}");
    ok(s.token
        .command(env!("CARGO_BIN_EXE_keytool"))
        .args([
            "audit",
            "verify",
            "-k",
            "pkcs11:token=station;object=audit",
            "--log",
        ])
        .arg(&log));
}

/// Unlock a quorum token in the open unlock dialog: each officer picked
/// in turn (each the first one left), typing their card's PIN.
fn unlock(t: &Tmux, key: &str, officers: &[(&str, &str)]) {
    t.wait_for(&format!(
        "The {key}'s token needs 2 of 3 officers (0 so far)"
    ));
    for (i, (officer, pin)) in officers.iter().enumerate() {
        t.wait_for(&format!("({i} so far)"));
        t.keys(&["Enter"]);
        t.wait_for(&format!(
            "{officer}: enter the PIN of your own token to release"
        ));
        for c in pin.chars() {
            t.keys(&[&c.to_string()]);
        }
        let screen = t.wait_for("PIN: ****");
        assert!(!screen.contains(pin), "a card PIN is on screen:\n{screen}");
        t.keys(&["Enter"]);
    }
}

#[test]
fn a_quorum_vault_is_unlocked_by_two_officers_at_the_station() {
    let s = Station::with_quorum_vault("1h");
    let t = s.tui();
    t.wait_for("no request yet");
    t.keys(&["n"]);
    t.wait_for("app.unsigned.req.json");
    for officer in ["alice", "bob"] {
        t.keys(&["a"]);
        t.wait_for("Which officer approves?");
        t.keys(&["Enter"]);
        t.wait_for(&format!("{officer}: enter the PIN of your own token."));
        for c in PIN.chars() {
            t.keys(&[&c.to_string()]);
        }
        t.keys(&["Enter"]);
        t.wait_for(&format!("{officer} approved"));
        t.wait_for(&format!(
            "Approvals {}",
            if officer == "alice" {
                "alice"
            } else {
                "alice, bob"
            }
        ));
    }
    t.wait_for("PASS: may be signed");
    // One officer's share is not enough: Esc after the first leaves the
    // vault shut and nothing signed.
    t.keys(&["s"]);
    t.wait_for("The release key's token needs 2 of 3 officers (0 so far)");
    t.keys(&["Enter"]);
    for c in "1111".chars() {
        t.keys(&[&c.to_string()]);
    }
    t.keys(&["Enter"]);
    t.wait_for("(1 so far)");
    t.keys(&["Escape"]);
    t.wait_for("cancelled");
    assert!(!s.dir.join("media/app.signed.bin").exists());
    // Alice and carol unlock it (bob is passed over with Down).
    t.keys(&["s"]);
    t.wait_for("The release key's token needs 2 of 3 officers (0 so far)");
    t.keys(&["Enter"]);
    for c in "1111".chars() {
        t.keys(&[&c.to_string()]);
    }
    t.keys(&["Enter"]);
    t.wait_for("(1 so far)");
    t.keys(&["Down", "Enter"]);
    t.wait_for("carol: enter the PIN of your own token to release");
    for c in "3333".chars() {
        t.keys(&[&c.to_string()]);
    }
    t.keys(&["Enter"]);
    let screen = t.wait_for("SIGNED");
    assert!(screen.contains("release.sign by"), "{screen}");
    s.imgtool_verifies(&s.dir.join("media/app.signed.bin"));

    // The record batch: the authority key is in the vault too.
    t.keys(&["3"]);
    t.wait_for("line-1.jsonl");
    t.keys(&["Enter"]);
    unlock(&t, "authority key", &[("alice", "1111"), ("bob", "2222")]);
    t.wait_for("1 records signed");
    let authority = s.public_pem("authority");
    ok(Command::new(env!("CARGO_BIN_EXE_keytool"))
        .args(["record", "verify", "--hw-id", "1234567800000003", "-a"])
        .arg(&authority)
        .arg(s.dir.join("line-1.records/1234567800000003.rec")));
    t.keys(&["q"]);

    // The vault's PIN is nowhere the station writes, nor the station's PIN
    // alone enough to open the vault.
    let direct = s
        .token
        .command(env!("CARGO_BIN_EXE_keytool"))
        .args(["key", "getpub", "-k", "pkcs11:token=vault;object=release"])
        .output()
        .unwrap();
    assert!(direct.status.success(), "public keys stay readable");
    let sign = s
        .token
        .command("pkcs11-tool")
        .args(["--module", &s.token.module, "--token-label", "vault"])
        .args(["--login", "--pin", PIN, "--list-objects"])
        .output()
        .unwrap();
    assert!(!sign.status.success(), "the old vault PIN still logs in");
    let log = std::fs::read_to_string(s.dir.join("audit.jsonl")).unwrap();
    let actions: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<Entry>(l).unwrap())
        .filter(|e| e.action != "checkpoint")
        .map(|e| format!("{} {}", e.action, e.outcome))
        .collect();
    assert!(
        actions.contains(&"release.sign ok".to_owned())
            && actions.contains(&"record.sign ok".to_owned()),
        "{actions:?}"
    );
}

#[test]
fn an_idle_station_locks_and_shows_nothing() {
    let s = Station::new("2s");
    let t = s.tui();
    t.wait_for("app.unsigned.bin");
    let locked = t.wait_for("STATION LOCKED");
    assert!(!locked.contains("app.unsigned.bin"), "{locked}");
    t.keys(&["Enter"]);
    t.wait_for("app.unsigned.bin");
    t.keys(&["q"]);
}
