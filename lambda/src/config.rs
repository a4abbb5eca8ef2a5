//! Configuration shared by the entry points: which store, which provisioning
//! authorities.

use std::path::PathBuf;
use std::sync::Arc;

use firmware::P256PublicKey;

use crate::store::{sqlite::SqliteStore, Store};

/// Where the registry lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUri {
    /// `sqlite:PATH`
    Sqlite(PathBuf),
    /// `dynamodb:TABLE_PREFIX[?endpoint=URL]`
    DynamoDb {
        /// Prefix of the table names (`PREFIX-devices`, …).
        prefix: String,
        /// An endpoint other than AWS's (an emulator).
        endpoint: Option<String>,
    },
}

impl std::str::FromStr for StoreUri {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected sqlite:PATH or dynamodb:TABLE_PREFIX[?endpoint=URL]");
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("dynamodb:").ok_or_else(bad)?;
        let (prefix, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if prefix.is_empty() || prefix.len() > 200 || !prefix.chars().all(valid) {
            return Err(format!(
                "{s:?}: the table prefix must be 1-200 of A-Z a-z 0-9 - _ ."
            ));
        }
        let endpoint = match query {
            None => None,
            Some(q) => match q.strip_prefix("endpoint=") {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(url.to_owned())
                }
                _ => return Err(format!("{s:?}: the only option is endpoint=http(s)://…")),
            },
        };
        Ok(Self::DynamoDb {
            prefix: prefix.to_owned(),
            endpoint,
        })
    }
}

impl StoreUri {
    /// Open the store, creating the SQLite file or the DynamoDB tables as
    /// needed.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.open_with(true).await
    }

    /// Open the store; with `create_tables` false, DynamoDB tables must exist
    /// (the Lambda and the operator commands: tables come from the deployment
    /// template, and their IAM policies grant no `CreateTable`).
    pub async fn open_with(&self, create_tables: bool) -> anyhow::Result<Arc<dyn Store>> {
        match self {
            Self::Sqlite(path) => Ok(Arc::new(
                SqliteStore::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )),
            Self::DynamoDb { prefix, endpoint } => Ok(Arc::new(
                crate::store::dynamodb::DynamoStore::open(
                    prefix,
                    endpoint.as_deref(),
                    create_tables,
                )
                .await?,
            )),
        }
    }
}

/// Every P-256 public key in `pem` (one or more `PUBLIC KEY` blocks).
pub fn authorities_from_pem(pem: &str) -> anyhow::Result<Vec<P256PublicKey>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    const END: &str = "-----END PUBLIC KEY-----";
    let mut keys = Vec::new();
    let mut rest = pem;
    while let Some(end) = rest.find(END) {
        let block = &rest[..end + END.len()];
        let key = p256::PublicKey::from_public_key_pem(block.trim())
            .map_err(|_| anyhow::anyhow!("not a P-256 public key (PEM)"))?;
        keys.push(P256PublicKey::from_sec1(
            key.to_encoded_point(false).as_bytes(),
        )?);
        rest = &rest[end + END.len()..];
    }
    if keys.is_empty() {
        anyhow::bail!("no PUBLIC KEY block");
    }
    Ok(keys)
}

/// The keys in each PEM file.
pub fn authorities_from_files(paths: &[PathBuf]) -> anyhow::Result<Vec<P256PublicKey>> {
    let mut keys = Vec::new();
    for path in paths {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        keys.extend(
            authorities_from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        );
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_uris() {
        assert_eq!(
            "sqlite:/tmp/r.db".parse(),
            Ok(StoreUri::Sqlite("/tmp/r.db".into()))
        );
        assert_eq!(
            "dynamodb:prov?endpoint=http://127.0.0.1:5000".parse(),
            Ok(StoreUri::DynamoDb {
                prefix: "prov".into(),
                endpoint: Some("http://127.0.0.1:5000".into())
            })
        );
        assert_eq!(
            "dynamodb:prod-eu".parse(),
            Ok(StoreUri::DynamoDb {
                prefix: "prod-eu".into(),
                endpoint: None
            })
        );
        for bad in [
            "",
            "sqlite:",
            "postgres://x",
            "dynamodb:",
            "dynamodb:a b",
            "dynamodb:p?region=x",
            "dynamodb:p?endpoint=ftp://x",
        ] {
            assert!(bad.parse::<StoreUri>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Any text gives a store or a typed error, never a panic; what
        /// parses names a usable prefix or a non-empty path.
        #[test]
        fn store_uri_parser_is_total(text in "(sqlite:|dynamodb:)?[ -~]{0,40}(\\?endpoint=http://[ -~]{0,20})?") {
            match text.parse::<StoreUri>() {
                Ok(StoreUri::Sqlite(p)) => proptest::prop_assert!(!p.as_os_str().is_empty()),
                Ok(StoreUri::DynamoDb { prefix, .. }) => proptest::prop_assert!(
                    !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                ),
                Err(e) => proptest::prop_assert!(e.contains("expected") || e.contains("prefix") || e.contains("option")),
            }
        }

        /// Authority PEM text that is not a key is an error, never a panic.
        #[test]
        fn authority_pem_parser_is_total(text in "[ -~\n]{0,300}") {
            let _ = authorities_from_pem(&text);
            let with_markers = format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n");
            proptest::prop_assert!(authorities_from_pem(&with_markers).is_err());
        }
    }
}
