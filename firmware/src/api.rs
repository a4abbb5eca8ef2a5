//! The provisioning backend's JSON API (`lambda/openapi.yaml`): the request
//! and response bodies, defined once, served by `lambda` and called by
//! `factory`. Host only (the `api` feature): these allocate.
//!
//! Requests refuse unknown fields (a misspelt field is an error, not
//! ignored); responses accept them, so a newer server's answer still reads.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// `POST /v1/provision` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// The chip's hardware ID, 16 hex digits.
    pub hw_id: String,
    /// Product name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
}

/// `POST /v1/provision` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionResponse {
    /// The chip's serial.
    pub serial: u32,
    /// Its hardware ID, 16 hex digits.
    pub hw_id: String,
    /// `factory_only`, `active` or `revoked`.
    pub status: String,
    /// Whether this call allocated the serial.
    pub created: bool,
}

/// A device (`GET /v1/devices…`, and the answers of activate and revoke).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Serial.
    pub serial: u32,
    /// Hardware ID, 16 hex digits.
    pub hw_id: String,
    /// `factory_only`, `active` or `revoked`.
    pub status: String,
    /// Product name.
    #[serde(default)]
    pub product: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Where its key was made (`device`, `station`), once activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_origin: Option<String>,
}

/// `POST /v1/devices/{serial}/activate` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The signed provisioning record, hex. The device's public key and its
    /// key origin are taken from it once its signature verifies.
    pub record: String,
}

/// `POST /v1/devices/{serial}/revoke` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why (kept in the audit log).
    pub reason: String,
}

/// `POST /v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// The holder's unique name.
    pub name: String,
    /// `factory` or `admin`.
    pub role: String,
    /// Refused from this time on (Unix seconds); none: no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Bind the token to this production order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// An API token (never its text, but once, in the answer that creates it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its holder's name.
    pub name: String,
    /// `factory` or `admin`.
    pub role: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Refused from then on, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Revoked then, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// The production order it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The token's text: only in the answer that creates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl core::fmt::Debug for TokenView {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The text is a credential: never in a log line or a panic message.
        f.debug_struct("TokenView")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("order", &self.order)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `GET /v1/tokens` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Every token, by name.
    pub tokens: Vec<TokenView>,
}

/// `POST /v1/auth/challenge` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The device asking.
    pub serial: u32,
}

/// `POST /v1/auth/challenge` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// Names the challenge in the answer.
    pub challenge_id: String,
    /// 32 bytes, hex: what the device signs ([`crate::auth::auth_digest`]).
    pub nonce: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/auth/verify` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// From the challenge.
    pub challenge_id: String,
    /// The device's serial.
    pub serial: u32,
    /// The device's hardware ID, 16 hex digits.
    pub hw_id: String,
    /// ECDSA P-256 `r ‖ s` over [`crate::auth::auth_digest`], hex.
    pub signature: String,
}

/// `POST /v1/auth/verify` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// Always true in a 200 answer.
    pub authenticated: bool,
    /// The device's serial.
    pub serial: u32,
}

/// Every error answer: `{"error": CODE, "message": TEXT}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable reason code.
    pub error: String,
    /// For people.
    pub message: String,
}

/// One device's encryption public key, as `GET /v1/registry/enc-keys`
/// lists them and `keytool image wrap --registry` reads them (a device's
/// copy is written as `DEVICE.bin`). Public keys only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncKeyEntry {
    /// The device's name: its serial, in decimal, for the backend's list.
    pub device: String,
    /// Its P-256 public key, PEM (`SubjectPublicKeyInfo`).
    pub enc_public_key: String,
}

/// An encrypted image sent to the backend: a release
/// (`PUT /v1/releases/{name}`) or one device's copy of it
/// (`PUT /v1/releases/{name}/devices/{serial}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageUpload {
    /// The image, base64 (standard alphabet, padded).
    pub image: String,
}

/// A release as the backend keeps it (the answer of its upload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// Its name.
    pub name: String,
    /// Size of the image in bytes.
    pub bytes: u64,
    /// SHA-256 of the image, hex.
    pub sha256: String,
    /// Whether this upload stored it (false: the same image was there).
    pub created: bool,
}

/// One device's copy of a release (`GET /v1/releases/{name}/devices/{serial}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCopy {
    /// The release.
    pub name: String,
    /// The device.
    pub serial: u32,
    /// The copy, base64: the release with its AES key wrapped for this
    /// device's key.
    pub image: String,
    /// SHA-256 of the copy, hex.
    pub sha256: String,
}

/// Whether `name` is a plain name, usable as a file name and in a URL
/// path: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with a dot (release
/// names, device names in a registry export).
pub fn is_plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn requests_refuse_unknown_fields_and_answers_accept_them() {
        assert!(serde_json::from_str::<ProvisionRequest>(
            r#"{"hw_id":"0011223344556677","serail":1}"#
        )
        .is_err());
        let answer: ProvisionResponse = serde_json::from_str(
            r#"{"serial":3,"hw_id":"0011223344556677","status":"factory_only","created":true,"new_field":[1]}"#,
        )
        .unwrap();
        assert_eq!(answer.serial, 3);
    }

    #[test]
    fn a_token_text_never_shows_in_debug_output() {
        let t = TokenView {
            name: "line-1".into(),
            role: "factory".into(),
            created_at: 1,
            expires_at: None,
            revoked_at: None,
            order: None,
            token: Some("s3cr3t-token-text".into()),
        };
        assert!(!std::format!("{t:?}").contains("s3cr3t"));
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_or_not_without_panicking(body in "\\PC{0,200}") {
            let _ = serde_json::from_str::<ProvisionRequest>(&body);
            let _ = serde_json::from_str::<VerifyRequest>(&body);
            let _ = serde_json::from_str::<NewTokenRequest>(&body);
            let _ = serde_json::from_str::<DeviceView>(&body);
            let _ = serde_json::from_str::<ErrorBody>(&body);
        }

        #[test]
        fn requests_round_trip(hw in "[0-9a-f]{16}", product in proptest::option::of("\\PC{0,16}"), serial: u32) {
            let p = ProvisionRequest { hw_id: hw.clone(), product };
            let back: ProvisionRequest = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, p);
            let v = VerifyRequest { challenge_id: "c".into(), serial, hw_id: hw, signature: "00".to_string() };
            let back: VerifyRequest = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, v);
        }
    }
}
