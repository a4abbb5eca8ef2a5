//! The release history, read from the audit log: the version rule compares
//! each release with the last one of its product, and the log (whose chain
//! and signed head are checked first) is where that survives restarts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use firmware::image::ImageVersion;
use firmware::P256PublicKey;

use crate::audit::{verify, Entry, VerifyError};

/// The audit action of a release that was signed.
pub const RELEASE_ACTION: &str = "release.sign";

/// A release signed earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Its version.
    pub version: ImageVersion,
    /// Its security counter, if it had one.
    pub security_counter: Option<u32>,
    /// Its image digest, hex.
    pub digest: String,
    /// The log line that records it.
    pub seq: u64,
    /// The release keys that signed it, by policy name, in order.
    pub keys: Vec<String>,
    /// The release keys of every release of the product so far, this one
    /// last (the key generations the fleet has been sent, for retirement).
    pub key_history: Vec<Vec<String>>,
}

/// The subjects of a release's audit entry, in the order they are written.
///
/// The digest is named by its hash (`sha256:`, `sha384:`, `sha512:`, by its
/// length) and each signing key gets a `key:` subject, in signature order.
pub fn release_subjects(
    product: &str,
    version: &ImageVersion,
    security_counter: Option<u32>,
    digest_hex: &str,
    key_names: &[&str],
) -> Vec<String> {
    let mut s = vec![format!("product:{product}"), format!("version:{version}")];
    if let Some(c) = security_counter {
        s.push(format!("security_counter:{c}"));
    }
    let hash = match digest_hex.len() {
        96 => "sha384",
        128 => "sha512",
        _ => "sha256",
    };
    s.push(format!("{hash}:{digest_hex}"));
    for k in key_names {
        s.push(format!("key:{k}"));
    }
    s
}

fn subject<'a>(entry: &'a Entry, prefix: &str) -> Option<&'a str> {
    entry.subjects.iter().find_map(|s| s.strip_prefix(prefix))
}

/// The last release of every product, from a log that verifies.
pub fn last_releases(
    log: &Path,
    station_key: Option<&P256PublicKey>,
) -> Result<BTreeMap<String, Release>, VerifyError> {
    let mut last = BTreeMap::new();
    if !log.exists() {
        return Ok(last);
    }
    verify(log, station_key)?;
    let file = std::fs::File::open(log).map_err(|e| VerifyError {
        line: 0,
        problem: e.to_string(),
    })?;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| VerifyError {
            line: n as u64 + 1,
            problem: e.to_string(),
        })?;
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
            continue; // verify() has accepted every line; nothing to skip in practice
        };
        if entry.action != RELEASE_ACTION || entry.outcome != "ok" {
            continue;
        }
        let digest = subject(&entry, "sha256:")
            .or_else(|| subject(&entry, "sha384:"))
            .or_else(|| subject(&entry, "sha512:"));
        let (Some(product), Some(version), Some(digest)) = (
            subject(&entry, "product:"),
            subject(&entry, "version:").and_then(|v| v.parse().ok()),
            digest,
        ) else {
            continue;
        };
        let security_counter = subject(&entry, "security_counter:").and_then(|c| c.parse().ok());
        let keys: Vec<String> = entry
            .subjects
            .iter()
            .filter_map(|s| s.strip_prefix("key:"))
            .map(str::to_owned)
            .collect();
        let mut key_history = last
            .remove(product)
            .map(|r: Release| r.key_history)
            .unwrap_or_default();
        key_history.push(keys.clone());
        last.insert(
            product.to_owned(),
            Release {
                version,
                security_counter,
                digest: digest.to_owned(),
                seq: entry.seq,
                keys,
                key_history,
            },
        );
    }
    Ok(last)
}
