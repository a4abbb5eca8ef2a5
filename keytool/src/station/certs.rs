//! Issuing X.509 certificates under the policy: the keys must be CA keys
//! (checked on use), and the certificate is written only once its audit entry
//! is.

use std::path::Path;

use policies::policy::Role;
use signer::certs;
use signer::keys::Signer;
use signer::KeyRef;

use crate::station::error::StationError;
use crate::station::session::Session;

/// Under a policy, `key` must be a CA key; the certificate is written only
/// once its audit entry is.
pub(crate) fn issue(
    policy: Option<&Path>,
    keys: &[(&KeyRef, &dyn Signer)],
    mut subjects: Vec<String>,
    output: &Path,
    make: impl FnOnce() -> Result<String, certs::CertError>,
) -> Result<(), StationError> {
    let Some(policy) = policy else {
        let pem = make().map_err(StationError::failed)?;
        return signer::atomic::write(output, pem.as_bytes()).map_err(StationError::failed);
    };
    let mut session = Session::open(policy)?;
    let mut why = Vec::new();
    for (uri, key) in keys {
        match session.check_key(Role::Ca, uri, *key) {
            Ok(name) => subjects.push(format!("key:{name}")),
            Err(w) => why.extend(w),
        }
    }
    if !why.is_empty() {
        return Err(session.refuse("cert.issue", subjects, &why));
    }
    let pem = make().map_err(StationError::failed)?;
    session.write_recorded(output, pem.as_bytes(), "cert.issue", subjects)?;
    session.close()
}
