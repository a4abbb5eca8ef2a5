//! `lambda/openapi.yaml` kept honest: schemathesis generates requests from it
//! (valid and invalid) against the running local server and checks every
//! response: no 5xx, only documented status codes, content types and bodies,
//! and invalid requests refused.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let python = std::env::var("VENV_PYTHON").unwrap_or_else(|_| {
        panic!("VENV_PYTHON is not set: run the tests through scripts/test.sh")
    });
    let schemathesis = std::path::Path::new(&python).with_file_name("schemathesis");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("reg.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args([
            "token", "add", "--name", "fuzz", "--role", "admin", "--store", &store,
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = common::free_port();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/records/");
    let mut server = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &store,
        ])
        .arg("--authority")
        .arg(format!("{data}authority.pub.pem"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_port(port, "provisiond");

    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let out = Command::new(schemathesis)
        .current_dir(dir.path())
        .args(["run", spec, "--url", &format!("http://127.0.0.1:{port}")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
            "--max-examples",
            "60",
            "--seed",
            "20261128",
        ])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("14/14"),
        "every operation tested:\n{report}"
    );
}
