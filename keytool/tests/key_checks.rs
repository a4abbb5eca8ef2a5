//! Keys are checked on use, not only at generation (SoftHSM2): under a
//! production policy a provisioning-authority key signs only if it was
//! generated on the token, never extractable and sign-only; an imported key
//! (`pkcs11-tool --write-object`) and a key that also allows derivation are
//! refused with the reason. Under `require_quorum_keys` a key in a token that
//! one PIN opens is refused until the token goes through the ceremony.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ok, stderr};
use sha2::{Digest, Sha256};
use signer::testing::SoftHsmToken;

struct Station {
    token: SoftHsmToken,
    dir: PathBuf,
}

impl Station {
    fn keytool(&self) -> Command {
        let mut c = self.token.command(env!("CARGO_BIN_EXE_keytool"));
        c.env("KEYTOOL_POLICY", self.dir.join("policy.toml"));
        c
    }

    fn fingerprint(&self, key: &str) -> String {
        let raw = self
            .token
            .command(env!("CARGO_BIN_EXE_keytool"))
            .args(["key", "getpub", "-e", "raw", "-k", key])
            .output()
            .unwrap();
        assert!(raw.status.success(), "{}", stderr(&raw));
        format!("sha256:{}", hex::encode(Sha256::digest(&raw.stdout)))
    }

    fn pkcs11_tool(&self) -> Command {
        let mut c = self.token.command("pkcs11-tool");
        c.args(["--module", &self.token.module, "--token-label", "station"])
            .args(["--login", "--pin", "1234"]);
        c
    }

    fn policy(&self, keys: &[(&str, &str)], require_quorum: bool) {
        let station = "pkcs11:token=station;object=audit";
        let release = "pkcs11:token=station;object=release";
        let mut text = format!(
            "name = \"checks\"\nproduction = true\nrequire_quorum_keys = {require_quorum}\n\
             station_key = \"{station}\"\nstation_key_fingerprint = \"{}\"\n\n\
             [keys.release]\nuri = \"{release}\"\n\
             role = \"release\"\nfingerprint = \"{}\"\n",
            self.fingerprint(station),
            self.fingerprint(release)
        );
        for (name, uri) in keys {
            text.push_str(&format!(
                "\n[keys.{name}]\nuri = \"{uri}\"\nrole = \"authority\"\nfingerprint = \"{}\"\n",
                self.fingerprint(uri)
            ));
        }
        text.push_str(
            "\n[officers]\nalice = { public_key = \"alice.pub.pem\" }\n\
             bob = { public_key = \"bob.pub.pem\" }\n\n[products.sensor]\n\
             slot_size = 0x10000\nrelease_keys = [\"release\"]\nofficers = [\"alice\", \"bob\"]\n\
             quorum = 1\nrollback_quorum = 2\n",
        );
        std::fs::write(self.dir.join("policy.toml"), text).unwrap();
        if !self.dir.join("audit.jsonl").exists() {
            ok(self.keytool().args(["audit", "init"]));
        }
    }

    fn sign_record(&self, key: &str, out: &Path) -> Output {
        let dev = self.dir.join("device.pub.pem");
        self.keytool()
            .args(["record", "sign", "-k", key, "--hw-id", "1234567800000003"])
            .args(["--serial", "7", "--device-pubkey"])
            .arg(&dev)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap()
    }
}

fn station() -> Station {
    let token = SoftHsmToken::new("station", "1234").unwrap();
    let dir = token.dir.path().join("station");
    std::fs::create_dir(&dir).unwrap();
    let s = Station { token, dir };
    for (label, id) in [("audit", "01"), ("release", "02"), ("good", "03")] {
        ok(s.token.command(env!("CARGO_BIN_EXE_keytool")).args([
            "key",
            "generate",
            "-t",
            "ecdsa-p256",
            "-k",
            &format!("pkcs11:token=station;object={label};id=%{id}"),
        ]));
    }
    // An officer's approval key and a device key, as files (not used to sign).
    for name in ["alice", "bob", "device"] {
        let pem = s.dir.join(format!("{name}.pem"));
        ok(common::keytool()
            .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
            .arg(&pem));
        let public = ok(common::keytool()
            .args(["key", "getpub", "-e", "pem", "-k"])
            .arg(&pem));
        std::fs::write(s.dir.join(format!("{name}.pub.pem")), public).unwrap();
    }
    // Imported: made outside the token, then written into it.
    let der = s.dir.join("imported.der");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-outform", "DER", "-out"])
        .arg(&der)
        .output()
        .unwrap();
    assert!(made.status.success());
    ok(s.pkcs11_tool().args(["--write-object"]).arg(&der).args([
        "--type",
        "privkey",
        "--label",
        "imported",
        "--id",
        "04",
        "--usage-sign",
    ]));
    // Its public half too, so that the policy can name its fingerprint.
    let pub_der = s.dir.join("imported.pub.der");
    let made = Command::new("openssl")
        .args(["pkey", "-inform", "DER", "-in"])
        .arg(&der)
        .args(["-pubout", "-outform", "DER", "-out"])
        .arg(&pub_der)
        .output()
        .unwrap();
    assert!(made.status.success());
    ok(s.pkcs11_tool()
        .args(["--write-object"])
        .arg(&pub_der)
        .args(["--type", "pubkey", "--label", "imported", "--id", "04"]));
    // Generated on the token, but allowing derivation (pkcs11-tool's default).
    ok(s.pkcs11_tool().args([
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "derives",
        "--id",
        "05",
    ]));
    s
}

#[test]
fn production_keys_must_be_generated_on_the_token_and_sign_only() {
    let s = station();
    let good = "pkcs11:token=station;object=good";
    let imported = "pkcs11:token=station;object=imported";
    let derives = "pkcs11:token=station;object=derives";
    s.policy(
        &[("good", good), ("imported", imported), ("derives", derives)],
        false,
    );
    let out = s.dir.join("rec.bin");
    let o = s.sign_record(good, &out);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = s.sign_record(imported, &out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("not CKA_ALWAYS_SENSITIVE") && e.contains("not CKA_LOCAL"),
        "{e}"
    );
    let o = s.sign_record(derives, &out);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("CKA_DERIVE"), "{}", stderr(&o));

    // The refusals are in the station's log.
    let log = std::fs::read_to_string(s.dir.join("audit.jsonl")).unwrap();
    assert!(log.contains("not CKA_LOCAL"), "{log}");
}

#[test]
fn quorum_keys_are_required_where_the_policy_says_so() {
    let s = station();
    let good = "pkcs11:token=station;object=good";
    s.policy(&[("good", good)], true);
    let out = s.dir.join("rec.bin");
    let o = s.sign_record(good, &out);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("token station is not quorum-unlocked"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // A KMS key cannot be quorum-unlocked: the policy itself is refused.
    let text = std::fs::read_to_string(s.dir.join("policy.toml")).unwrap()
        + "\n[keys.cloud]\nuri = \"awskms:///alias/authority\"\nrole = \"authority\"\n\
           fingerprint = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n";
    std::fs::write(s.dir.join("kms.toml"), text).unwrap();
    let o = s
        .keytool()
        .args(["policy", "check"])
        .arg(s.dir.join("kms.toml"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no PIN to split"), "{}", stderr(&o));
}
