//! Keys in a PKCS#11 token (an HSM, a smart card, SoftHSM2 in tests).
//!
//! The private key never leaves the token: we ask it to sign an image hash
//! with `CKM_ECDSA` (P-256, P-384; `r ‖ s` comes back), `CKM_RSA_PKCS_PSS`
//! (SHA-256, MGF1-SHA-256, 32-byte salt) or `CKM_EDDSA` (the hash, or the
//! whole signed region of a pure image, is the message). Each module is loaded and
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
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use firmware::image::keys::{HashAlg, Signed};
use firmware::image::AnyImageKey;
use firmware::P256PublicKey;
use secrecy::SecretString;

use super::{EcdsaSignature, KeyType, Signer, SignerError};
use crate::key_ref::{PinSource, Pkcs11Uri, TokenSelector};
use crate::KeyRef;

/// DER of the P-256 curve OID, as `CKA_EC_PARAMS` holds it.
const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 curve OID (secp384r1).
const P384_EC_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the id-Ed25519 OID (RFC 8410), `CKA_EC_PARAMS` of an Edwards key.
const ED25519_EC_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// The PKCS#11 3.0 alternative: the curve name as a PrintableString.
const ED25519_EC_PARAMS_NAME: &[u8] = b"\x13\x0cedwards25519";

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
    let mut t = vec![Attribute::Class(class)];
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

/// Strip the DER OCTET STRING PKCS#11 puts around `CKA_EC_POINT` (some
/// tokens return the bare point).
fn unwrap_octet_string(point: &[u8], len: usize) -> &[u8] {
    match point {
        [0x04, n, rest @ ..] if usize::from(*n) == len && rest.len() == len => rest,
        [0x04, 0x81, n, rest @ ..] if usize::from(*n) == len && rest.len() == len => rest,
        bare => bare,
    }
}

/// Read an object's public key: `CKA_KEY_TYPE`, then `CKA_EC_PARAMS` and
/// `CKA_EC_POINT` (EC, Edwards) or `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT`
/// (RSA).
fn read_public(
    session: &Session,
    obj: ObjectHandle,
    key: &str,
) -> Result<AnyImageKey, SignerError> {
    use cryptoki::object::KeyType as Ck;
    let get = |types: &[AttributeType]| {
        session
            .get_attributes(obj, types)
            .map_err(|e| backend(key, "C_GetAttributeValue", e))
    };
    let mut kind = None;
    for a in get(&[AttributeType::KeyType])? {
        if let Attribute::KeyType(k) = a {
            kind = Some(k);
        }
    }
    let wrong = |found: String| SignerError::WrongKeyType {
        key: key.to_owned(),
        found,
    };
    let invalid = |e: firmware::keys::KeyError| backend(key, "public key", e);
    match kind {
        Some(k) if k == Ck::RSA => {
            let (mut n, mut e) = (None, None);
            for a in get(&[AttributeType::Modulus, AttributeType::PublicExponent])? {
                match a {
                    Attribute::Modulus(v) => n = Some(v),
                    Attribute::PublicExponent(v) => e = Some(v),
                    _ => {}
                }
            }
            let (Some(n), Some(e)) = (n, e) else {
                return Err(backend(key, "public key", "CKA_MODULUS missing"));
            };
            firmware::keys::rsa::RsaPublicKey::from_components(&n, &e)
                .map(AnyImageKey::Rsa)
                .map_err(|_| wrong(format!("RSA-{}", n.len() * 8)))
        }
        Some(k) if k == Ck::EC || k == Ck::EC_EDWARDS => {
            let (mut params, mut point) = (None, None);
            for a in get(&[AttributeType::EcParams, AttributeType::EcPoint])? {
                match a {
                    Attribute::EcParams(p) => params = Some(p),
                    Attribute::EcPoint(p) => point = Some(p),
                    _ => {}
                }
            }
            let point = point.ok_or_else(|| backend(key, "public key", "CKA_EC_POINT missing"))?;
            match params.as_deref() {
                Some(p) if p == P256_EC_PARAMS => {
                    P256PublicKey::from_sec1(unwrap_octet_string(&point, 65))
                        .map(AnyImageKey::P256)
                        .map_err(invalid)
                }
                Some(p) if p == P384_EC_PARAMS => {
                    firmware::keys::p384::P384PublicKey::from_sec1(unwrap_octet_string(&point, 97))
                        .map(AnyImageKey::P384)
                        .map_err(invalid)
                }
                Some(p) if p == ED25519_EC_PARAMS || p == ED25519_EC_PARAMS_NAME => {
                    firmware::keys::ed25519::Ed25519PublicKey::from_bytes(unwrap_octet_string(
                        &point, 32,
                    ))
                    .map(AnyImageKey::Ed25519)
                    .map_err(invalid)
                }
                _ => Err(wrong("EC key on another curve".into())),
            }
        }
        Some(k) => Err(wrong(format!("{k} key"))),
        None => Err(backend(key, "public key", "CKA_KEY_TYPE missing")),
    }
}

/// A key of any image key type in a PKCS#11 token, logged in.
pub struct Pkcs11Key {
    key_ref: KeyRef,
    ctx: Pkcs11,
    slot: Slot,
    private: ObjectHandle,
    public: AnyImageKey,
    /// The fast P-256 verifier for digest signatures (P-256 keys only).
    verifier: Option<p256::ecdsa::VerifyingKey>,
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
            .ok_or_else(|| backend(&key, "key", "no such private key in the token"))?;
        let public = match find_one(&token.session, uri, ObjectClass::PUBLIC_KEY, &key)? {
            Some(p) => read_public(&token.session, p, &key)?,
            None => read_public(&token.session, private, &key)?,
        };
        let verifier = match &public {
            AnyImageKey::P256(p) => Some(super::verifier(&key_ref, p)?),
            _ => None,
        };
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

    fn sign_failed(&self, reason: impl fmt::Display) -> SignerError {
        SignerError::SignFailed {
            key: self.key_ref.to_string(),
            reason: reason.to_string(),
        }
    }

    /// `C_Sign` with `mechanism` over `data`, on a pooled session.
    fn sign_raw(&self, mechanism: &Mechanism<'_>, data: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.with_session(|s| {
            s.sign(mechanism, self.private, data)
                .map_err(|e| self.sign_failed(e))
        })
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
        match &self.public {
            AnyImageKey::P256(k) => Ok(*k),
            other => Err(super::not_p256(&self.key_ref, other)),
        }
    }

    fn image_key(&self) -> Result<AnyImageKey, SignerError> {
        Ok(self.public.clone())
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<EcdsaSignature, SignerError> {
        let Some(verifier) = &self.verifier else {
            return Err(super::not_p256(&self.key_ref, &self.public));
        };
        let raw = self.sign_raw(&Mechanism::Ecdsa, digest)?;
        let sig = EcdsaSignature::from_raw(&raw).ok_or_else(|| {
            self.sign_failed(format!(
                "token returned a {}-byte signature, expected 64",
                raw.len()
            ))
        })?;
        super::check_own_signature(&self.key_ref, verifier, digest, sig)
    }

    fn sign_image(&self, signed: Signed<'_>) -> Result<Vec<u8>, SignerError> {
        let kind = KeyType::of(&self.public);
        let unsupported = || super::unsupported_signing(&self.key_ref, kind, signed);
        let signature = match (kind, signed) {
            (KeyType::EcdsaP256, Signed::Digest(hash)) if hash.alg() == HashAlg::Sha256 => {
                let raw = self.sign_raw(&Mechanism::Ecdsa, hash.as_bytes())?;
                let sig = p256::ecdsa::Signature::from_slice(&raw)
                    .map_err(|_| self.sign_failed("the token returned a malformed signature"))?;
                sig.to_der().as_bytes().to_vec()
            }
            (KeyType::EcdsaP384, Signed::Digest(hash)) if hash.alg() == HashAlg::Sha384 => {
                let raw = self.sign_raw(&Mechanism::Ecdsa, hash.as_bytes())?;
                let sig = p384::ecdsa::Signature::from_slice(&raw)
                    .map_err(|_| self.sign_failed("the token returned a malformed signature"))?;
                sig.to_der().as_bytes().to_vec()
            }
            (KeyType::Ed25519, signed) => {
                let message = match signed {
                    Signed::Digest(hash) if kind.image_hashes(false).contains(&hash.alg()) => {
                        hash.as_bytes()
                    }
                    Signed::Digest(_) => return Err(unsupported()),
                    Signed::Pure(region) => region,
                };
                let params = cryptoki::mechanism::eddsa::EddsaParams::new(
                    cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
                );
                self.sign_raw(&Mechanism::Eddsa(params), message)?
            }
            (KeyType::Rsa2048 | KeyType::Rsa3072, Signed::Digest(hash))
                if hash.alg() == HashAlg::Sha256 =>
            {
                let params = cryptoki::mechanism::rsa::PkcsPssParams {
                    hash_alg: cryptoki::mechanism::MechanismType::SHA256,
                    mgf: cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA256,
                    s_len: (firmware::keys::rsa::PSS_SALT_LEN as u64).into(),
                };
                self.sign_raw(&Mechanism::RsaPkcsPss(params), hash.as_bytes())?
            }
            _ => return Err(unsupported()),
        };
        super::check_image_signature(&self.key_ref, &self.public, signed, signature)
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

/// The public key a `pkcs11:` reference names, of whatever type, read
/// without logging in when the token keeps a public key object.
pub fn image_key(uri: &Pkcs11Uri, key: &str) -> Result<AnyImageKey, SignerError> {
    let token = open_token(uri, key, false, false)?;
    if let Some(p) = find_one(&token.session, uri, ObjectClass::PUBLIC_KEY, key)? {
        return read_public(&token.session, p, key);
    }
    drop(token);
    Pkcs11Key::open(KeyRef::Pkcs11(uri.clone()))?.image_key()
}

/// [`image_key`] for a key that must be ECDSA P-256.
pub fn public_key(uri: &Pkcs11Uri, key: &str) -> Result<P256PublicKey, SignerError> {
    crate::public_key::require_p256(key, image_key(uri, key)?)
}

/// Generate a key pair of type `kind` inside the token: private, sensitive,
/// never extractable, for signing only (`CKM_EC_KEY_PAIR_GEN` on P-256 or
/// P-384, `CKM_EC_EDWARDS_KEY_PAIR_GEN`, `CKM_RSA_PKCS_KEY_PAIR_GEN` with
/// exponent 65537). Refuses a label or id already in use. Returns the public
/// key and the key's URI (with its `id`).
pub fn generate(uri: &Pkcs11Uri, kind: KeyType) -> Result<(AnyImageKey, Pkcs11Uri), SignerError> {
    generate_pair(uri, kind, false)
}

/// Generate a P-256 key-agreement key inside the token, for image
/// encryption (`image sign -E` wraps AES keys for it; `image wrap` unwraps
/// them with [`ecdh`]): private, sensitive, never extractable, `CKA_DERIVE`
/// only (it cannot sign).
pub fn generate_ecdh(uri: &Pkcs11Uri) -> Result<(P256PublicKey, Pkcs11Uri), SignerError> {
    let (public, named) = generate_pair(uri, KeyType::EcdsaP256, true)?;
    match public {
        AnyImageKey::P256(k) => Ok((k, named)),
        _ => unreachable!("a P-256 key was generated"),
    }
}

/// ECDH of the token's P-256 key-agreement key with `peer` (an uncompressed
/// SEC1 point), by `CKM_ECDH1_DERIVE`: the 32-byte shared secret (the x
/// coordinate). The derived value is a session object, read and destroyed.
pub fn ecdh(uri: &Pkcs11Uri, peer: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>, SignerError> {
    use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
    let key = uri.to_string();
    let token = open_token(uri, &key, false, true)?;
    let s = &token.session;
    let private = find_one(s, uri, ObjectClass::PRIVATE_KEY, &key)?
        .ok_or_else(|| backend(&key, "key", "no such private key in the token"))?;
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(cryptoki::object::KeyType::GENERIC_SECRET),
        Attribute::ValueLen(32u64.into()),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer));
    let derived = s
        .derive_key(&mechanism, private, &template)
        .map_err(|e| backend(&key, "C_DeriveKey (CKM_ECDH1_DERIVE)", e))?;
    let value = s.get_attributes(derived, &[AttributeType::Value]);
    let _ = s.destroy_object(derived);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    for a in value.map_err(|e| backend(&key, "C_GetAttributeValue", e))? {
        if let Attribute::Value(mut v) = a {
            if v.len() == 32 {
                out.copy_from_slice(&v);
            }
            zeroize::Zeroize::zeroize(&mut v);
            return Ok(out);
        }
    }
    Err(backend(&key, "ECDH", "the token returned no shared secret"))
}

fn generate_pair(
    uri: &Pkcs11Uri,
    kind: KeyType,
    agreement: bool,
) -> Result<(AnyImageKey, Pkcs11Uri), SignerError> {
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
    let (mechanism, type_attr) = match kind {
        KeyType::EcdsaP256 => (
            Mechanism::EccKeyPairGen,
            Attribute::EcParams(P256_EC_PARAMS.to_vec()),
        ),
        KeyType::EcdsaP384 => (
            Mechanism::EccKeyPairGen,
            Attribute::EcParams(P384_EC_PARAMS.to_vec()),
        ),
        KeyType::Ed25519 => (
            Mechanism::EccEdwardsKeyPairGen,
            Attribute::EcParams(ED25519_EC_PARAMS.to_vec()),
        ),
        KeyType::Rsa2048 | KeyType::Rsa3072 => (
            Mechanism::RsaPkcsKeyPairGen,
            Attribute::ModulusBits(
                (if kind == KeyType::Rsa3072 {
                    3072u64
                } else {
                    2048
                })
                .into(),
            ),
        ),
    };
    let mut public_t = vec![
        Attribute::Verify(!agreement),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        type_attr,
        Attribute::Private(false),
    ];
    if matches!(kind, KeyType::Rsa2048 | KeyType::Rsa3072) {
        public_t.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
    }
    public_t.extend(common.iter().cloned());
    let mut private_t = vec![
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(!agreement),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(agreement),
    ];
    private_t.extend(common.iter().cloned());
    let (public, _) = s
        .generate_key_pair(&mechanism, &public_t, &private_t)
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
    /// Its public key, if readable and of a type images are signed with.
    pub public: Option<AnyImageKey>,
}

/// List the private keys in the token a URI names.
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
