//! The deployment files: `lambda/template.yaml` passes `cfn-lint`, every IAM
//! policy under `policies/aws/` passes `parliament` with no finding, and the
//! Lambda's policy there says what the template grants.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn venv_tool(name: &str) -> PathBuf {
    let python = std::env::var("VENV_PYTHON").unwrap_or_else(|_| {
        panic!("VENV_PYTHON is not set: run the tests through scripts/test.sh")
    });
    Path::new(&python).with_file_name(name)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn template_passes_cfn_lint() {
    let out = Command::new(venv_tool("cfn-lint"))
        .arg(root().join("lambda/template.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn policies() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("policies/aws"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
}

#[test]
fn iam_policies_pass_parliament() {
    for file in policies() {
        let mut child = Command::new(venv_tool("parliament"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&std::fs::read(&file).unwrap())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "parliament on {}:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Sid → sorted actions of a policy document.
fn statements(doc: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut actions: Vec<String> = match &s["Action"] {
                serde_json::Value::String(a) => vec![a.clone()],
                v => v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect(),
            };
            actions.sort();
            (s["Sid"].as_str().unwrap().to_owned(), actions)
        })
        .collect()
}

#[test]
fn the_lambda_policy_files_match_the_template() {
    // cfn-lint's YAML loader understands the CloudFormation tags (!Sub, …).
    let script = r#"
import json, sys
from cfnlint.decode import cfn_yaml
t = cfn_yaml.load(sys.argv[1])
print(json.dumps(t["Resources"][sys.argv[2]]["Properties"]["Policies"][0], default=str))
"#;
    let python = std::env::var("VENV_PYTHON").unwrap();
    for (resource, file) in [
        ("Function", "provisiond-lambda.json"),
        ("AuthorizerFunction", "provisiond-authorizer.json"),
    ] {
        let out = Command::new(&python)
            .args(["-c", script])
            .arg(root().join("lambda/template.yaml"))
            .arg(resource)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let from_template: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let file: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("policies/aws").join(file)).unwrap(),
        )
        .unwrap();
        assert_eq!(statements(&from_template), statements(&file), "{resource}");
    }
}
