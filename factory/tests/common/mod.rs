//! Helpers shared by the factory's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use lambda::auth::{token_hash, BearerTokens};
use lambda::model::Role;
use lambda::{SqliteStore, Store, Wait};

pub const TOKEN: &str = "pvd_factory-test";
pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

/// A backend on a free port, running until the test ends.
pub struct LocalBackend {
    pub url: String,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

/// A backend accepting `authorities`.
pub fn backend_with(authorities: Vec<firmware::P256PublicKey>) -> LocalBackend {
    serve(authorities, None)
}

/// A backend accepting the test authority over HTTPS, with the certificate
/// of `tls` (its URL names `localhost`).
pub fn backend_tls(tls: &signer::testing::TlsIdentity) -> LocalBackend {
    let config = lambda::tls::server_config(&tls.cert, &tls.key).unwrap();
    serve(test_authorities(), Some(config))
}

fn serve(
    authorities: Vec<firmware::P256PublicKey>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> LocalBackend {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("reg.db")).unwrap());
    store
        .add_token(
            "line-1",
            Role::Factory,
            &token_hash(TOKEN),
            None,
            "operator",
        )
        .wait()
        .unwrap();
    let app = lambda::api::router(lambda::api::AppState {
        auth: Arc::new(BearerTokens::new(Arc::clone(&store))),
        store: Arc::clone(&store),
        authorities: Arc::new(authorities),
        // Rate limits are the backend's own tests' business.
        guard: Arc::new(lambda::guard::DeviceGuard::new(lambda::guard::Limits {
            per_source: lambda::guard::Rate::OFF,
            per_serial: lambda::guard::Rate::OFF,
            ..Default::default()
        })),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = match tls {
        Some(_) => format!("https://localhost:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            match tls {
                Some(config) => {
                    let listener = lambda::tls::TlsListener::new(listener, config).unwrap();
                    axum::serve(listener, app).await.unwrap();
                }
                None => axum::serve(listener, app).await.unwrap(),
            }
        });
    });
    LocalBackend {
        url,
        store,
        _dir: dir,
    }
}

/// The test authority (tests/data/records/authority.pem).
fn test_authorities() -> Vec<firmware::P256PublicKey> {
    lambda::config::authorities_from_files(&[format!("{DATA}records/authority.pub.pem").into()])
        .unwrap()
}

/// A backend accepting the test authority.
pub fn backend() -> LocalBackend {
    backend_with(test_authorities())
}

pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn work() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Run and require success.
pub fn run_ok(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// The sample application for QEMU's nRF51 (`firmware/qemu/build-app.sh`),
/// signed by imgtool 2.5 with the test data's dev key for the primary slot
/// (version 1.0.0, counter 1); made once per test process.
pub fn signed_app() -> std::path::PathBuf {
    static APP: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    APP.get_or_init(|| {
        let raw = work().join("app.bin");
        let signed = work().join("app.signed.bin");
        build_app(&raw);
        imgtool_sign(&raw, &signed, &["-v", "1.0.0", "-s", "1"]);
        signed
    })
    .clone()
}

/// The boot stage with the dev release key and the test authority built in,
/// as a raw binary for address 0 (`boot.sh --build-only`); made once per
/// test process.
pub fn boot_stage() -> std::path::PathBuf {
    static BOOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        let out = work().join("boot-stage.bin");
        run_ok(
            std::process::Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
                .args(boot_keys())
                .arg("--build-only")
                .arg(&out),
        );
        out
    })
    .clone()
}

/// boot.sh's key flags for the test data's release and authority keys.
pub fn boot_keys() -> [String; 4] {
    [
        "--release-key".into(),
        format!("{DATA}images/dev-key.pub.pem"),
        "--authority".into(),
        format!("{DATA}records/authority.pub.pem"),
    ]
}

/// The unsigned sample application (`firmware/qemu/build-app.sh`).
pub fn build_app(out: &std::path::Path) {
    run_ok(std::process::Command::new(format!("{ROOT}/firmware/qemu/build-app.sh")).arg(out));
}

/// imgtool 2.5 signs `input` for the boot stage's primary slot with the test
/// data's dev key; `extra`: version, counter, padding.
pub fn imgtool_sign(input: &std::path::Path, output: &std::path::Path, extra: &[&str]) {
    let imgtool = std::env::var_os("IMGTOOL")
        .unwrap_or_else(|| panic!("IMGTOOL is not set: run the tests through scripts/test.sh"));
    let slot = [
        "-H",
        "0x200",
        "--pad-header",
        "-S",
        "0x19000",
        "--align",
        "4",
    ];
    run_ok(
        std::process::Command::new(imgtool)
            .arg("sign")
            .args(slot)
            .arg("-k")
            .arg(format!("{DATA}images/dev-key.pem"))
            .args(extra)
            .arg(input)
            .arg(output),
    );
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// boot.sh, killed when the test ends however it ends.
pub struct Chip(pub std::process::Child);

impl Drop for Chip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until `port` on 127.0.0.1 accepts connections (the chip's GDB stub
/// or UART), or fail if boot.sh ended.
pub fn wait_for(port: u16, chip: &mut Chip) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(chip.0.try_wait().unwrap().is_none(), "boot.sh exited");
        assert!(
            std::time::Instant::now() < deadline,
            "the chip did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Ask the chip on its UART to sign `nonce`; its answer.
pub fn ask(uart: u16, nonce: &[u8; 32]) -> firmware::auth::line::Answer {
    use std::io::{BufRead, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", uart)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    writeln!(&stream, "AUTH {}", hex::encode(nonce)).unwrap();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "UART closed");
        if let Some(answer) = firmware::auth::line::Answer::parse(line.as_bytes()).unwrap() {
            return answer;
        }
    }
}
