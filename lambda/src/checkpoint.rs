//! Signed checkpoints of the backend's audit chains. A hash chain shows an
//! edited, removed or reordered entry, but not a recomputed chain or a cut
//! tail; a checkpoint is the head (sequence number and hash) of every chain,
//! signed by a key the store's writers do not hold (KMS in AWS, PKCS#11 or a
//! file locally), appended to the service chain (chain 0) at a fixed
//! interval, on demand and when the server stops. With the key's public half,
//! `provisiond audit verify --checkpoint-key PUB.pem` then finds a chain
//! recomputed after an edit (its heads no longer match what was signed), a
//! chain removed or cut back below a signed head, a forged checkpoint (the
//! signature fails), and, with `--max-age`, a log cut back past its newest
//! checkpoint.
//!
//! Format of a checkpoint entry: actor `provisiond`, action
//! `audit.checkpoint`, outcome `ok`, subject
//! `heads:C:N:HEX64,C:N:HEX64,… key:sha256:HEX64 sig:HEX128` (chain, sequence
//! number and hash of each chain's head, by chain number; the key's id; the
//! signature). The signature is ECDSA P-256 (`r ‖ s`) over SHA-256 of
//! `nrf-fleet/backend-audit-checkpoint/v2\0 ‖ count (u32 LE) ‖ (chain (u32 LE)
//! ‖ N (u64 LE) ‖ hash)…`. Version 1, written when the log was one chain,
//! reads `seq:N head:HEX64 key:… sig:…` and signs `…/v1\0 ‖ N (u64 LE) ‖
//! hash`; it covers chain 0 and still verifies.

use firmware::P256PublicKey;
use sha2::{Digest, Sha256};

use crate::audit::{place, verify_chains, AuditEntry, ChainHead, ChainedEntry};
use crate::store::{Store, StoreError};

/// The action of a checkpoint entry.
pub const ACTION: &str = "audit.checkpoint";
/// Domain separation for the signed digest (version 2: every chain's head).
pub const CONTEXT: &[u8] = b"nrf-fleet/backend-audit-checkpoint/v2\0";
/// Domain separation of version 1 (one chain).
pub const CONTEXT_V1: &[u8] = b"nrf-fleet/backend-audit-checkpoint/v1\0";

/// What a checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chains' heads it covers, by chain number.
    pub heads: Vec<ChainHead>,
    /// Written in version 1 (one head, chain 0).
    pub v1: bool,
    /// The signing key's id ([`P256PublicKey::key_id`]).
    pub key: [u8; 32],
    /// ECDSA P-256 `r ‖ s`.
    pub signature: [u8; 64],
}

/// The digest a checkpoint signs over `heads`.
pub fn digest(heads: &[ChainHead]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CONTEXT);
    h.update((heads.len() as u32).to_le_bytes());
    for head in heads {
        h.update(head.chain.to_le_bytes());
        h.update(head.seq.to_le_bytes());
        h.update(head.hash);
    }
    h.finalize().into()
}

fn digest_v1(seq: u64, head: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CONTEXT_V1);
    h.update(seq.to_le_bytes());
    h.update(head);
    h.finalize().into()
}

impl Checkpoint {
    /// The digest its signature covers.
    pub fn signed_digest(&self) -> [u8; 32] {
        match (self.v1, self.heads.as_slice()) {
            (true, [head]) => digest_v1(head.seq, &head.hash),
            _ => digest(&self.heads),
        }
    }

    /// The audit entry that records it (always written as version 2).
    pub fn entry(&self) -> AuditEntry {
        let heads: Vec<String> = self
            .heads
            .iter()
            .map(|h| format!("{}:{}:{}", h.chain, h.seq, hex::encode(h.hash)))
            .collect();
        AuditEntry {
            actor: "provisiond".into(),
            action: ACTION.into(),
            subject: format!(
                "heads:{} key:sha256:{} sig:{}",
                heads.join(","),
                hex::encode(self.key),
                hex::encode(self.signature)
            ),
            outcome: "ok".into(),
        }
    }

    /// Read one back from an entry's subject (either version); `None` if it
    /// is not one.
    pub fn parse(subject: &str) -> Option<Self> {
        let mut fields = subject.split(' ');
        let mut next = |prefix: &str| fields.next()?.strip_prefix(prefix).map(str::to_owned);
        let first = next("")?;
        let (heads, v1) = if let Some(list) = first.strip_prefix("heads:") {
            let mut heads = Vec::new();
            for item in list.split(',') {
                let mut parts = item.split(':');
                let chain = parts.next()?.parse().ok()?;
                let seq = parts.next()?.parse().ok()?;
                let hash = hex::decode(parts.next()?).ok()?.try_into().ok()?;
                if parts.next().is_some() {
                    return None;
                }
                heads.push(ChainHead { chain, seq, hash });
            }
            if !heads.windows(2).all(|w| w[0].chain < w[1].chain) {
                return None;
            }
            (heads, false)
        } else {
            let seq = first.strip_prefix("seq:")?.parse().ok()?;
            let hash = hex::decode(next("head:")?).ok()?.try_into().ok()?;
            (
                vec![ChainHead {
                    chain: 0,
                    seq,
                    hash,
                }],
                true,
            )
        };
        let key = hex::decode(next("key:sha256:")?).ok()?.try_into().ok()?;
        let signature = hex::decode(next("sig:")?).ok()?.try_into().ok()?;
        if fields.next().is_some() {
            return None;
        }
        Some(Self {
            heads,
            v1,
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

/// A checkpoint just appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The heads it covers.
    pub covered: Vec<ChainHead>,
    /// The heads once it was appended (pass to the next [`make`]).
    pub after: Vec<ChainHead>,
}

/// Sign every chain's head as it is now and append the checkpoint to chain
/// 0, unless the heads are still `unless` (nothing new since the last one).
/// Returns what was covered, or `None` when there was nothing to do.
pub async fn make(
    store: &dyn Store,
    key: &std::sync::Arc<dyn signer::Signer>,
    unless: Option<&[ChainHead]>,
) -> Result<Option<Made>, CheckpointError> {
    let heads = store.audit_heads().await?;
    if heads.is_empty() || unless == Some(heads.as_slice()) {
        return Ok(None);
    }
    // Key stores answer synchronously (PKCS#11, the KMS client's own
    // runtime): they sign on the blocking pool.
    let (signer, to_sign) = (std::sync::Arc::clone(key), digest(&heads));
    let (public, signature) = tokio::task::spawn_blocking(move || {
        let public = signer.public_key()?;
        let signature = signer.sign_digest(&to_sign)?;
        Ok::<_, signer::SignerError>((public, signature))
    })
    .await
    .map_err(|e| CheckpointError::Key(e.to_string()))?
    .map_err(|e| CheckpointError::Key(e.to_string()))?;
    let checkpoint = Checkpoint {
        heads,
        v1: false,
        key: public.key_id(),
        signature: signature.to_raw(),
    };
    store.audit(&checkpoint.entry()).await?;
    Ok(Some(Made {
        covered: checkpoint.heads,
        after: store.audit_heads().await?,
    }))
}

/// What a checked log holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Anchoring {
    /// Entries in all chains.
    pub entries: u64,
    /// Chains with entries.
    pub chains: usize,
    /// Checkpoints that verified.
    pub checkpoints: u64,
    /// How many entries the newest checkpoint covers, and when it was
    /// written.
    pub newest: Option<(u64, i64)>,
    /// Entries the newest checkpoint does not cover: those after it in
    /// chain 0, after the heads it signed in the others.
    pub unanchored: u64,
}

/// Why a log fails its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// A hash chain itself.
    #[error(transparent)]
    Chain(#[from] crate::audit::ChainError),
    /// A checkpoint entry that does not parse, or one outside chain 0.
    #[error("{}: a malformed or misplaced checkpoint", place(.0.0, .0.1))]
    Malformed((u32, u64)),
    /// Signed by another key, or not signed at all.
    #[error("entry {0}: the checkpoint's signature does not verify with the checkpoint key")]
    Forged(u64),
    /// A signed head is not the chain's: the chain was recomputed, cut
    /// back or removed.
    #[error("entry {entry}: the checkpoint signed {} and the log no longer has it: the chain was rewritten or cut back", place(*.chain, *.covers))]
    Rewritten {
        /// The checkpoint entry.
        entry: u64,
        /// The chain of the head it signed.
        chain: u32,
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

/// Check `entries` (the whole log, each chain in order): the hash chains,
/// then every checkpoint against `key`; with `max_age` (seconds) and `now`,
/// the newest checkpoint must be that recent.
pub fn verify(
    entries: &[ChainedEntry],
    key: &P256PublicKey,
    max_age: Option<(i64, i64)>,
) -> Result<Anchoring, AnchorError> {
    let heads = verify_chains(entries.iter().cloned())?;
    let count: u64 = heads.iter().map(|h| h.seq).sum();
    // Each chain's entries by sequence number (contiguous from 1: checked).
    let mut chains = std::collections::BTreeMap::<u32, Vec<&ChainedEntry>>::new();
    for e in entries {
        chains.entry(e.chain).or_default().push(e);
    }
    let mut report = Anchoring {
        entries: count,
        chains: heads.len(),
        checkpoints: 0,
        newest: None,
        unanchored: count,
    };
    for e in entries.iter().filter(|e| e.entry.action == ACTION) {
        if e.chain != 0 {
            return Err(AnchorError::Malformed((e.chain, e.seq)));
        }
        let c = Checkpoint::parse(&e.entry.subject).ok_or(AnchorError::Malformed((0, e.seq)))?;
        if c.key != key.key_id()
            || key
                .verify_digest_raw(&c.signed_digest(), &c.signature)
                .is_err()
        {
            return Err(AnchorError::Forged(e.seq));
        }
        for head in &c.heads {
            let held = chains
                .get(&head.chain)
                .and_then(|chain| chain.get((head.seq as usize).checked_sub(1)?))
                .filter(|covered| covered.hash == head.hash);
            let before_itself = head.chain != 0 || head.seq < e.seq;
            if held.is_none() || !before_itself {
                return Err(AnchorError::Rewritten {
                    entry: e.seq,
                    chain: head.chain,
                    covers: head.seq,
                });
            }
        }
        let covered: u64 = c.heads.iter().map(|h| h.seq).sum();
        report.checkpoints += 1;
        report.newest = Some((covered, e.time));
        // Not covered: in chain 0 what follows the checkpoint entry; in
        // every other chain what follows the head it signed.
        report.unanchored = heads
            .iter()
            .map(|h| {
                let signed = c
                    .heads
                    .iter()
                    .find(|s| s.chain == h.chain)
                    .map_or(0, |s| s.seq);
                h.seq - if h.chain == 0 { e.seq } else { signed }
            })
            .sum();
    }
    if let Some((max, now)) = max_age {
        let (_, at) = report.newest.ok_or(AnchorError::NoCheckpoint)?;
        if now - at > max {
            return Err(AnchorError::Stale { age: now - at, max });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{entry_hash, genesis};
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    fn key() -> (p256::ecdsa::SigningKey, P256PublicKey) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pk = P256PublicKey::from_sec1(sk.verifying_key().to_encoded_point(false).as_bytes())
            .unwrap();
        (sk, pk)
    }

    /// Append `entry` to `chain` of `log`.
    fn append(log: &mut Vec<ChainedEntry>, chain: u32, entry: AuditEntry) {
        let (seq, prev) = log
            .iter()
            .rev()
            .find(|e| e.chain == chain)
            .map_or((1, genesis(chain)), |e| (e.seq + 1, e.hash));
        let hash = entry_hash(&prev, seq, 1_700_000_000, &entry);
        log.push(ChainedEntry {
            chain,
            seq,
            time: 1_700_000_000,
            entry,
            prev_hash: prev,
            hash,
        });
    }

    fn event(what: &str) -> AuditEntry {
        AuditEntry {
            actor: "factory:line-1".into(),
            action: "provision".into(),
            subject: what.into(),
            outcome: "ok".into(),
        }
    }

    /// Sign the heads of `log` now and append the checkpoint to chain 0.
    fn checkpoint(log: &mut Vec<ChainedEntry>, sk: &p256::ecdsa::SigningKey, pk: &P256PublicKey) {
        let heads = verify_chains(log.iter().cloned()).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest(&heads)).unwrap();
        let c = Checkpoint {
            heads,
            v1: false,
            key: pk.key_id(),
            signature: sig.to_bytes().into(),
        };
        append(log, 0, c.entry());
    }

    #[test]
    fn one_checkpoint_covers_every_chain_and_sees_any_cut() {
        let (sk, pk) = key();
        let mut log = Vec::new();
        append(&mut log, 0, event("token"));
        for i in 0..6 {
            append(&mut log, 1 + i % 3, event(&format!("device {i}")));
        }
        checkpoint(&mut log, &sk, &pk);
        append(&mut log, 2, event("after"));
        let r = verify(&log, &pk, None).unwrap();
        assert_eq!((r.entries, r.chains, r.checkpoints), (9, 4, 1));
        assert_eq!((r.newest.unwrap().0, r.unanchored), (7, 1));

        // A device chain cut back below its signed head, or removed.
        for cut in [
            log.iter()
                .filter(|e| !(e.chain == 3 && e.seq == 2))
                .cloned()
                .collect::<Vec<_>>(),
            log.iter().filter(|e| e.chain != 3).cloned().collect(),
        ] {
            assert!(
                matches!(
                    verify(&cut, &pk, None),
                    Err(AnchorError::Rewritten {
                        chain: 3,
                        covers: 2,
                        ..
                    })
                ),
                "{:?}",
                verify(&cut, &pk, None)
            );
        }
        // An entry moved to another chain, hashes and all, breaks there.
        let mut moved = log.clone();
        moved.retain(|e| e.chain != 3);
        let mut taken = log.iter().find(|e| e.chain == 3).unwrap().clone();
        taken.chain = 4;
        moved.push(taken);
        assert!(matches!(
            verify_chains(moved),
            Err(crate::audit::ChainError {
                chain: 4,
                seq: 1,
                ..
            })
        ));
    }

    #[test]
    fn a_version_1_checkpoint_still_verifies() {
        let (sk, pk) = key();
        let mut log = Vec::new();
        append(&mut log, 0, event("a"));
        append(&mut log, 0, event("b"));
        let head = log[1].hash;
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest_v1(2, &head)).unwrap();
        let subject = format!(
            "seq:2 head:{} key:sha256:{} sig:{}",
            hex::encode(head),
            hex::encode(pk.key_id()),
            hex::encode(sig.to_bytes())
        );
        let parsed = Checkpoint::parse(&subject).unwrap();
        assert!(parsed.v1);
        append(
            &mut log,
            0,
            AuditEntry {
                actor: "provisiond".into(),
                action: ACTION.into(),
                subject,
                outcome: "ok".into(),
            },
        );
        let r = verify(&log, &pk, None).unwrap();
        assert_eq!((r.checkpoints, r.unanchored), (1, 0));
        // The same signature read as version 2 does not verify.
        let mut as_v2 = parsed;
        as_v2.v1 = false;
        assert!(pk
            .verify_digest_raw(&as_v2.signed_digest(), &as_v2.signature)
            .is_err());
    }

    #[test]
    fn a_written_checkpoint_reads_back() {
        let c = Checkpoint {
            heads: vec![
                ChainHead {
                    chain: 0,
                    seq: 4,
                    hash: [1; 32],
                },
                ChainHead {
                    chain: 17,
                    seq: 9,
                    hash: [2; 32],
                },
            ],
            v1: false,
            key: [3; 32],
            signature: [4; 64],
        };
        assert_eq!(Checkpoint::parse(&c.entry().subject), Some(c));
    }

    proptest::proptest! {
        #[test]
        fn any_subject_parses_or_not_without_panicking(subject in "\\PC{0,300}") {
            let _ = Checkpoint::parse(&subject);
        }

        #[test]
        fn mangled_checkpoints_parse_or_not_without_panicking(
            cut in 0usize..400, insert in "[ :,0-9a-z]{0,4}"
        ) {
            let c = Checkpoint {
                heads: vec![ChainHead { chain: 2, seq: 7, hash: [9; 32] }],
                v1: false,
                key: [3; 32],
                signature: [4; 64],
            };
            let mut s = c.entry().subject;
            let at = s.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(s.len());
            s.insert_str(at, &insert);
            let _ = Checkpoint::parse(&s);
        }
    }
}
