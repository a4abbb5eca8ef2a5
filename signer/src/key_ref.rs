//! The one parser of key references that every tool accepts.
//!
//! | form | meaning |
//! |---|---|
//! | `file:PATH` or a bare `PATH` | a PEM file (development keys) |
//!
//! Anything that does not start with a known scheme is a path, so file names
//! containing `:` still work. The HSM (`pkcs11:`) and KMS (`awskms:`) schemes
//! are recognised so that a build without those backends refuses them with a
//! clear message instead of looking for a file of that name.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A reference to a key.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRef {
    /// A PEM file: PKCS#8 private key, or SubjectPublicKeyInfo public key.
    File(PathBuf),
}

/// Why a key reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRefError {
    /// Empty reference.
    #[error("empty key reference")]
    Empty,
    /// `file:` with nothing after it.
    #[error("key reference {0:?}: 'file:' needs a path")]
    EmptyPath(String),
    /// A scheme this build does not support.
    #[error("key reference {reference:?}: the '{scheme}:' scheme is not supported by this build")]
    Unsupported {
        /// The reference as given.
        reference: String,
        /// Its scheme.
        scheme: &'static str,
    },
}

const RESERVED_SCHEMES: [&str; 2] = ["pkcs11", "awskms"];

impl FromStr for KeyRef {
    type Err = KeyRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(KeyRefError::Empty);
        }
        if let Some(path) = s.strip_prefix("file:") {
            // Accept `file://PATH` (absolute) too, as people type it.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(KeyRefError::EmptyPath(s.to_owned()));
            }
            return Ok(KeyRef::File(PathBuf::from(path)));
        }
        for scheme in RESERVED_SCHEMES {
            if s.strip_prefix(scheme).is_some_and(|r| r.starts_with(':')) {
                return Err(KeyRefError::Unsupported {
                    reference: s.to_owned(),
                    scheme,
                });
            }
        }
        Ok(KeyRef::File(PathBuf::from(s)))
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(s: &str) -> Result<KeyRef, KeyRefError> {
        s.parse()
    }

    #[test]
    fn paths_and_file_uris() {
        assert_eq!(k("keys/a.pem").unwrap(), KeyRef::File("keys/a.pem".into()));
        assert_eq!(
            k("file:keys/a.pem").unwrap(),
            KeyRef::File("keys/a.pem".into())
        );
        assert_eq!(
            k("file:///abs/a.pem").unwrap(),
            KeyRef::File("/abs/a.pem".into())
        );
        assert_eq!(
            k("odd:name.pem").unwrap(),
            KeyRef::File("odd:name.pem".into())
        );
        assert_eq!(k("file:keys/a.pem").unwrap().to_string(), "file:keys/a.pem");
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert_eq!(k(""), Err(KeyRefError::Empty));
        assert!(matches!(k("file:"), Err(KeyRefError::EmptyPath(_))));
        let e = k("pkcs11:token=x").unwrap_err();
        assert!(e.to_string().contains("'pkcs11:' scheme"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = k(&s);
        }
    }
}
