//! Making keys where a key reference says: a file (development), a token or
//! KMS. The new key never leaves its store.

use firmware::image::AnyImageKey;
use signer::keys::{generate_file_image_key, kms, pkcs11, KeyType};
use signer::KeyRef;

use crate::station::error::StationError;

/// Generate a key of type `kind` where `key` says; `force` replaces a key
/// file. Returns the public key and the reference that names the new key.
pub(crate) fn generate(
    key: &KeyRef,
    kind: KeyType,
    force: bool,
) -> Result<(AnyImageKey, KeyRef), StationError> {
    match key {
        KeyRef::File(path) => {
            if path.exists() && !force {
                return Err(StationError::usage_msg(format!(
                    "{} already exists; refusing to replace a key (use --force)",
                    path.display()
                )));
            }
            Ok((
                generate_file_image_key(path, kind).map_err(StationError::failed)?,
                key.clone(),
            ))
        }
        KeyRef::Pkcs11(uri) => {
            if force {
                return Err(StationError::usage_msg(
                    "--force does not apply to HSM keys: keys in a token are never replaced",
                ));
            }
            let (public, named) = pkcs11::generate(uri, kind).map_err(StationError::failed)?;
            Ok((public, KeyRef::Pkcs11(named)))
        }
        KeyRef::AwsKms(r) => {
            if force {
                return Err(StationError::usage_msg(
                    "--force does not apply to KMS keys: aliases are never moved",
                ));
            }
            let (public, _arn) = kms::generate(r, kind).map_err(StationError::failed)?;
            Ok((public, key.clone()))
        }
        #[allow(unreachable_patterns)]
        other => Err(StationError::usage_msg(format!(
            "cannot generate {other}: not supported by this build"
        ))),
    }
}

/// Open `key` for signing. With officers in `unlock` and the key in a
/// quorum-unlocked token, their shares unlock it (`docs/quorum.md`);
/// otherwise its PIN source opens it.
pub(crate) fn open_key(
    key: &KeyRef,
    unlock: &[signer::keys::quorum::Officer],
) -> Result<Box<dyn signer::Signer>, crate::station::error::StationError> {
    use crate::station::error::StationError;
    if let KeyRef::Pkcs11(uri) = key {
        if !unlock.is_empty()
            && signer::keys::quorum::config(uri)
                .map_err(StationError::failed)?
                .is_some()
        {
            return signer::keys::quorum::open_signer(key, unlock).map_err(StationError::usage);
        }
    }
    signer::open_signer(key).map_err(StationError::usage)
}
