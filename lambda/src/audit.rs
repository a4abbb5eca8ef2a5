//! The audit log's entries and their hash chains: each entry's hash covers
//! the previous entry's hash, so an edited, removed or reordered entry breaks
//! its chain from that point on.
//!
//! A log is one or more independent chains, numbered: SQLite keeps one
//! (chain 0); DynamoDB keeps a service chain 0 (tokens, orders, checkpoints,
//! counted refusals) and [`crate::store::dynamodb::DEVICE_CHAINS`] device
//! chains, each device's entries in the chain its hardware ID hashes to, so
//! the fleet's traffic never meets in one item. A chain's first entry follows
//! its genesis hash ([`genesis`]), which names the chain: an entry cannot be
//! moved to another chain. Signed checkpoints ([`crate::checkpoint`]) cover
//! the heads of every chain at once.

use sha2::{Digest, Sha256};

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Who: the caller's name or role, or `device:SERIAL`.
    pub actor: String,
    /// What: `provision`, `activate`, `revoke`, `auth.verify`, …
    pub action: String,
    /// On what: a serial, a hardware ID.
    pub subject: String,
    /// How it ended: `ok`, or the refusal's reason code.
    pub outcome: String,
}

impl AuditEntry {
    /// The entry as it is stored: control characters in every field written
    /// as `\u{..}` escapes (and backslashes doubled), so text a caller chose
    /// can neither forge line breaks in a listing nor drive a terminal.
    pub fn escaped(&self) -> Self {
        Self {
            actor: escape_controls(&self.actor),
            action: escape_controls(&self.action),
            subject: escape_controls(&self.subject),
            outcome: escape_controls(&self.outcome),
        }
    }
}

impl AuditEntry {
    /// For display: control characters escaped, backslashes left alone
    /// (stored entries are escaped already; older ones are made safe here).
    pub fn escaped_for_display(&self) -> Self {
        let safe = |t: &str| {
            t.chars()
                .map(|c| {
                    if c.is_control() {
                        format!("\\u{{{:x}}}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        };
        Self {
            actor: safe(&self.actor),
            action: safe(&self.action),
            subject: safe(&self.subject),
            outcome: safe(&self.outcome),
        }
    }
}

/// `text` with `\` doubled and every control character as `\u{XX}`.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(|c| c == '\\' || c.is_control()) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// An entry as stored, with its place in its chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainedEntry {
    /// The chain it belongs to (0 in a single-chain log).
    pub chain: u32,
    /// 1, 2, 3, … without gaps, within its chain.
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    /// The event.
    pub entry: AuditEntry,
    /// The previous entry's hash ([`genesis`] of the chain for the first).
    pub prev_hash: [u8; 32],
    /// This entry's hash.
    pub hash: [u8; 32],
}

/// The hash of an entry: SHA-256 over the previous hash, the sequence number
/// and time (little-endian) and each text field with a 4-byte length prefix.
pub fn entry_hash(prev: &[u8; 32], seq: u64, time: i64, e: &AuditEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_le_bytes());
    h.update(time.to_le_bytes());
    for field in [&e.actor, &e.action, &e.subject, &e.outcome] {
        h.update((field.len() as u32).to_le_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

/// The newest entry of one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChainHead {
    /// The chain.
    pub chain: u32,
    /// Its newest entry's sequence number.
    pub seq: u64,
    /// That entry's hash.
    pub hash: [u8; 32],
}

/// What the first entry of `chain` follows: zeros for chain 0 (as the
/// single-chain log always had), and for every other chain a hash that
/// names it, so that no entry verifies in a chain it was not written to.
pub fn genesis(chain: u32) -> [u8; 32] {
    if chain == 0 {
        return [0; 32];
    }
    let mut h = Sha256::new();
    h.update(b"nrf-fleet/backend-audit-chain/v1\0");
    h.update(chain.to_le_bytes());
    h.finalize().into()
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at {}: {problem}", place(*.chain, *.seq))]
pub struct ChainError {
    /// The chain.
    pub chain: u32,
    /// The first bad entry.
    pub seq: u64,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// An entry's place as people read it: `entry 7` in chain 0, `chain 12
/// entry 7` elsewhere.
pub fn place(chain: u32, seq: u64) -> String {
    if chain == 0 {
        format!("entry {seq}")
    } else {
        format!("chain {chain} entry {seq}")
    }
}

/// Check every chain of a log. Entries of one chain must come in their
/// stored order (the chains may interleave). Returns the heads of the
/// chains, by chain number.
pub fn verify_chains(
    entries: impl IntoIterator<Item = ChainedEntry>,
) -> Result<Vec<ChainHead>, ChainError> {
    let mut heads = std::collections::BTreeMap::<u32, ChainHead>::new();
    for c in entries {
        let head = heads.entry(c.chain).or_insert(ChainHead {
            chain: c.chain,
            seq: 0,
            hash: genesis(c.chain),
        });
        let fail = |seq, problem| ChainError {
            chain: c.chain,
            seq,
            problem,
        };
        if c.seq != head.seq + 1 {
            return Err(fail(head.seq + 1, "missing or out of order"));
        }
        if c.prev_hash != head.hash {
            return Err(fail(c.seq, "does not follow the previous entry"));
        }
        if entry_hash(&head.hash, c.seq, c.time, &c.entry) != c.hash {
            return Err(fail(c.seq, "edited (hash mismatch)"));
        }
        head.seq = c.seq;
        head.hash = c.hash;
    }
    Ok(heads.into_values().collect())
}

/// Check every chain of a log ([`verify_chains`]). Returns the number of
/// entries.
pub fn verify_chain(entries: impl IntoIterator<Item = ChainedEntry>) -> Result<u64, ChainError> {
    Ok(verify_chains(entries)?.iter().map(|h| h.seq).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_escape_is_unambiguous() {
        assert_eq!(escape_controls("line-1"), "line-1");
        assert_eq!(escape_controls("a\nb\u{1b}[2J"), "a\\u{a}b\\u{1b}[2J");
        assert_eq!(escape_controls("a\\u{a}"), "a\\\\u{a}");
        assert_ne!(escape_controls("a\n"), escape_controls("a\\u{a}"));
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_has_no_control_characters(text in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}a\\\\]{0,20}") {
            let e = escape_controls(&text);
            proptest::prop_assert!(!e.chars().any(char::is_control));
        }
    }
}
