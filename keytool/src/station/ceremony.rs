//! Quorum ceremonies (`docs/quorum.md`), audited when a policy is in effect:
//! making a token quorum-unlocked (and anchoring the station's history in
//! it), and re-splitting its PINs under the old quorum.

use std::path::Path;

use secrecy::SecretString;
use signer::key_ref::Pkcs11Uri;
use signer::keys::quorum::{self, Officer, QuorumConfig};

use crate::station::error::StationError;
use crate::station::session::Session;

fn subjects(token: &str, cfg: &QuorumConfig) -> Vec<String> {
    let mut s = vec![
        format!("token:{token}"),
        format!("threshold:{}", cfg.threshold),
    ];
    s.extend(
        cfg.officers
            .iter()
            .map(|o| format!("officer:{}@{}", o.name, o.token)),
    );
    s
}

/// Audit a ceremony step when a policy (and so a station log) is in effect.
fn audit(
    policy: Option<&Path>,
    action: &str,
    subjects: Vec<String>,
    outcome: &str,
) -> Result<(), StationError> {
    if let Some(path) = policy {
        let mut session = Session::open(path)?;
        session.record(action, subjects, outcome)?;
        session.close()?;
    }
    Ok(())
}

/// Make the token `uri` names (labelled `label`) quorum-unlocked: `m` of
/// `officers`; `(user, so)` are its PINs before the ceremony. Under a policy
/// the ceremony is audited and the station's history anchored in the token.
pub(crate) fn init(
    policy: Option<&Path>,
    uri: &Pkcs11Uri,
    label: &str,
    (user, so): (&SecretString, &SecretString),
    m: u8,
    officers: &[Officer],
) -> Result<QuorumConfig, StationError> {
    match quorum::init(uri, user, so, m, officers) {
        Ok(cfg) => {
            if let Some(path) = policy {
                // The ceremony's entry, then the station's history anchored
                // in the token: from now on a reset log stops every
                // signature with its keys.
                let mut session = Session::open(path)?;
                session.record("ceremony.init", subjects(label, &cfg), "ok")?;
                let token = quorum::unlock(uri, officers).map_err(StationError::failed)?;
                session.anchor(&token)?;
                session.close()?;
            }
            Ok(cfg)
        }
        Err(e) => {
            audit(
                policy,
                "ceremony.init",
                vec![format!("token:{label}")],
                &format!("failed: {e}"),
            )?;
            Err(StationError::failed(e))
        }
    }
}

/// Re-split the token's PINs under the old quorum (`unlock`): `m` of
/// `officers` from now on; audited under a policy.
pub(crate) fn rotate(
    policy: Option<&Path>,
    uri: &Pkcs11Uri,
    label: &str,
    unlock: &[Officer],
    m: u8,
    officers: &[Officer],
) -> Result<QuorumConfig, StationError> {
    let unlockers: Vec<String> = unlock
        .iter()
        .map(|o| format!("unlocked-by:{}", o.name))
        .collect();
    match quorum::rotate(uri, unlock, m, officers) {
        Ok(cfg) => {
            let mut s = subjects(label, &cfg);
            s.extend(unlockers);
            audit(policy, "ceremony.rotate", s, "ok")?;
            Ok(cfg)
        }
        Err(e) => {
            let mut s = vec![format!("token:{label}")];
            s.extend(unlockers);
            audit(policy, "ceremony.rotate", s, &format!("failed: {e}"))?;
            Err(StationError::failed(e))
        }
    }
}
