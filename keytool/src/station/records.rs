//! Batch signing of provisioning records from a request file: one JSON
//! object per line, `{"hw_id": "…", "serial": N, "product": "…",
//! "device_pubkey": "<PEM, or hex SEC1>"}`. Every line is checked before the
//! first record is signed; each record is written atomically to
//! `FILE.records/HWID.rec` and audited as `record.sign`.

use std::path::{Path, PathBuf};

use firmware::record::{HwId, KeyOrigin, RecordBody};
use firmware::P256PublicKey;
use policies::policy::{Policy, Role};
use serde::Deserialize;
use signer::public_key::public_key_from_pem;
use signer::record::{sign_record, RecordRequest};

use crate::station::error::StationError;
use crate::station::session::Session;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    hw_id: String,
    serial: u32,
    #[serde(default)]
    product: String,
    device_pubkey: String,
    /// `station` (the default) or `device`.
    #[serde(default)]
    key_origin: Option<String>,
}

/// Why a request file was refused: the line and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub(crate) struct LineError {
    line: usize,
    problem: String,
}

/// Parse a whole request file; the first bad line stops it.
pub(crate) fn parse_requests(text: &str, issued_at: u64) -> Result<Vec<RecordRequest>, LineError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |problem: String| LineError {
            line: i + 1,
            problem,
        };
        let l: Line = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        let hw_id = HwId::parse_hex(&l.hw_id)
            .ok_or_else(|| bad(format!("hw_id {:?}: 16 hex digits", l.hw_id)))?;
        let product = RecordBody::product_field(&l.product).ok_or_else(|| {
            bad(format!(
                "product {:?}: ASCII, at most 16 characters",
                l.product
            ))
        })?;
        let device_pubkey = device_key(&l.device_pubkey).map_err(bad)?;
        let key_origin = match l.key_origin.as_deref() {
            None => KeyOrigin::Station,
            Some(o) => KeyOrigin::parse(o)
                .ok_or_else(|| bad(format!("key_origin {o:?}: station or device")))?,
        };
        out.push(RecordRequest {
            hw_id,
            serial: l.serial,
            product,
            device_pubkey,
            issued_at,
            key_origin,
        });
    }
    Ok(out)
}

fn device_key(s: &str) -> Result<P256PublicKey, String> {
    if s.trim_start().starts_with("-----BEGIN") {
        return public_key_from_pem(s).map_err(|e| format!("device_pubkey: {e}"));
    }
    let bytes = hex::decode(s).map_err(|_| "device_pubkey: PEM or hex SEC1".to_owned())?;
    P256PublicKey::from_sec1(&bytes).map_err(|e| format!("device_pubkey: {e}"))
}

/// Sign every record `file` requests with the policy's authority key (in a
/// quorum-unlocked token: unlocked by the officers' shares in `unlock`),
/// reporting `(label, done, total)` to `progress` before each. Returns how
/// many records were written, and where.
pub(crate) fn sign_batch(
    policy_path: &Path,
    file: &Path,
    unlock: &[signer::keys::quorum::Officer],
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(u64, PathBuf), StationError> {
    let policy = Policy::load(policy_path).map_err(StationError::usage)?;
    let (name, key) = policy
        .keys
        .iter()
        .find(|(_, k)| k.role == Role::Authority)
        .ok_or_else(|| StationError::usage_msg("the policy names no authority key"))?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| StationError::usage_msg(format!("{}: {e}", file.display())))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let requests = parse_requests(&text, now)
        .map_err(|e| StationError::usage_msg(format!("{}: {e}", file.display())))?;
    let authority = crate::station::keys::open_key(&key.uri, unlock)?;
    let session = Session::open(policy_path)?;
    if let Err(why) = session.check_key(Role::Authority, &key.uri, authority.as_ref()) {
        return Err(session.refuse(
            "record.sign",
            vec![format!("batch:{}", file.display())],
            &why,
        ));
    }
    let mut session = session;
    let out_dir: PathBuf = file.with_extension("records");
    std::fs::create_dir_all(&out_dir).map_err(StationError::failed)?;
    let total = requests.len() as u64;
    for (i, req) in requests.iter().enumerate() {
        progress(&format!("signing records ({name})"), i as u64, total);
        let bytes = sign_record(req, authority.as_ref()).map_err(StationError::failed)?;
        let subjects = vec![
            format!("hw_id:{}", req.hw_id),
            format!("serial:{}", req.serial),
            format!(
                "device_key:sha256:{}",
                hex::encode(req.device_pubkey.key_id())
            ),
            format!("key:{name}"),
        ];
        let out = out_dir.join(format!("{}.rec", req.hw_id));
        session.write_recorded(&out, &bytes, "record.sign", subjects)?;
    }
    session.close()?;
    Ok((total, out_dir))
}

/// Sign one record with `key` and write it to `output`. Under a policy
/// (`policy`): the key must be an authority key (checked on use), and the
/// record is written only once its audit entry is. Returns the record.
pub(crate) fn sign_one(
    policy: Option<&Path>,
    (key, unlock): (&signer::KeyRef, &[signer::keys::quorum::Officer]),
    req: &RecordRequest,
    product_name: &str,
    output: &Path,
) -> Result<[u8; firmware::record::RECORD_LEN], StationError> {
    let authority = crate::station::keys::open_key(key, unlock)?;
    let mut subjects = vec![
        format!("hw_id:{}", req.hw_id),
        format!("serial:{}", req.serial),
        format!("product:{product_name}"),
        format!(
            "device_key:sha256:{}",
            hex::encode(req.device_pubkey.key_id())
        ),
    ];
    let mut session = match policy {
        Some(path) => {
            let s = Session::open(path)?;
            match s.check_key(Role::Authority, key, authority.as_ref()) {
                Ok(name) => subjects.push(format!("key:{name}")),
                Err(why) => return Err(s.refuse("record.sign", subjects, &why)),
            }
            Some(s)
        }
        None => None,
    };
    let bytes = sign_record(req, authority.as_ref()).map_err(StationError::failed)?;
    match session.as_mut() {
        Some(s) => {
            s.write_recorded(output, &bytes, "record.sign", subjects)?;
        }
        None => signer::atomic::write(output, &bytes).map_err(StationError::failed)?,
    }
    if let Some(s) = session {
        s.close()?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "04\
        6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\
        4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";

    #[test]
    fn lines_parse_or_name_the_bad_one() {
        let good = format!(
            "{{\"hw_id\":\"1234567800000003\",\"serial\":7,\"product\":\"sensor\",\"device_pubkey\":\"{KEY}\"}}\n\n"
        );
        let reqs = parse_requests(&good, 5).unwrap();
        assert_eq!((reqs.len(), reqs[0].serial, reqs[0].issued_at), (1, 7, 5));
        let bad = format!("{good}{{\"hw_id\":\"xyz\",\"serial\":1,\"device_pubkey\":\"{KEY}\"}}\n");
        assert_eq!(parse_requests(&bad, 0).unwrap_err().line, 3);
        assert!(parse_requests("{\"hw_id\":1}", 0).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs(text in "[ -~\\n]{0,300}") {
            let _ = parse_requests(&text, 0);
        }
    }
}
