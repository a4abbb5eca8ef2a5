//! Test support (feature `test-support`): a SoftHSM2 token in a private token
//! directory, never the system's `/var/lib/softhsm`. Used by the tests and
//! benchmarks of every crate that talks PKCS#11.

use std::path::PathBuf;
use std::process::Command;

/// A freshly initialised SoftHSM2 token; its directory goes when it drops.
#[derive(Debug)]
pub struct SoftHsmToken {
    /// The directory holding the config and the token files.
    pub dir: tempfile::TempDir,
    /// The `SOFTHSM2_CONF` file.
    pub conf: PathBuf,
    /// The PKCS#11 module (`PKCS11_MODULE`).
    pub module: String,
    /// The token's label.
    pub label: String,
    /// The user PIN.
    pub pin: String,
}

impl SoftHsmToken {
    /// Initialise a token `label` with user PIN `pin`. `PKCS11_MODULE` must name
    /// the SoftHSM2 module (`scripts/test.sh` sets it).
    pub fn new(label: &str, pin: &str) -> Result<Self, String> {
        let module = std::env::var("PKCS11_MODULE")
            .map_err(|_| "PKCS11_MODULE is not set: run through scripts/test.sh".to_owned())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).map_err(|e| e.to_string())?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let token = Self {
            dir,
            conf,
            module,
            label: label.to_owned(),
            pin: pin.to_owned(),
        };
        let out = token
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", "5678"])
            .output()
            .map_err(|e| format!("softhsm2-util: {e} (scripts/setup.sh installs it)"))?;
        if !out.status.success() {
            return Err(format!(
                "softhsm2-util --init-token: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(token)
    }

    /// The environment a process needs to use this token.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("SOFTHSM2_CONF", self.conf.display().to_string()),
            ("PKCS11_MODULE", self.module.clone()),
            ("PKCS11_PIN", self.pin.clone()),
        ]
    }

    /// A command with this token's environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env());
        c
    }

    /// Point this process at the token (before any PKCS#11 module loads, and
    /// before other threads start).
    pub fn set_process_env(&self) {
        for (k, v) in self.env() {
            std::env::set_var(k, v);
        }
    }

    /// Generate a P-256 key pair labelled `label` in the token with OpenSC's
    /// `pkcs11-tool` (`--usage-sign`: no derivation; SoftHSM2 still marks
    /// the private key for decrypt and unwrap, so production checks refuse
    /// it: `keytool key generate` makes production keys).
    pub fn generate_p256(&self, label: &str, id: &str) -> Result<(), String> {
        let out = self
            .command("pkcs11-tool")
            .args(["--module", &self.module, "--token-label", &self.label])
            .args(["--login", "--pin", &self.pin, "--keypairgen"])
            .args(["--key-type", "EC:prime256v1", "--label", label, "--id", id])
            .arg("--usage-sign")
            .output()
            .map_err(|e| format!("pkcs11-tool: {e} (scripts/setup.sh installs opensc)"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pkcs11-tool --keypairgen: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// moto_server (the AWS emulator) on a free loopback port, started through
/// the project's launcher (`scripts/moto_server.py`, with `VENV_PYTHON`);
/// stopped when dropped. Used by the KMS and DynamoDB tests of every crate.
#[derive(Debug)]
pub struct MotoServer {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl MotoServer {
    /// Start it and wait until it listens.
    pub fn start() -> Result<Self, String> {
        let python = std::env::var("VENV_PYTHON").map_err(|_| {
            "VENV_PYTHON is not set: run the tests through scripts/test.sh".to_owned()
        })?;
        let launcher =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/moto_server.py");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new(python)
            .arg(launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("moto_server: {e}"))?;
        let server = Self { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err("moto_server did not start within 30 s".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment an AWS SDK client needs to reach it (dummy keys).
    pub fn env() -> [(&'static str, &'static str); 4] {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "eu-north-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS server identity for tests, as PEM files in one directory: a
/// throwaway CA, and a certificate it issued for `localhost` and
/// `127.0.0.1` with its key.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// The CA's certificate (what a client trusts with `--ca`).
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl TlsIdentity {
    /// Make one in `dir`.
    pub fn create(dir: &std::path::Path) -> Result<Self, String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let e = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "provisiond test CA");
        let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(e)?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(e)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = leaf.signed_by(&key, &issuer).map_err(e)?;
        let id = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        for (path, pem) in [
            (&id.ca, ca_cert.pem()),
            (&id.cert, cert.pem()),
            (&id.key, key.serialize_pem()),
        ] {
            std::fs::write(path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(id)
    }
}
