//! Helpers for keytool's integration tests: the built binary, and the real
//! `imgtool` 2.5 that `scripts/test.sh` installs and names in `IMGTOOL`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Version, header and slot flags for a small test image.
pub const SMALL_IMAGE: [&str; 7] = [
    "-v",
    "1.0.0",
    "-H",
    "0x200",
    "--pad-header",
    "-S",
    "0x10000",
];

pub fn keytool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keytool"))
}

/// The imgtool oracle. Missing is a failure, never a skip.
pub fn imgtool() -> Command {
    let path = std::env::var_os("IMGTOOL").unwrap_or_else(|| {
        panic!("IMGTOOL is not set: run the tests through scripts/test.sh, which installs imgtool 2.5 in .venv")
    });
    Command::new(path)
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

/// Run and require success, returning stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `keytool key generate -t ecdsa-p256 --json -k KEY` through `cmd` (a
/// keytool command with its environment); returns the JSON it printed.
pub fn generate_key(mut cmd: Command, key: &str) -> serde_json::Value {
    let out = ok(cmd.args(["key", "generate", "-t", "ecdsa-p256", "--json", "-k", key]));
    serde_json::from_str(&out).unwrap()
}

/// A scratch directory with a development key and its public PEM.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        ok(keytool()
            .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
            .arg(s.key()));
        let pem = ok(keytool()
            .args(["key", "getpub", "-e", "pem", "-k"])
            .arg(s.key()));
        std::fs::write(s.pubkey(), pem).unwrap();
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn key(&self) -> PathBuf {
        self.path("key.pem")
    }

    /// `keytool image sign -k KEY FLAGS INPUT OUTPUT`, which must succeed.
    pub fn sign(&self, flags: &[&str], input: &Path, output: &Path) {
        ok(keytool()
            .args(["image", "sign", "-k"])
            .arg(self.key())
            .args(flags)
            .arg(input)
            .arg(output));
    }

    pub fn pubkey(&self) -> PathBuf {
        self.path("pub.pem")
    }

    /// A pseudo-random firmware payload of `len` bytes, optionally starting
    /// with `zeros` zero bytes (room for a header that is not padded in).
    pub fn firmware(&self, name: &str, len: usize, zeros: usize) -> PathBuf {
        let mut x: u32 = 0x1234_5678 ^ len as u32;
        let data: Vec<u8> = (0..len)
            .map(|i| {
                if i < zeros {
                    return 0;
                }
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The PKCS#11 module under test (SoftHSM2), from `PKCS11_MODULE`.
/// Missing is a failure, never a skip.
pub fn pkcs11_module() -> String {
    std::env::var("PKCS11_MODULE").unwrap_or_else(|_| {
        panic!("PKCS11_MODULE is not set: run the tests through scripts/test.sh, which installs SoftHSM2")
    })
}

/// A SoftHSM2 token in a private token directory (never /var/lib/softhsm).
pub struct SoftHsm {
    token: signer::testing::SoftHsmToken,
    pub module: String,
}

pub const USER_PIN: &str = "1234";

impl SoftHsm {
    /// A fresh token labelled `label`, user PIN `USER_PIN`.
    pub fn new(label: &str) -> Self {
        let token = signer::testing::SoftHsmToken::new(label, USER_PIN).unwrap();
        Self {
            module: token.module.clone(),
            token,
        }
    }

    /// A command with this token's environment (config, module, PIN).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.token.command(program)
    }

    pub fn keytool(&self) -> Command {
        self.cmd(env!("CARGO_BIN_EXE_keytool"))
    }

    pub fn pkcs11_tool(&self) -> Command {
        let mut c = self.cmd("pkcs11-tool");
        c.args(["--module", &self.module]);
        c
    }
}

/// moto_server as KMS (`signer::testing::MotoServer`), for keytool runs.
pub struct Moto {
    server: signer::testing::MotoServer,
}

impl Moto {
    pub fn start() -> Self {
        Self {
            server: signer::testing::MotoServer::start().unwrap(),
        }
    }

    pub fn key(&self, alias: &str) -> String {
        format!(
            "awskms:///alias/{alias}?region=eu-north-1&endpoint={}",
            self.server.endpoint()
        )
    }

    pub fn keytool(&self) -> Command {
        let mut c = keytool();
        c.envs(signer::testing::MotoServer::env())
            .env_remove("AWS_PROFILE");
        c
    }
}
