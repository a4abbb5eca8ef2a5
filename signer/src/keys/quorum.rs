//! Quorum-unlocked tokens (`docs/quorum.md`): a signing token whose user PIN
//! and SO PIN are random values no person ever sees, split with Shamir's
//! scheme (the `blahaj` crate, GF(256)) into one share per officer, each
//! share a private data object in that officer's own token. Using a key in
//! the token takes M shares, each read after its officer logs in to their
//! token; the PIN is rebuilt in memory, used to log in for one job and wiped.
//!
//! In the signing token, a public data object (`CKA_LABEL` [`CONFIG_LABEL`])
//! says that the token is quorum-unlocked, with the threshold and the
//! officers (names and token labels), so that anyone can see it without
//! logging in. In each officer's token, a private data object (`CKA_LABEL`
//! `nrf-fleet quorum share: <signing token label>`) holds `QSH1`, the
//! threshold, and the share (its x, then one y per secret byte).

use std::fmt;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::pkcs11::{open_session, resolve_pin};
use super::{Signer, SignerError};
use crate::key_ref::{PinSource, Pkcs11Uri, TokenSelector};
use crate::KeyRef;

/// Label of the public object that marks a quorum-unlocked token.
pub const CONFIG_LABEL: &str = "nrf-fleet quorum";
/// `CKA_APPLICATION` of the objects this module writes.
const APPLICATION: &[u8] = b"nrf-fleet keytool";
/// Magic of a stored share.
const SHARE_MAGIC: &[u8; 4] = b"QSH1";
/// Random bytes behind each PIN (the PIN is their hex: 64 characters).
const PIN_BYTES: usize = 32;

/// An officer: a name and the officer's own token (its URI may carry a
/// `pin-source`; without one the officer is asked on the terminal).
#[derive(Clone)]
pub struct Officer {
    /// The officer's name (as in the policy).
    pub name: String,
    /// The officer's token.
    pub token: Pkcs11Uri,
}

impl fmt::Debug for Officer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Officer")
            .field("name", &self.name)
            .field("token", &self.token.to_string())
            .finish()
    }
}

/// What the signing token publishes about its quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumConfig {
    /// Format version (1).
    pub version: u32,
    /// Shares needed.
    pub threshold: u8,
    /// The officers holding a share, in share order.
    pub officers: Vec<OfficerEntry>,
}

/// One officer of a quorum, as the signing token lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerEntry {
    /// The officer's name.
    pub name: String,
    /// The label of the officer's token.
    pub token: String,
}

fn err(key: &str, what: &str, e: impl fmt::Display) -> SignerError {
    SignerError::Backend {
        key: key.to_owned(),
        reason: format!("{what}: {e}"),
    }
}

fn share_label(signing_token: &str) -> String {
    format!("nrf-fleet quorum share: {signing_token}")
}

fn token_label(uri: &Pkcs11Uri, key: &str) -> Result<String, SignerError> {
    match &uri.token {
        TokenSelector::Label(l) => Ok(l.clone()),
        _ => Err(err(key, "token", "name the token by its label (token=…)")),
    }
}

/// The data objects with `label` visible in `session`.
fn data_objects(
    session: &Session,
    label: &str,
    key: &str,
) -> Result<Vec<cryptoki::object::ObjectHandle>, SignerError> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| err(key, "C_FindObjects", e))
}

fn value_of(
    session: &Session,
    obj: cryptoki::object::ObjectHandle,
    key: &str,
) -> Result<Zeroizing<Vec<u8>>, SignerError> {
    let attrs = session
        .get_attributes(obj, &[AttributeType::Value])
        .map_err(|e| err(key, "C_GetAttributeValue", e))?;
    for a in attrs {
        if let Attribute::Value(v) = a {
            return Ok(Zeroizing::new(v));
        }
    }
    Err(err(key, "data object", "no CKA_VALUE"))
}

/// The quorum a token publishes, if it is quorum-unlocked (read without
/// logging in).
pub fn config(token: &Pkcs11Uri) -> Result<Option<QuorumConfig>, SignerError> {
    let key = token.to_string();
    let session = open_session(token, &key, false)?;
    let found = data_objects(&session, CONFIG_LABEL, &key)?;
    let Some(obj) = found.first() else {
        return Ok(None);
    };
    let value = value_of(&session, *obj, &key)?;
    serde_json::from_slice(&value)
        .map(Some)
        .map_err(|e| err(&key, "quorum configuration", e))
}

/// The PINs behind a quorum: user PIN and SO PIN, hex of fresh random bytes.
struct Pins {
    secret: Zeroizing<[u8; 2 * PIN_BYTES]>,
}

impl Pins {
    fn random() -> Self {
        let mut secret = Zeroizing::new([0u8; 2 * PIN_BYTES]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, secret.as_mut());
        Self { secret }
    }

    fn from_secret(bytes: &[u8], key: &str) -> Result<Self, SignerError> {
        let mut secret = Zeroizing::new([0u8; 2 * PIN_BYTES]);
        if bytes.len() != secret.len() {
            return Err(err(key, "quorum", "the shares do not rebuild a PIN"));
        }
        secret.copy_from_slice(bytes);
        Ok(Self { secret })
    }

    fn user(&self) -> SecretString {
        SecretString::from(hex::encode(&self.secret[..PIN_BYTES]))
    }

    fn so(&self) -> SecretString {
        SecretString::from(hex::encode(&self.secret[PIN_BYTES..]))
    }
}

/// Log an officer in to their token: the URI's PIN source, else a prompt
/// naming the officer. Never the signing token's PIN sources.
fn officer_session(officer: &Officer) -> Result<Session, SignerError> {
    let key = format!("officer {} ({})", officer.name, officer.token);
    let session = open_session(&officer.token, &key, true)?;
    let pin = resolve_pin(&officer.token, &format!("officer {}", officer.name))?;
    session
        .login(UserType::User, Some(&pin))
        .map_err(|e| err(&key, "officer login failed", e))?;
    Ok(session)
}

/// Split fresh PINs for `signing` among `officers` (threshold `m`), store
/// each share in its officer's token, then set the signing token's user PIN
/// and SO PIN to them. `current_user` and `current_so` are the token's PINs
/// before the ceremony; nobody knows the new ones. Refuses a token already
/// quorum-unlocked (use [`rotate`]).
pub fn init(
    signing: &Pkcs11Uri,
    current_user: &SecretString,
    current_so: &SecretString,
    m: u8,
    officers: &[Officer],
) -> Result<QuorumConfig, SignerError> {
    let key = signing.to_string();
    if config(signing)?.is_some() {
        return Err(err(
            &key,
            "quorum",
            "the token is quorum-unlocked already; use `keytool ceremony rotate`",
        ));
    }
    let pins = Pins::random();
    let cfg = deal(signing, &pins, m, officers, false)?;
    // The configuration first (public, while the old user PIN still works),
    // then the PINs.
    let session = open_session(signing, &key, true)?;
    session
        .login(UserType::User, Some(current_user))
        .map_err(|e| err(&key, "login with the current user PIN failed", e))?;
    write_config(&session, &cfg, &key)?;
    session
        .set_pin(current_user, &pins.user())
        .map_err(|e| err(&key, "C_SetPIN (user)", e))?;
    let _ = session.logout();
    session
        .login(UserType::So, Some(current_so))
        .map_err(|e| err(&key, "SO login with the current SO PIN failed", e))?;
    session
        .set_pin(current_so, &pins.so())
        .map_err(|e| err(&key, "C_SetPIN (SO)", e))?;
    let _ = session.logout();
    Ok(cfg)
}

/// Re-split under the old quorum: M officers of the current set unlock the
/// PINs, fresh PINs are dealt to `new_officers` with threshold `m`, and the
/// token's PINs change to them. The old shares are removed from the old
/// officers' tokens that `current` opened.
pub fn rotate(
    signing: &Pkcs11Uri,
    current: &[Officer],
    m: u8,
    new_officers: &[Officer],
) -> Result<QuorumConfig, SignerError> {
    let key = signing.to_string();
    let old = unlock_pins(signing, current)?;
    let label = token_label(signing, &key)?;
    // Old shares out of the tokens of the officers present; a new officer's
    // old share is replaced below. A share left in the token of an absent
    // officer who leaves the quorum rebuilds nothing: the PINs change.
    for officer in current {
        let s = officer_session(officer)?;
        for obj in data_objects(&s, &share_label(&label), &key)? {
            s.destroy_object(obj)
                .map_err(|e| err(&key, "C_DestroyObject (old share)", e))?;
        }
        let _ = s.logout();
    }
    let pins = Pins::random();
    let cfg = deal(signing, &pins, m, new_officers, true)?;
    let session = open_session(signing, &key, true)?;
    session
        .login(UserType::User, Some(&old.user()))
        .map_err(|e| err(&key, "login with the rebuilt user PIN failed", e))?;
    for obj in data_objects(&session, CONFIG_LABEL, &key)? {
        session
            .destroy_object(obj)
            .map_err(|e| err(&key, "C_DestroyObject (old configuration)", e))?;
    }
    write_config(&session, &cfg, &key)?;
    session
        .set_pin(&old.user(), &pins.user())
        .map_err(|e| err(&key, "C_SetPIN (user)", e))?;
    let _ = session.logout();
    session
        .login(UserType::So, Some(&old.so()))
        .map_err(|e| err(&key, "SO login with the rebuilt SO PIN failed", e))?;
    session
        .set_pin(&old.so(), &pins.so())
        .map_err(|e| err(&key, "C_SetPIN (SO)", e))?;
    let _ = session.logout();
    Ok(cfg)
}

fn write_config(session: &Session, cfg: &QuorumConfig, key: &str) -> Result<(), SignerError> {
    let json = serde_json::to_vec(cfg).map_err(|e| err(key, "quorum configuration", e))?;
    session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(CONFIG_LABEL.as_bytes().to_vec()),
            Attribute::Application(APPLICATION.to_vec()),
            Attribute::Value(json),
        ])
        .map_err(|e| err(key, "C_CreateObject (quorum configuration)", e))?;
    Ok(())
}

/// Split `pins` for `officers`, store each share, and check that the first
/// `m` of them rebuild the PINs. With `replace` (a rotation), a share an
/// officer's token holds for this token already (the old quorum's) is
/// replaced; otherwise it stops the ceremony.
fn deal(
    signing: &Pkcs11Uri,
    pins: &Pins,
    m: u8,
    officers: &[Officer],
    replace: bool,
) -> Result<QuorumConfig, SignerError> {
    let key = signing.to_string();
    let label = token_label(signing, &key)?;
    let n = officers.len();
    if m < 2 || usize::from(m) > n || n > 255 {
        return Err(err(
            &key,
            "quorum",
            format!("a threshold of {m} with {n} officers: need 2 ≤ M ≤ N ≤ 255"),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut entries = Vec::new();
    for o in officers {
        let t = token_label(&o.token, &key)?;
        if t == label {
            return Err(err(
                &key,
                "quorum",
                "an officer's token is the signing token",
            ));
        }
        if !names.insert(o.name.clone()) {
            return Err(err(
                &key,
                "quorum",
                format!("officer {} named twice", o.name),
            ));
        }
        entries.push(OfficerEntry {
            name: o.name.clone(),
            token: t,
        });
    }
    let shares: Vec<blahaj::Share> = blahaj::Sharks(m).dealer(&pins.secret[..]).take(n).collect();
    for (officer, share) in officers.iter().zip(&shares) {
        let s = officer_session(officer)?;
        let old = data_objects(&s, &share_label(&label), &key)?;
        if replace {
            for obj in old {
                s.destroy_object(obj)
                    .map_err(|e| err(&key, "C_DestroyObject (old share)", e))?;
            }
        } else if !old.is_empty() {
            return Err(err(
                &key,
                "quorum",
                format!(
                    "officer {}'s token already holds a share for this token",
                    officer.name
                ),
            ));
        }
        let mut value = Zeroizing::new(Vec::with_capacity(5 + 1 + pins.secret.len()));
        value.extend_from_slice(SHARE_MAGIC);
        value.push(m);
        value.extend_from_slice(&Zeroizing::new(Vec::<u8>::from(share)));
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Label(share_label(&label).into_bytes()),
            Attribute::Application(APPLICATION.to_vec()),
            Attribute::Value(value.to_vec()),
        ])
        .map_err(|e| {
            err(
                &key,
                &format!("storing officer {}'s share", officer.name),
                e,
            )
        })?;
        let _ = s.logout();
    }
    let rebuilt = blahaj::Sharks(m)
        .recover(&shares[..usize::from(m)])
        .map_err(|e| err(&key, "quorum", e))?;
    if rebuilt.as_slice() != &pins.secret[..] {
        return Err(err(&key, "quorum", "the shares do not rebuild the PINs"));
    }
    Ok(QuorumConfig {
        version: 1,
        threshold: m,
        officers: entries,
    })
}

/// Rebuild the token's PINs from the shares of `officers` (each logs in to
/// their own token); at least the threshold of them, all listed in the
/// token's quorum.
fn unlock_pins(signing: &Pkcs11Uri, officers: &[Officer]) -> Result<Pins, SignerError> {
    let key = signing.to_string();
    let cfg =
        config(signing)?.ok_or_else(|| err(&key, "quorum", "the token is not quorum-unlocked"))?;
    let label = token_label(signing, &key)?;
    let mut shares = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for officer in officers {
        let listed = cfg.officers.iter().any(|e| {
            e.name == officer.name
                && token_label(&officer.token, &key).ok() == Some(e.token.clone())
        });
        if !listed {
            return Err(err(
                &key,
                "quorum",
                format!(
                    "{} (that token) holds no share of this token's quorum",
                    officer.name
                ),
            ));
        }
        if !seen.insert(officer.name.clone()) {
            continue;
        }
        let s = officer_session(officer)?;
        let found = data_objects(&s, &share_label(&label), &key)?;
        let obj = found.first().ok_or_else(|| {
            err(
                &key,
                "quorum",
                format!(
                    "officer {}'s token holds no share for this token",
                    officer.name
                ),
            )
        })?;
        let value = value_of(&s, *obj, &key)?;
        let _ = s.logout();
        let share = value
            .strip_prefix(&SHARE_MAGIC[..])
            .and_then(|rest| rest.split_first())
            .filter(|(t, _)| **t == cfg.threshold)
            .and_then(|(_, bytes)| blahaj::Share::try_from(bytes).ok())
            .ok_or_else(|| {
                err(
                    &key,
                    "quorum",
                    format!("officer {}'s share is malformed", officer.name),
                )
            })?;
        shares.push(share);
    }
    if shares.len() < usize::from(cfg.threshold) {
        return Err(err(
            &key,
            "quorum",
            format!(
                "{} of {} officers' shares given; this token needs {}",
                shares.len(),
                cfg.officers.len(),
                cfg.threshold
            ),
        ));
    }
    let secret = Zeroizing::new(
        blahaj::Sharks(cfg.threshold)
            .recover(&shares)
            .map_err(|e| err(&key, "quorum", e))?,
    );
    Pins::from_secret(&secret, &key)
}

/// A quorum-unlocked token, unlocked for the jobs of one command: the user
/// PIN rebuilt from the officers' shares, held in memory only (wiped on
/// drop). Each job logs in and out again.
pub struct Unlocked {
    token: Pkcs11Uri,
}

impl fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.token.clone();
        shown.pin = None;
        f.debug_struct("Unlocked")
            .field("token", &shown.to_string())
            .finish_non_exhaustive()
    }
}

/// Unlock the quorum token `token` names with the shares of `officers`.
pub fn unlock(token: &Pkcs11Uri, officers: &[Officer]) -> Result<Unlocked, SignerError> {
    let pins = unlock_pins(token, officers)?;
    let mut unlocked = token.clone();
    unlocked.object = None;
    unlocked.id = None;
    unlocked.pin = Some(PinSource::Value(pins.user()));
    Ok(Unlocked { token: unlocked })
}

impl Unlocked {
    /// Open `key` (a key in this token) for signing; it logs out when
    /// dropped.
    pub fn signer(&self, key: &KeyRef) -> Result<Box<dyn Signer>, SignerError> {
        let KeyRef::Pkcs11(uri) = key else {
            return Err(err(
                &key.to_string(),
                "quorum",
                "only pkcs11: keys can be quorum-unlocked",
            ));
        };
        if uri.token != self.token.token {
            return Err(err(
                &key.to_string(),
                "quorum",
                "the key is in another token",
            ));
        }
        let mut with_pin = uri.clone();
        with_pin.pin = self.token.pin.clone();
        let signer =
            super::pkcs11::Pkcs11Key::open_logged_out_on_drop(KeyRef::Pkcs11(with_pin), key)?;
        Ok(Box::new(signer))
    }

    /// Run `f` in a read-write session logged in as the user (logging out
    /// after, unless another holder of this token in the process was logged
    /// in already).
    fn logged_in<T>(
        &self,
        f: impl FnOnce(&Session, &str) -> Result<T, SignerError>,
    ) -> Result<T, SignerError> {
        let mut shown = self.token.clone();
        shown.pin = None;
        let key = shown.to_string();
        let session = open_session(&self.token, &key, true)?;
        let pin = resolve_pin(&self.token, &key)?;
        let ours = match session.login(UserType::User, Some(&pin)) {
            Ok(()) => true,
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => false,
            Err(e) => return Err(err(&key, "login with the rebuilt PIN failed", e)),
        };
        let out = f(&session, &key);
        if ours {
            let _ = session.logout();
        }
        out
    }

    /// The value of the private data object `label` in the token, if any.
    pub fn read_private(&self, label: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SignerError> {
        self.logged_in(|s, key| {
            let found = data_objects(s, label, key)?;
            match found.first() {
                Some(obj) => value_of(s, *obj, key).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Store `value` as the private data object `label` (replacing one
    /// there): something only the quorum can rewrite.
    pub fn write_private(&self, label: &str, value: &[u8]) -> Result<(), SignerError> {
        self.logged_in(|s, key| {
            let old = data_objects(s, label, key)?;
            s.create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Application(APPLICATION.to_vec()),
                Attribute::Value(value.to_vec()),
            ])
            .map_err(|e| err(key, &format!("C_CreateObject ({label})"), e))?;
            for obj in old {
                s.destroy_object(obj)
                    .map_err(|e| err(key, &format!("C_DestroyObject (old {label})"), e))?;
            }
            Ok(())
        })
    }
}

/// Open a key in a quorum-unlocked token: the officers' shares rebuild the
/// user PIN in memory, which logs in for this signer only; the signer logs
/// out when dropped, and the PIN is wiped.
pub fn open_signer(key: &KeyRef, officers: &[Officer]) -> Result<Box<dyn Signer>, SignerError> {
    let KeyRef::Pkcs11(uri) = key else {
        return Err(err(
            &key.to_string(),
            "quorum",
            "only pkcs11: keys can be quorum-unlocked",
        ));
    };
    unlock(uri, officers)?.signer(key)
}
