//! Release requests and officer approvals (docs/policy.md).
//!
//! A request names exactly one image (its MCUboot hash), its version and
//! security counter, the product, the release key meant to sign it and an
//! expiry. Officers approve by signing the request's canonical bytes; the
//! request file carries the request and the approvals collected so far.

use firmware::image::ImageVersion;
use firmware::P256PublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signer::keys::{Signer, SignerError};

/// The request format's name and version, inside every request.
pub const REQUEST_FORMAT: &str = "nrf-fleet/release-request/v1";

/// Domain separation for approval signatures.
pub const APPROVAL_CONTEXT: &[u8] = b"nrf-fleet/release-approval/v1\0";

/// What the officers approve. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Always [`REQUEST_FORMAT`].
    pub format: String,
    /// The product, as the policy names it.
    pub product: String,
    /// The image's MCUboot hash (SHA-256 over header, payload and protected
    /// TLVs), hex.
    pub image_digest: String,
    /// The unsigned image's size in bytes.
    pub image_size: u64,
    /// The header's version, `maj.min.rev+build`.
    pub version: String,
    /// The protected security counter, if the image has one.
    pub security_counter: Option<u32>,
    /// The policy's name for the release key meant to sign.
    pub release_key: String,
    /// That key's fingerprint, `sha256:…`.
    pub release_key_fingerprint: String,
    /// A second release key that signs too, for an image the old and the
    /// new bootloader key tables both accept (docs/key-rotation.md). Absent
    /// from single-key requests, whose bytes stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_release_key: Option<String>,
    /// The second key's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_release_key_fingerprint: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; approvals are void after this.
    pub expires: i64,
}

/// One officer's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The officer's name in the policy (informative; the key decides).
    pub officer: String,
    /// The approval key's fingerprint, `sha256:…`.
    pub key_fingerprint: String,
    /// ECDSA P-256 `r ‖ s`, hex, over [`ReleaseRequest::approval_digest`].
    pub signature: String,
    /// Unix seconds.
    pub time: i64,
}

/// A request file: the request and its approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    /// What is approved.
    pub request: ReleaseRequest,
    /// The approvals so far.
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

/// Why a request file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON of the request file's shape.
    #[error("not a release request file: {0}")]
    Syntax(String),
    /// Another format or version.
    #[error("release request format {0:?}; this keytool reads {REQUEST_FORMAT:?}")]
    Format(String),
    /// A field's value is malformed.
    #[error("release request: {field}: {problem}")]
    Field {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

fn field(field: &'static str, problem: &'static str) -> RequestError {
    RequestError::Field { field, problem }
}

impl RequestFile {
    /// Parse and check a request file.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        let file: Self =
            serde_json::from_slice(bytes).map_err(|e| RequestError::Syntax(e.to_string()))?;
        file.request.check()?;
        for a in &file.approvals {
            if crate::policy::parse_fingerprint(&a.key_fingerprint).is_none() {
                return Err(field(
                    "approvals.key_fingerprint",
                    "expected sha256: and 64 hex digits",
                ));
            }
            if decode_signature(&a.signature).is_none() {
                return Err(field(
                    "approvals.signature",
                    "expected 128 hex digits (r ‖ s)",
                ));
            }
        }
        Ok(file)
    }

    /// The file's bytes: pretty JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

fn decode_signature(s: &str) -> Option<[u8; 64]> {
    hex::decode(s).ok()?.try_into().ok()
}

impl ReleaseRequest {
    /// Check every field's form.
    pub fn check(&self) -> Result<(), RequestError> {
        if self.format != REQUEST_FORMAT {
            return Err(RequestError::Format(self.format.clone()));
        }
        if self.product.is_empty() {
            return Err(field("product", "empty"));
        }
        if self.second_release_key.is_some() != self.second_release_key_fingerprint.is_some() {
            return Err(field(
                "second_release_key",
                "needs second_release_key_fingerprint, and the other way round",
            ));
        }
        if self.second_release_key.as_ref() == Some(&self.release_key) {
            return Err(field("second_release_key", "names the first key again"));
        }
        if self.digest().is_none() {
            return Err(field("image_digest", "expected 64, 96 or 128 hex digits"));
        }
        if self.parsed_version().is_none() {
            return Err(field("version", "expected maj.min.rev+build"));
        }
        if crate::policy::parse_fingerprint(&self.release_key_fingerprint).is_none() {
            return Err(field(
                "release_key_fingerprint",
                "expected sha256: and 64 hex digits",
            ));
        }
        if self.expires <= self.created {
            return Err(field("expires", "not after created"));
        }
        Ok(())
    }

    /// The release keys meant to sign, in signature order: `(name,
    /// fingerprint)`.
    pub fn release_keys(&self) -> Vec<(&str, &str)> {
        let mut keys = vec![(
            self.release_key.as_str(),
            self.release_key_fingerprint.as_str(),
        )];
        if let (Some(k), Some(f)) = (
            &self.second_release_key,
            &self.second_release_key_fingerprint,
        ) {
            keys.push((k, f));
        }
        keys
    }

    /// The image hash (SHA-256, SHA-384 or SHA-512 by its length), decoded.
    pub fn digest(&self) -> Option<Vec<u8>> {
        hex::decode(&self.image_digest)
            .ok()
            .filter(|d| matches!(d.len(), 32 | 48 | 64))
    }

    /// The version, parsed.
    pub fn parsed_version(&self) -> Option<ImageVersion> {
        self.version.parse().ok()
    }

    /// The canonical bytes: compact JSON in field order. Requests are always
    /// re-serialised from the parsed value, never taken from the file.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// What an approval signs: SHA-256 of the context and the canonical bytes.
    pub fn approval_digest(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(APPROVAL_CONTEXT)
            .chain_update(self.canonical_bytes())
            .finalize()
            .into()
    }

    /// An approval of this request by `officer` with their key.
    pub fn approve(
        &self,
        officer: &str,
        key: &dyn Signer,
        time: i64,
    ) -> Result<Approval, SignerError> {
        let public = key.public_key()?;
        let signature = key.sign_digest(&self.approval_digest())?;
        Ok(Approval {
            officer: officer.to_owned(),
            key_fingerprint: crate::policy::fingerprint(&public),
            signature: hex::encode(signature.to_raw()),
            time,
        })
    }
}

impl Approval {
    /// Whether this approval is `key`'s signature over `request`.
    pub fn verifies(&self, request: &ReleaseRequest, key: &P256PublicKey) -> bool {
        crate::policy::parse_fingerprint(&self.key_fingerprint) == Some(key.key_id())
            && decode_signature(&self.signature).is_some_and(|sig| {
                key.verify_digest_raw(&request.approval_digest(), &sig)
                    .is_ok()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ReleaseRequest {
        ReleaseRequest {
            format: REQUEST_FORMAT.into(),
            product: "sensor".into(),
            image_digest: "ab".repeat(32),
            image_size: 1234,
            version: "1.2.0".into(),
            security_counter: Some(3),
            release_key: "sensor-release".into(),
            release_key_fingerprint: format!("sha256:{}", "cd".repeat(32)),
            second_release_key: None,
            second_release_key_fingerprint: None,
            created: 1_700_000_000,
            expires: 1_700_086_400,
        }
    }

    #[test]
    fn round_trip_and_canonical_bytes() {
        let file = RequestFile {
            request: sample(),
            approvals: vec![],
        };
        let back = RequestFile::parse(&file.to_bytes()).unwrap();
        assert_eq!(back, file);
        let canon = String::from_utf8(back.request.canonical_bytes()).unwrap();
        assert!(
            canon.starts_with(r#"{"format":"nrf-fleet/release-request/v1","product":"sensor""#),
            "{canon}"
        );
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let mut r = sample();
        r.image_digest = "xyz".into();
        assert!(r.check().unwrap_err().to_string().contains("image_digest"));
        let mut r = sample();
        r.format = "other/v9".into();
        assert!(r.check().unwrap_err().to_string().contains("other/v9"));
        let mut r = sample();
        r.expires = r.created;
        assert!(r.check().unwrap_err().to_string().contains("expires"));
        let e = RequestFile::parse(br#"{"request":{},"extra":1}"#).unwrap_err();
        assert!(matches!(e, RequestError::Syntax(_)), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_err(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = RequestFile::parse(&bytes);
        }

        #[test]
        fn any_mutation_of_a_valid_file_parses_or_errs(
            pos in 0usize..2000, byte in proptest::num::u8::ANY
        ) {
            let mut bytes = RequestFile { request: sample(), approvals: vec![] }.to_bytes();
            let i = pos % bytes.len();
            bytes[i] = byte;
            let _ = RequestFile::parse(&bytes);
        }
    }
}
