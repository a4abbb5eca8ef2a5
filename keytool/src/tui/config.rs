//! The station's configuration for `keytool tui` (`station.toml`): where
//! images and provisioning requests arrive, which policy rules, which token
//! each officer approves with, and when the screen locks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signer::KeyRef;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    policy: Option<PathBuf>,
    images: Option<PathBuf>,
    requests: Option<PathBuf>,
    exports: Option<PathBuf>,
    idle_lock: Option<String>,
    #[serde(default)]
    officers: BTreeMap<String, String>,
}

/// A checked station configuration. Relative paths are relative to the file.
#[derive(Debug, Clone)]
pub(crate) struct StationConfig {
    /// The release policy; without one the TUI shows keys and logs only.
    pub(crate) policy: Option<PathBuf>,
    /// Where images to release are picked from (removable media).
    pub(crate) images: PathBuf,
    /// Where provisioning request files (`*.jsonl`) are picked from; signed
    /// records go to a directory beside each.
    pub(crate) requests: PathBuf,
    /// Where exported public keys go.
    pub(crate) exports: PathBuf,
    /// Lock the screen after this long without a key press.
    pub(crate) idle_lock: Duration,
    /// Each officer's approval key (the token they bring), by policy name.
    pub(crate) officers: BTreeMap<String, KeyRef>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("station config {path}: {problem}")]
pub(crate) struct ConfigError {
    path: PathBuf,
    problem: String,
}

/// `5m`, `300s`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl StationConfig {
    /// Defaults for a station run without a file: the current directory.
    pub(crate) fn here(policy: Option<PathBuf>) -> Self {
        Self {
            policy,
            images: PathBuf::from("."),
            requests: PathBuf::from("."),
            exports: PathBuf::from("."),
            idle_lock: Duration::from_secs(300),
            officers: BTreeMap::new(),
        }
    }

    /// Read and check `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new("."))).map_err(|problem| ConfigError {
            path: path.to_owned(),
            problem,
        })
    }

    /// Parse config text; relative paths resolve against `base`.
    pub(crate) fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        let idle_lock = match raw.idle_lock.as_deref() {
            None => Duration::from_secs(300),
            Some(s) => parse_duration(s)
                .ok_or_else(|| format!("idle_lock {s:?}: a number with s, m or h, e.g. 5m"))?,
        };
        let mut officers = BTreeMap::new();
        for (name, uri) in raw.officers {
            let key: KeyRef = uri
                .parse()
                .map_err(|e: signer::KeyRefError| format!("officers.{name}: {e}"))?;
            officers.insert(name, key);
        }
        let dir = |p: Option<PathBuf>| base.join(p.unwrap_or_else(|| PathBuf::from(".")));
        Ok(Self {
            policy: raw.policy.map(|p| base.join(p)),
            images: dir(raw.images),
            requests: dir(raw.requests),
            exports: dir(raw.exports),
            idle_lock,
            officers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_resolves_against_its_directory() {
        let c = StationConfig::parse(
            "policy = \"fleet.toml\"\nimages = \"/media/usb\"\nidle_lock = \"2m\"\n[officers]\nalice = \"pkcs11:token=alice;object=approval\"\n",
            Path::new("/etc/station"),
        )
        .unwrap();
        assert_eq!(c.policy.unwrap(), Path::new("/etc/station/fleet.toml"));
        assert_eq!(c.images, Path::new("/media/usb"));
        assert_eq!(c.requests, Path::new("/etc/station/."));
        assert_eq!(c.idle_lock, Duration::from_secs(120));
        assert!(matches!(c.officers["alice"], KeyRef::Pkcs11(_)));
    }

    #[test]
    fn bad_configs_say_why() {
        let e = StationConfig::parse("idle_lock = \"soon\"", Path::new(".")).unwrap_err();
        assert!(e.contains("idle_lock"), "{e}");
        let e = StationConfig::parse("[officers]\nbob = \"pkcs11:\"", Path::new(".")).unwrap_err();
        assert!(e.contains("officers.bob"), "{e}");
        assert!(StationConfig::parse("colour = true", Path::new(".")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_config_or_an_error(text in "[ -~\\n]{0,200}") {
            let _ = StationConfig::parse(&text, Path::new("."));
        }
    }
}
