//! Keys in a PKCS#11 token (an HSM, a smart card, SoftHSM2 in tests).
//!
//! The private key never leaves the token: we ask it to sign a SHA-256 digest
//! with `CKM_ECDSA` and get `r ‖ s` back. Each module is loaded and
//! `C_Initialize`d once per process (SoftHSM's initialisation is not safe to
//! race), and a key keeps a small pool of sessions so that several threads
//! can sign at once.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use firmware::P256PublicKey;
use secrecy::SecretString;

use super::{EcdsaSignature, Signer, SignerError};
use crate::key_ref::{PinSource, Pkcs11Uri, TokenSelector};
use crate::KeyRef;

/// DER of the P-256 curve OID, as `CKA_EC_PARAMS` holds it.
const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Environment variable naming the module when the URI has no `module-path`.
pub const MODULE_ENV: &str = "PKCS11_MODULE";
/// Environment variable holding the PIN when the URI names no source.
pub const PIN_ENV: &str = "PKCS11_PIN";

fn backend(key: &str, what: &str, e: impl fmt::Display) -> SignerError {
    SignerError::Backend {
        key: key.to_owned(),
        reason: format!("{what}: {e}"),
    }
}

/// The module a URI names, never a guessed default.
fn module_path(uri: &Pkcs11Uri, key: &str) -> Result<PathBuf, SignerError> {
    if let Some(p) = &uri.module_path {
        return Ok(p.clone());
    }
    std::env::var_os(MODULE_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| SignerError::Backend {
            key: key.to_owned(),
            reason: format!("no PKCS#11 module: add ?module-path=… to the URI or set {MODULE_ENV}"),
        })
}

/// The process-wide context of a module: loaded and `C_Initialize`d on first
/// use, shared afterwards (a second `C_Initialize` would fail or race).
pub fn context(path: &Path, key: &str) -> Result<Pkcs11, SignerError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    if !path.exists() {
        return Err(backend(
            key,
            "PKCS#11 module",
            format!("{} does not exist", path.display()),
        ));
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| backend(key, &format!("cannot load {}", path.display()), e))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| backend(key, "C_Initialize", e))?;
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

fn find_slot(ctx: &Pkcs11, token: &TokenSelector, key: &str) -> Result<Slot, SignerError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| backend(key, "C_GetSlotList", e))?;
    let mut labels = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| backend(key, "C_GetTokenInfo", e))?;
        let hit = match token {
            TokenSelector::Label(l) => info.label().trim_end() == l,
            TokenSelector::Serial(s) => info.serial_number().trim_end() == s,
            TokenSelector::SlotId(n) => slot.id() == *n,
        };
        if hit {
            return Ok(slot);
        }
        labels.push(info.label().trim_end().to_owned());
    }
    Err(SignerError::Backend {
        key: key.to_owned(),
        reason: format!(
            "no such token (tokens present: {})",
            if labels.is_empty() {
                "none".into()
            } else {
                labels.join(", ")
            }
        ),
    })
}

/// The PIN from the URI's source, `PKCS11_PIN`, or a prompt on a terminal.
pub(crate) fn resolve_pin(uri: &Pkcs11Uri, key: &str) -> Result<SecretString, SignerError> {
    match &uri.pin {
        Some(PinSource::Value(v)) => Ok(v.clone()),
        Some(PinSource::Env(var)) => std::env::var(var)
            .map(SecretString::from)
            .map_err(|_| backend(key, "PIN", format!("environment variable {var} is not set"))),
        Some(PinSource::File(p)) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| backend(key, &format!("PIN file {}", p.display()), e))?,
            );
            Ok(SecretString::from(
                text.lines().next().unwrap_or_default().to_owned(),
            ))
        }
        None => {
            if let Ok(pin) = std::env::var(PIN_ENV) {
                return Ok(SecretString::from(pin));
            }
            if std::io::stdin().is_terminal() {
                let pin = rpassword::prompt_password(format!("PIN for {key}: "))
                    .map_err(|e| backend(key, "PIN prompt", e))?;
                return Ok(SecretString::from(pin));
            }
            Err(backend(
                key,
                "PIN",
                format!(
                    "no PIN: add ?pin-source=… to the URI, set {PIN_ENV}, or run on a terminal"
                ),
            ))
        }
    }
}

/// Object search template for the key the URI names.
fn template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(class), Attribute::KeyType(KeyType::EC)];
    if let Some(label) = &uri.object {
        t.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

fn find_one(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
    key: &str,
) -> Result<Option<ObjectHandle>, SignerError> {
    let found = session
        .find_objects(&template(uri, class))
        .map_err(|e| backend(key, "C_FindObjects", e))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(backend(
            key,
            "ambiguous",
            format!("{} keys match; add object= or id=", many.len()),
        )),
    }
}

/// Read a P-256 public key from an object's `CKA_EC_PARAMS` / `CKA_EC_POINT`.
fn read_public(
    session: &Session,
    obj: ObjectHandle,
    key: &str,
) -> Result<P256PublicKey, SignerError> {
    let attrs = session
        .get_attributes(obj, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|e| backend(key, "C_GetAttributeValue", e))?;
    let mut params = None;
    let mut point = None;
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    if params.as_deref() != Some(&P256_EC_PARAMS[..]) {
        return Err(SignerError::WrongKeyType {
            key: key.to_owned(),
            found: "EC key on another curve".into(),
        });
    }
    let point = point.ok_or_else(|| backend(key, "public key", "CKA_EC_POINT missing"))?;
    // The standard form is a DER OCTET STRING around the point; some tokens
    // return the bare point.
    let sec1 = match point.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        bare => bare,
    };
    P256PublicKey::from_sec1(sec1).map_err(|e| backend(key, "public key", e))
}

/// A P-256 key in a PKCS#11 token, logged in.
pub struct Pkcs11Key {
    key_ref: KeyRef,
    ctx: Pkcs11,
    slot: Slot,
    private: ObjectHandle,
    public: P256PublicKey,
    verifier: p256::ecdsa::VerifyingKey,
    sessions: Mutex<Vec<Session>>,
    /// Log out when dropped (a quorum-unlocked token: one job per login).
    logout_on_drop: bool,
}

impl Drop for Pkcs11Key {
    fn drop(&mut self) {
        if self.logout_on_drop {
            let sessions = self.sessions.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = sessions.first() {
                let _ = s.logout();
            }
        }
    }
}

/// A session on the token `uri` names, not logged in.
pub(crate) fn open_session(uri: &Pkcs11Uri, key: &str, rw: bool) -> Result<Session, SignerError> {
    Ok(open_token(uri, key, rw, false)?.session)
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("key", &self.key_ref.to_string())
            .finish_non_exhaustive()
    }
}

/// An open token: context, slot and a logged-in session.
struct Token {
    ctx: Pkcs11,
    slot: Slot,
    session: Session,
}

fn open_token(uri: &Pkcs11Uri, key: &str, rw: bool, login: bool) -> Result<Token, SignerError> {
    let ctx = context(&module_path(uri, key)?, key)?;
    let slot = find_slot(&ctx, &uri.token, key)?;
    let session = if rw {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(|e| backend(key, "C_OpenSession", e))?;
    if login {
        let pin = resolve_pin(uri, key)?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => return Err(backend(key, "login failed", e)),
        }
    }
    Ok(Token { ctx, slot, session })
}

impl Pkcs11Key {
    /// Open the key a `pkcs11:` reference names, logging in to its token.
    pub fn open(key_ref: KeyRef) -> Result<Self, SignerError> {
        let KeyRef::Pkcs11(uri) = &key_ref else {
            return Err(backend(
                &key_ref.to_string(),
                "not a pkcs11: key",
                "wrong backend",
            ));
        };
        let key = key_ref.to_string();
        if uri.object.is_none() && uri.id.is_none() {
            return Err(backend(
                &key,
                "key",
                "the URI names a token but no key: add object= or id=",
            ));
        }
        let token = match open_token(uri, &key, false, true) {
            Err(e) if uri.pin.is_none() || matches!(uri.pin, Some(PinSource::File(_))) => {
                // A quorum-unlocked token has no PIN anyone knows: say so.
                if super::quorum::config(uri).ok().flatten().is_some() {
                    return Err(backend(
                        &key,
                        "login",
                        "this token is quorum-unlocked: its PIN is split among officers and \
                         no PIN source opens it; use a workflow that collects their shares \
                         (keytool release sign --unlock NAME=URI …, docs/quorum.md)",
                    ));
                }
                return Err(e);
            }
            other => other?,
        };
        let private = find_one(&token.session, uri, ObjectClass::PRIVATE_KEY, &key)?
            .ok_or_else(|| backend(&key, "key", "no such EC private key in the token"))?;
        let public = match find_one(&token.session, uri, ObjectClass::PUBLIC_KEY, &key)? {
            Some(p) => read_public(&token.session, p, &key)?,
            None => read_public(&token.session, private, &key)?,
        };
        let verifier = super::verifier(&key_ref, &public)?;
        Ok(Self {
            key_ref,
            ctx: token.ctx,
            slot: token.slot,
            private,
            public,
            verifier,
            sessions: Mutex::new(vec![token.session]),
            logout_on_drop: false,
        })
    }

    /// Open with the PIN `unlocked` carries (rebuilt from a quorum), naming
    /// the key as `shown` in messages; logs out when dropped.
    pub(crate) fn open_logged_out_on_drop(
        unlocked: KeyRef,
        shown: &KeyRef,
    ) -> Result<Self, SignerError> {
        let mut key = Self::open(unlocked)?;
        key.key_ref = shown.clone();
        key.logout_on_drop = true;
        Ok(key)
    }

    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, SignerError>,
    ) -> Result<T, SignerError> {
        let pooled = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let session = match pooled {
            Some(s) => s,
            // Login state is per token, so a new session is already logged in.
            None => self
                .ctx
                .open_ro_session(self.slot)
                .map_err(|e| backend(&self.key_ref.to_string(), "C_OpenSession", e))?,
        };
        let result = f(&session);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        result
    }
}

impl Signer for Pkcs11Key {
    fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }

    fn public_key(&self) -> Result<P256PublicKey, SignerError> {
        Ok(self.public)
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<EcdsaSignature, SignerError> {
        let raw = self.with_session(|s| {
            s.sign(&Mechanism::Ecdsa, self.private, digest)
                .map_err(|e| SignerError::SignFailed {
                    key: self.key_ref.to_string(),
                    reason: e.to_string(),
                })
        })?;
        let sig = EcdsaSignature::from_raw(&raw).ok_or_else(|| SignerError::SignFailed {
            key: self.key_ref.to_string(),
            reason: format!("token returned a {}-byte signature, expected 64", raw.len()),
        })?;
        super::check_own_signature(&self.key_ref, &self.verifier, digest, sig)
    }

    /// The private key must be sensitive and always have been, never
    /// extractable, generated on the token (`CKA_LOCAL`), and usable for
    /// signing only.
    fn production_problems(&self) -> Result<Vec<String>, SignerError> {
        let key = self.key_ref.to_string();
        let attrs = self.with_session(|s| {
            s.get_attributes(
                self.private,
                &[
                    AttributeType::Sensitive,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Extractable,
                    AttributeType::Local,
                    AttributeType::Sign,
                    AttributeType::Derive,
                    AttributeType::Decrypt,
                    AttributeType::Unwrap,
                ],
            )
            .map_err(|e| backend(&key, "C_GetAttributeValue", e))
        })?;
        let mut problems = Vec::new();
        let mut need = |ok: bool, what: &str| {
            if !ok {
                problems.push(format!("{key}: {what}"));
            }
        };
        let mut seen = 0;
        for a in attrs {
            seen += 1;
            match a {
                Attribute::Sensitive(v) => need(v, "not CKA_SENSITIVE"),
                Attribute::AlwaysSensitive(v) => {
                    need(v, "not CKA_ALWAYS_SENSITIVE: it was once readable")
                }
                Attribute::NeverExtractable(v) => {
                    need(v, "not CKA_NEVER_EXTRACTABLE: it was once extractable")
                }
                Attribute::Extractable(v) => need(!v, "CKA_EXTRACTABLE: it can be exported"),
                Attribute::Local(v) => {
                    need(v, "not CKA_LOCAL: imported, not generated on the token")
                }
                Attribute::Sign(v) => need(v, "cannot sign"),
                Attribute::Derive(v) => need(!v, "also allows key derivation (CKA_DERIVE)"),
                Attribute::Decrypt(v) => need(!v, "also allows decryption (CKA_DECRYPT)"),
                Attribute::Unwrap(v) => need(!v, "also allows unwrapping (CKA_UNWRAP)"),
                _ => seen -= 1,
            }
        }
        if seen < 9 {
            problems.push(format!(
                "{key}: the token did not show every protection attribute"
            ));
        }
        Ok(problems)
    }
}

/// The public key a `pkcs11:` reference names, read without logging in when
/// the token keeps a public key object.
pub fn public_key(uri: &Pkcs11Uri, key: &str) -> Result<P256PublicKey, SignerError> {
    let token = open_token(uri, key, false, false)?;
    if let Some(p) = find_one(&token.session, uri, ObjectClass::PUBLIC_KEY, key)? {
        return read_public(&token.session, p, key);
    }
    drop(token);
    Pkcs11Key::open(KeyRef::Pkcs11(uri.clone()))?.public_key()
}

/// Generate a P-256 key pair inside the token: private, sensitive, never
/// extractable, for signing only. Refuses a label or id already in use.
/// Returns the public key and the key's URI (with its `id`).
pub fn generate(uri: &Pkcs11Uri) -> Result<(P256PublicKey, Pkcs11Uri), SignerError> {
    let key = uri.to_string();
    let label = uri
        .object
        .clone()
        .ok_or_else(|| backend(&key, "key", "give the new key's label as object="))?;
    let token = open_token(uri, &key, true, true)?;
    let s = &token.session;
    for (what, t) in [
        ("label", vec![Attribute::Label(label.as_bytes().to_vec())]),
        (
            "id",
            uri.id.iter().map(|id| Attribute::Id(id.clone())).collect(),
        ),
    ] {
        if t.is_empty() {
            continue;
        }
        let existing = s
            .find_objects(&t)
            .map_err(|e| backend(&key, "C_FindObjects", e))?;
        if !existing.is_empty() {
            return Err(backend(
                &key,
                "refusing to overwrite",
                format!("an object with this {what} already exists"),
            ));
        }
    }
    let id = match &uri.id {
        Some(id) => id.clone(),
        None => {
            let mut id = vec![0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            id
        }
    };
    let common = [
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.clone()),
    ];
    let mut public_t = vec![
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::EcParams(P256_EC_PARAMS.to_vec()),
        Attribute::Private(false),
    ];
    public_t.extend(common.iter().cloned());
    let mut private_t = vec![
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    private_t.extend(common.iter().cloned());
    let (public, _) = s
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public_t, &private_t)
        .map_err(|e| backend(&key, "C_GenerateKeyPair", e))?;
    let pk = read_public(s, public, &key)?;
    let mut named = uri.clone();
    named.id = Some(id);
    named.pin = match &uri.pin {
        Some(PinSource::Value(_)) => None,
        other => other.clone(),
    };
    Ok((pk, named))
}

/// A key found in a token.
#[derive(Debug, Clone)]
pub struct ListedKey {
    /// Its URI (token, label, id; the module path and PIN source of the query).
    pub uri: Pkcs11Uri,
    /// Its public key, if readable.
    pub public: Option<P256PublicKey>,
}

/// List the EC private keys in the token a URI names.
pub fn list(uri: &Pkcs11Uri) -> Result<Vec<ListedKey>, SignerError> {
    let key = uri.to_string();
    let token = open_token(uri, &key, false, true)?;
    let s = &token.session;
    let mut query = uri.clone();
    query.object = None;
    query.id = None;
    let handles = s
        .find_objects(&template(&query, ObjectClass::PRIVATE_KEY))
        .map_err(|e| backend(&key, "C_FindObjects", e))?;
    let mut out = Vec::new();
    for h in handles {
        let attrs = s
            .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
            .map_err(|e| backend(&key, "C_GetAttributeValue", e))?;
        let mut entry = query.clone();
        entry.pin = match &uri.pin {
            Some(PinSource::Value(_)) => None,
            other => other.clone(),
        };
        for a in attrs {
            match a {
                Attribute::Label(l) => {
                    entry.object = Some(String::from_utf8_lossy(&l).into_owned())
                }
                Attribute::Id(i) => entry.id = Some(i),
                _ => {}
            }
        }
        let public = match find_one(s, &entry, ObjectClass::PUBLIC_KEY, &key) {
            Ok(Some(p)) => read_public(s, p, &key).ok(),
            _ => read_public(s, h, &key).ok(),
        };
        out.push(ListedKey { uri: entry, public });
    }
    out.sort_by(|a, b| a.uri.object.cmp(&b.uri.object));
    Ok(out)
}
