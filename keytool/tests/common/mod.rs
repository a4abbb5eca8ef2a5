//! Helpers for keytool's integration tests: the built binary, and the real
//! `imgtool` 2.5 that `scripts/test.sh` installs and names in `IMGTOOL`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
