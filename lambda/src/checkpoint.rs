//! Signed checkpoints of the backend's audit chain. The hash chain shows an
//! edited, removed or reordered entry, but not a recomputed chain or a cut
//! tail; a checkpoint is the chain's head (sequence number and hash) signed
//! by a key the store's writers do not hold (KMS in AWS, PKCS#11 or a file
//! locally), appended to the log at a fixed interval, on demand and when the
//! server stops. With the key's public half, `provisiond audit verify
//! --checkpoint-key PUB.pem` then finds a chain recomputed after an edit (its
//! heads no longer match what was signed), a forged checkpoint (the signature
//! fails), and, with `--max-age`, a log cut back past its newest checkpoint.
//!
//! Format of a checkpoint entry: actor `provisiond`, action
//! `audit.checkpoint`, subject `seq:N head:HEX64 key:sha256:HEX64 (the key's id)
//! sig:HEX128`, outcome `ok`. The signature is ECDSA P-256 (`r ‖ s`) over
//! SHA-256 of `nrf-fleet/backend-audit-checkpoint/v1\0 ‖ N (u64 LE) ‖ head`.

use firmware::P256PublicKey;
use sha2::{Digest, Sha256};

use crate::audit::{verify_chain, AuditEntry, ChainedEntry};
use crate::store::{Store, StoreError};

/// The action of a checkpoint entry.
pub const ACTION: &str = "audit.checkpoint";
/// Domain separation for the signed digest.
pub const CONTEXT: &[u8] = b"nrf-fleet/backend-audit-checkpoint/v1\0";

/// What a checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last entry it covers.
    pub seq: u64,
    /// That entry's hash.
    pub head: [u8; 32],
    /// The signing key's id ([`P256PublicKey::key_id`]).
    pub key: [u8; 32],
    /// ECDSA P-256 `r ‖ s`.
    pub signature: [u8; 64],
}

/// The digest a checkpoint signs.
pub fn digest(seq: u64, head: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CONTEXT);
    h.update(seq.to_le_bytes());
    h.update(head);
    h.finalize().into()
}

impl Checkpoint {
    /// The audit entry that records it.
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            actor: "provisiond".into(),
            action: ACTION.into(),
            subject: format!(
                "seq:{} head:{} key:sha256:{} sig:{}",
                self.seq,
                hex::encode(self.head),
                hex::encode(self.key),
                hex::encode(self.signature)
            ),
            outcome: "ok".into(),
        }
    }

    /// Read one back from an entry's subject; `None` if it is not one.
    pub fn parse(subject: &str) -> Option<Self> {
        let mut fields = subject.split(' ');
        let mut next = |prefix: &str| fields.next()?.strip_prefix(prefix).map(str::to_owned);
        let seq = next("seq:")?.parse().ok()?;
        let head = hex::decode(next("head:")?).ok()?.try_into().ok()?;
        let key = hex::decode(next("key:sha256:")?).ok()?.try_into().ok()?;
        let signature = hex::decode(next("sig:")?).ok()?.try_into().ok()?;
        if fields.next().is_some() {
            return None;
        }
        Some(Self {
            seq,
            head,
            key,
            signature,
        })
    }
}

/// Why a checkpoint cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key failed to sign.
    #[error("checkpoint key: {0}")]
    Key(String),
}

/// Sign the chain's head as it is now and append the checkpoint, unless
/// the head is at `unless_at` (nothing new since the last one). Returns the
/// sequence number covered, or `None` when there was nothing to do.
pub fn make(
    store: &dyn Store,
    key: &dyn signer::Signer,
    unless_at: Option<u64>,
) -> Result<Option<u64>, CheckpointError> {
    let (seq, head) = store.audit_head()?;
    if seq == 0 || unless_at == Some(seq) {
        return Ok(None);
    }
    let public = key
        .public_key()
        .map_err(|e| CheckpointError::Key(e.to_string()))?;
    let signature = key
        .sign_digest(&digest(seq, &head))
        .map_err(|e| CheckpointError::Key(e.to_string()))?;
    let checkpoint = Checkpoint {
        seq,
        head,
        key: public.key_id(),
        signature: signature.to_raw(),
    };
    store.audit(&checkpoint.entry())?;
    Ok(Some(seq))
}

/// What a checked log holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Anchoring {
    /// Entries in the chain.
    pub entries: u64,
    /// Checkpoints that verified.
    pub checkpoints: u64,
    /// The entry the newest checkpoint covers, and when it was written.
    pub newest: Option<(u64, i64)>,
    /// Entries after the newest checkpoint entry (not yet anchored).
    pub unanchored: u64,
}

/// Why a log fails its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// The hash chain itself.
    #[error(transparent)]
    Chain(#[from] crate::audit::ChainError),
    /// A checkpoint entry that does not parse.
    #[error("entry {0}: a malformed checkpoint")]
    Malformed(u64),
    /// Signed by another key, or not signed at all.
    #[error("entry {0}: the checkpoint's signature does not verify with the checkpoint key")]
    Forged(u64),
    /// The signed head is not the chain's: the chain was recomputed.
    #[error("entry {entry}: the checkpoint signed entry {covers} with another hash: the chain was rewritten")]
    Rewritten {
        /// The checkpoint entry.
        entry: u64,
        /// The entry it covers.
        covers: u64,
    },
    /// No checkpoint at all.
    #[error("no checkpoint in the log")]
    NoCheckpoint,
    /// The newest checkpoint is older than allowed.
    #[error(
        "the newest checkpoint is {age} s old (allowed {max} s): the log may have been cut back"
    )]
    Stale {
        /// Its age, seconds.
        age: i64,
        /// The limit.
        max: i64,
    },
}

/// Check `entries` (the whole log, in order): the hash chain, then every
/// checkpoint against `key`; with `max_age` (seconds) and `now`, the newest
/// checkpoint must be that recent.
pub fn verify(
    entries: &[ChainedEntry],
    key: &P256PublicKey,
    max_age: Option<(i64, i64)>,
) -> Result<Anchoring, AnchorError> {
    let count = verify_chain(entries.iter().cloned())?;
    let mut report = Anchoring {
        entries: count,
        checkpoints: 0,
        newest: None,
        unanchored: count,
    };
    for e in entries.iter().filter(|e| e.entry.action == ACTION) {
        let c = Checkpoint::parse(&e.entry.subject).ok_or(AnchorError::Malformed(e.seq))?;
        if c.key != key.key_id()
            || key
                .verify_digest_raw(&digest(c.seq, &c.head), &c.signature)
                .is_err()
        {
            return Err(AnchorError::Forged(e.seq));
        }
        let covered = c
            .seq
            .checked_sub(1)
            .and_then(|i| entries.get(i as usize))
            .filter(|covered| c.seq < e.seq && covered.hash == c.head);
        if covered.is_none() {
            return Err(AnchorError::Rewritten {
                entry: e.seq,
                covers: c.seq,
            });
        }
        report.checkpoints += 1;
        report.newest = Some((c.seq, e.time));
        // Entries written after the checkpoint entry are not yet anchored.
        report.unanchored = count - e.seq;
    }
    if let Some((max, now)) = max_age {
        let (_, at) = report.newest.ok_or(AnchorError::NoCheckpoint)?;
        if now - at > max {
            return Err(AnchorError::Stale { age: now - at, max });
        }
    }
    Ok(report)
}
