//! The audit log's entries and their hash chain: each entry's hash covers
//! the previous entry's hash, so an edited, removed or reordered entry breaks
//! the chain from that point on.

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

/// An entry as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainedEntry {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    /// The event.
    pub entry: AuditEntry,
    /// The previous entry's hash (zeros for the first).
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

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at entry {seq}: {problem}")]
pub struct ChainError {
    /// The first bad entry.
    pub seq: u64,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Check a whole chain, in stored order. Returns the number of entries.
pub fn verify_chain(entries: impl IntoIterator<Item = ChainedEntry>) -> Result<u64, ChainError> {
    let mut prev = [0u8; 32];
    let mut expected = 1u64;
    for c in entries {
        if c.seq != expected {
            return Err(ChainError {
                seq: expected,
                problem: "missing or out of order",
            });
        }
        if c.prev_hash != prev {
            return Err(ChainError {
                seq: c.seq,
                problem: "does not follow the previous entry",
            });
        }
        if entry_hash(&prev, c.seq, c.time, &c.entry) != c.hash {
            return Err(ChainError {
                seq: c.seq,
                problem: "edited (hash mismatch)",
            });
        }
        prev = c.hash;
        expected += 1;
    }
    Ok(expected - 1)
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
