//! The station's audit log (docs/audit-log.md): append-only JSON lines, each
//! holding the SHA-256 of the line before it, so an edited, removed or
//! reordered line breaks the chain from there on. A session ends with a
//! checkpoint line signed by the station key, and the same checkpoint is kept
//! in `LOG.head`; a log cut short before its head is detected too.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use firmware::P256PublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signer::keys::{Signer, SignerError};

/// Domain separation for checkpoint signatures.
pub const CHECKPOINT_CONTEXT: &[u8] = b"nrf-fleet/audit-checkpoint/v1\0";

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the log, fields in the order they are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    /// Who: the officer or the station.
    pub actor: String,
    /// What: `image.sign`, `release.approve`, `checkpoint`, …
    pub action: String,
    /// On what: digests and names (`sha256:…`, `product:…`).
    pub subjects: Vec<String>,
    /// `ok`, or why it was refused.
    pub outcome: String,
    /// SHA-256 (hex) of the previous line's bytes.
    pub prev: String,
    /// Checkpoints: the station key's id (SHA-256 of its SPKI), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Checkpoints: ECDSA P-256 `r ‖ s`, hex, over [`checkpoint_digest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What a checkpoint signs: SHA-256 of the context, the checkpoint's `seq`
/// (u64 LE) and the hash of the line before it.
pub fn checkpoint_digest(seq: u64, prev: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(CHECKPOINT_CONTEXT)
        .chain_update(seq.to_le_bytes())
        .chain_update(prev)
        .finalize()
        .into()
}

/// Why a log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file system.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The log to append to does not verify.
    #[error(transparent)]
    Broken(#[from] VerifyError),
    /// The station key.
    #[error("station key: {0}")]
    Signer(#[from] SignerError),
    /// A log that must exist does not.
    #[error(
        "{0} does not exist: a production station never starts a new history by itself; the \
         first log is made by `keytool audit init` (a missing log means the history was removed)"
    )]
    Missing(PathBuf),
}

/// Where the chain breaks: the first bad line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at line {line}: {problem}")]
pub struct VerifyError {
    /// 1-based line number (for a head problem, the line the head names).
    pub line: u64,
    /// What is wrong.
    pub problem: String,
}

/// A verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines in the log.
    pub entries: u64,
    /// Checkpoints among them.
    pub checkpoints: u64,
    /// Lines after the last checkpoint (a session not closed).
    pub unsealed: u64,
    /// Hash of the last line, hex.
    pub head: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The head file that goes with `log`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn line_hash(line: &str) -> [u8; 32] {
    Sha256::digest(line.as_bytes()).into()
}

/// Check a whole log (and its head file, if `station_key` is given or the
/// head exists). Reads line by line; never panics on bad input.
pub fn verify(log: &Path, station_key: Option<&P256PublicKey>) -> Result<Verified, VerifyError> {
    let file = std::fs::File::open(log).map_err(|e| VerifyError {
        line: 0,
        problem: format!("cannot read {}: {e}", log.display()),
    })?;
    let mut prev = [0u8; 32];
    let mut hashes_at_checkpoints = Vec::new();
    let (mut n, mut checkpoints, mut since_checkpoint) = (0u64, 0u64, 0u64);
    let mut buf = String::new();
    let mut reader = BufReader::new(file);
    loop {
        buf.clear();
        let read = reader.read_line(&mut buf).map_err(|e| VerifyError {
            line: n + 1,
            problem: format!("unreadable: {e}"),
        })?;
        if read == 0 {
            break;
        }
        n += 1;
        let bad = |problem: String| VerifyError { line: n, problem };
        let line = buf
            .strip_suffix('\n')
            .ok_or_else(|| bad("incomplete last line (no newline)".into()))?;
        let entry: Entry =
            serde_json::from_str(line).map_err(|e| bad(format!("not a log entry: {e}")))?;
        if entry.seq != n {
            return Err(bad(format!(
                "sequence number {} where {n} was expected (removed or reordered lines)",
                entry.seq
            )));
        }
        if entry.prev != hex::encode(prev) {
            return Err(bad(
                "does not follow the line before it (an edit, removal or reordering)".into(),
            ));
        }
        if entry.action == "checkpoint" {
            if let Some(key) = station_key {
                check_signature(&entry, &prev, key).map_err(bad)?;
            }
            checkpoints += 1;
            since_checkpoint = 0;
        } else {
            since_checkpoint += 1;
        }
        prev = line_hash(line);
        hashes_at_checkpoints.push(if entry.action == "checkpoint" {
            Some(prev)
        } else {
            None
        });
    }
    // A log that has been checkpointed must have its head; a new one (no
    // checkpoint yet) has none.
    let head = head_path(log);
    if head.exists() || checkpoints > 0 {
        check_head(&head, &hashes_at_checkpoints, station_key, n)?;
    }
    Ok(Verified {
        entries: n,
        checkpoints,
        unsealed: since_checkpoint,
        head: hex::encode(prev),
    })
}

fn check_signature(entry: &Entry, prev: &[u8; 32], key: &P256PublicKey) -> Result<(), String> {
    let sig = entry
        .signature
        .as_deref()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .ok_or("checkpoint without a 64-byte signature")?;
    if entry.key_id.as_deref() != Some(hex::encode(key.key_id()).as_str()) {
        return Err("checkpoint signed by another key than the station's".into());
    }
    key.verify_digest_raw(&checkpoint_digest(entry.seq, prev), &sig)
        .map_err(|_| "checkpoint signature does not verify".into())
}

/// The head file: the last checkpoint line, as written to the log.
fn check_head(
    head: &Path,
    checkpoints: &[Option<[u8; 32]>],
    station_key: Option<&P256PublicKey>,
    lines: u64,
) -> Result<(), VerifyError> {
    let text = std::fs::read_to_string(head).map_err(|e| VerifyError {
        line: lines,
        problem: format!("no head file {}: {e}", head.display()),
    })?;
    let line = text.trim_end_matches('\n');
    let entry: Entry = serde_json::from_str(line).map_err(|e| VerifyError {
        line: lines,
        problem: format!("head file is not a checkpoint: {e}"),
    })?;
    let at = entry.seq;
    let bad = |problem: &str| VerifyError {
        line: at,
        problem: problem.to_owned(),
    };
    if entry.action != "checkpoint" {
        return Err(bad("head file is not a checkpoint"));
    }
    if let Some(key) = station_key {
        let prev: [u8; 32] = hex::decode(&entry.prev)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| bad("head file has a malformed prev"))?;
        check_signature(&entry, &prev, key).map_err(|p| bad(&p))?;
    }
    let index = usize::try_from(at.saturating_sub(1)).unwrap_or(usize::MAX);
    match checkpoints.get(index) {
        None => Err(bad("the log ends before its last checkpoint (truncated)")),
        Some(Some(h)) if *h == line_hash(line) => Ok(()),
        Some(_) => Err(bad("the head's checkpoint differs from the log's line")),
    }
}

/// An open log, appended to line by line (each line fsynced). It holds an
/// exclusive lock (`LOG.lock`) from open to drop: concurrent sessions wait
/// for each other and never interleave in the chain.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    seq: u64,
    prev: [u8; 32],
    _lock: std::fs::File,
}

/// The lock file that goes with `log`.
fn lock_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl AuditLog {
    /// Open (creating if needed) the log at `path`; it must verify first.
    pub fn open(path: &Path, station_key: Option<&P256PublicKey>) -> Result<Self, AuditError> {
        Self::open_with(path, station_key, true)
    }

    /// Open the log at `path`, which must exist (a production station never
    /// starts a new history silently); it must verify first.
    pub fn open_existing(
        path: &Path,
        station_key: Option<&P256PublicKey>,
    ) -> Result<Self, AuditError> {
        Self::open_with(path, station_key, false)
    }

    /// Create a new, empty log at `path` (refusing an existing one).
    pub fn create(path: &Path, station_key: Option<&P256PublicKey>) -> Result<Self, AuditError> {
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        Self::open_with(path, station_key, false)
    }

    fn open_with(
        path: &Path,
        station_key: Option<&P256PublicKey>,
        create: bool,
    ) -> Result<Self, AuditError> {
        let lock_file = lock_path(path);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_file)
            .map_err(io(&lock_file))?;
        lock.lock().map_err(io(&lock_file))?;
        if !path.exists() {
            if !create {
                return Err(AuditError::Missing(path.to_owned()));
            }
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io(path))?;
        }
        let v = verify(path, station_key)?;
        let prev: [u8; 32] = hex::decode(&v.head)
            .ok()
            .and_then(|p| p.try_into().ok())
            .unwrap_or([0; 32]);
        Ok(Self {
            path: path.to_owned(),
            seq: v.entries,
            prev,
            _lock: lock,
        })
    }

    /// The hash of the last line (all zeros for an empty log).
    pub fn last_hash(&self) -> [u8; 32] {
        self.prev
    }

    /// The hash of line `seq`, if the log has that many lines.
    pub fn line_hash_at(&self, seq: u64) -> Result<Option<[u8; 32]>, AuditError> {
        use std::io::BufRead;
        if seq == 0 || seq > self.seq {
            return Ok(None);
        }
        let f = std::fs::File::open(&self.path).map_err(io(&self.path))?;
        let line = std::io::BufReader::new(f)
            .lines()
            .nth((seq - 1) as usize)
            .transpose()
            .map_err(io(&self.path))?;
        Ok(line.map(|l| line_hash(&l)))
    }

    /// The sequence number of the last line.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn write(&mut self, entry: &Entry) -> Result<String, AuditError> {
        let line = serde_json::to_string(entry).map_err(|e| AuditError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        f.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(io(&self.path))?;
        self.seq = entry.seq;
        self.prev = line_hash(&line);
        Ok(line)
    }

    fn next(&self, actor: &str, action: &str, subjects: Vec<String>, outcome: &str) -> Entry {
        Entry {
            seq: self.seq + 1,
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            actor: actor.to_owned(),
            action: action.to_owned(),
            subjects,
            outcome: outcome.to_owned(),
            prev: hex::encode(self.prev),
            key_id: None,
            signature: None,
        }
    }

    /// Append one event.
    pub fn append(
        &mut self,
        actor: &str,
        action: &str,
        subjects: Vec<String>,
        outcome: &str,
    ) -> Result<u64, AuditError> {
        let entry = self.next(actor, action, subjects, outcome);
        self.write(&entry)?;
        Ok(self.seq)
    }

    /// Close a session: a checkpoint signed by the station key, appended and
    /// written (atomically) as the head file.
    pub fn checkpoint(&mut self, actor: &str, station: &dyn Signer) -> Result<u64, AuditError> {
        let mut entry = self.next(actor, "checkpoint", vec![], "ok");
        let key = station.public_key()?;
        let sig = station.sign_digest(&checkpoint_digest(entry.seq, &self.prev))?;
        entry.key_id = Some(hex::encode(key.key_id()));
        entry.signature = Some(hex::encode(sig.to_raw()));
        let line = self.write(&entry)?;
        let head = head_path(&self.path);
        signer::atomic::write_parts(&head, &[line.as_bytes(), b"\n"], None).map_err(|e| {
            AuditError::Io {
                path: head.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        Ok(self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any bytes as a log verify or fail with a line number; no panic.
        #[test]
        fn verify_is_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("a.jsonl");
            std::fs::write(&p, &bytes).unwrap();
            let _ = verify(&p, None);
        }
    }
}
