//! The audit log against every way it can be tampered with: an edited,
//! deleted or reordered line, a log cut short (with or without its last
//! checkpoint), a forged checkpoint; each named by its first bad line.
#![allow(clippy::unwrap_used, clippy::panic)]

use policies::audit::{head_path, verify, AuditLog};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

fn station() -> Box<dyn signer::Signer> {
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    signer::open_signer(&key).unwrap()
}

fn other_key() -> Box<dyn signer::Signer> {
    let key: signer::KeyRef = format!("file:{DATA}images/dev-key.pem").parse().unwrap();
    signer::open_signer(&key).unwrap()
}

/// Two sessions of three events, each closed by a checkpoint: 8 lines.
fn sample(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("audit.jsonl");
    let station = station();
    let key = station.public_key().unwrap();
    for session in 0..2 {
        let mut log = AuditLog::open(&path, Some(&key)).unwrap();
        for i in 0..3 {
            log.append(
                "officer-a",
                "image.sign",
                vec![
                    format!("sha256:{:064x}", session * 10 + i),
                    "product:sensor".into(),
                ],
                "ok",
            )
            .unwrap();
        }
        log.checkpoint("station", station.as_ref()).unwrap();
    }
    path
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write(path: &std::path::Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(&dir);
    let key = station().public_key().unwrap();
    let v = verify(&path, Some(&key)).unwrap();
    assert_eq!((v.entries, v.checkpoints, v.unsealed), (8, 2, 0));
}

#[test]
fn edits_deletions_reordering_and_truncation_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(&dir);
    let key = station().public_key().unwrap();
    let original = lines(&path);

    let mut edited = original.clone();
    edited[2] = edited[2].replace("\"ok\"", "\"refused\"");
    write(&path, &edited);
    assert_eq!(
        verify(&path, Some(&key)).unwrap_err().line,
        4,
        "the line after the edit no longer follows it"
    );

    let mut deleted = original.clone();
    deleted.remove(1);
    write(&path, &deleted);
    assert_eq!(verify(&path, Some(&key)).unwrap_err().line, 2);

    let mut reordered = original.clone();
    reordered.swap(1, 2);
    write(&path, &reordered);
    assert_eq!(verify(&path, Some(&key)).unwrap_err().line, 2);

    // Cut after the first session: the head names line 8.
    write(&path, &original[..4]);
    let e = verify(&path, Some(&key)).unwrap_err();
    assert_eq!(e.line, 8);
    assert!(e.problem.contains("truncated"), "{e}");

    // Cut in the middle of the second session.
    write(&path, &original[..6]);
    assert!(verify(&path, Some(&key))
        .unwrap_err()
        .problem
        .contains("truncated"));

    // Head removed as well: a checkpointed log without its head is refused.
    std::fs::remove_file(head_path(&path)).unwrap();
    assert!(verify(&path, Some(&key))
        .unwrap_err()
        .problem
        .contains("no head file"));
}

#[test]
fn a_checkpoint_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, None).unwrap();
    log.append("mallory", "image.sign", vec![], "ok").unwrap();
    log.checkpoint("station", other_key().as_ref()).unwrap();
    let key = station().public_key().unwrap();
    let e = verify(&path, Some(&key)).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.problem.contains("another key"), "{e}");
}

#[test]
fn appending_to_a_broken_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(&dir);
    let mut l = lines(&path);
    l[0] = l[0].replace("officer-a", "officer-b");
    write(&path, &l);
    let key = station().public_key().unwrap();
    assert!(AuditLog::open(&path, Some(&key)).is_err());
}
