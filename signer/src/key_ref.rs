//! The one parser of key references that every tool accepts.
//!
//! | form | meaning |
//! |---|---|
//! | `pkcs11:token=T;object=L?module-path=M&pin-source=F` | a key in a PKCS#11 token (RFC 7512) |
//! | `awskms:///KEY-ID`, `awskms:///alias/NAME`, `awskms:///arn:aws:kms:…` | a key in AWS KMS; `?region=R&endpoint=URL` optional |
//! | `file:PATH` or a bare `PATH` | a PEM file (development keys only) |
//!
//! Anything that does not start with a known scheme is a path, so file names
//! containing `:` still work.
//!
//! PKCS#11 URIs: exactly one of `token=`, `serial=` or `slot-id=` selects the
//! token; `object=` (label) and/or `id=` (percent-encoded bytes) select the
//! key; the query attributes `module-path=`, `pin-source=` (a file, or
//! `env:VAR`) and `pin-value=` are understood. Other RFC 7512 path attributes
//! (`manufacturer`, `model`, `type`, `library-*`, `slot-*`) are accepted and
//! ignored; anything else is refused, naming the attribute. A PIN given in the
//! URI never appears in `Display` or `Debug` output.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// A reference to a key.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRef {
    /// A PEM file: PKCS#8 private key, or SubjectPublicKeyInfo public key.
    File(PathBuf),
    /// A key in a PKCS#11 token.
    Pkcs11(Pkcs11Uri),
    /// A key in AWS KMS.
    AwsKms(KmsKeyRef),
}

/// Where a PKCS#11 PIN comes from.
#[derive(Clone)]
pub enum PinSource {
    /// Read from a file (first line, without the line end).
    File(PathBuf),
    /// Read from an environment variable.
    Env(String),
    /// Given in the URI itself (discouraged: it ends up in shell history).
    Value(SecretString),
}

impl PartialEq for PinSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::File(a), Self::File(b)) => a == b,
            (Self::Env(a), Self::Env(b)) => a == b,
            (Self::Value(a), Self::Value(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        }
    }
}

impl Eq for PinSource {}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "File({})", p.display()),
            Self::Env(v) => write!(f, "Env({v})"),
            Self::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// Which token a PKCS#11 URI selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// `token=`: the token label.
    Label(String),
    /// `serial=`: the token serial number.
    Serial(String),
    /// `slot-id=`: the slot number.
    SlotId(u64),
}

/// A parsed `pkcs11:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token.
    pub token: TokenSelector,
    /// `object=`: the key's label.
    pub object: Option<String>,
    /// `id=`: the key's `CKA_ID`.
    pub id: Option<Vec<u8>>,
    /// `module-path=`: the PKCS#11 module to load.
    pub module_path: Option<PathBuf>,
    /// `pin-source=` or `pin-value=`.
    pub pin: Option<PinSource>,
}

/// A parsed `awskms:` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyRef {
    /// Key id, `alias/NAME`, or key/alias ARN, as KMS's `KeyId` takes it.
    pub key_id: String,
    /// `region=`.
    pub region: Option<String>,
    /// `endpoint=`: a local emulator's URL.
    pub endpoint: Option<String>,
}

/// Why a key reference was refused. Each names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRefError {
    /// Empty reference.
    #[error("empty key reference")]
    Empty,
    /// `file:` with nothing after it.
    #[error("key reference {0:?}: 'file:' needs a path")]
    EmptyPath(String),
    /// A malformed part of a URI.
    #[error("key reference {reference:?}: {part}: {problem}")]
    Malformed {
        /// The reference, with any PIN value removed.
        reference: String,
        /// The attribute or part at fault.
        part: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// `text` with the value of every `pin-value=` in it replaced by
/// `<redacted>` (up to the next `&`, quote or white space): for any message
/// that may echo a key reference, clap's included.
pub fn redact_pins(text: &str) -> String {
    const KEY: &str = "pin-value=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(KEY) {
        out.push_str(&rest[..i + KEY.len()]);
        out.push_str("<redacted>");
        let after = &rest[i + KEY.len()..];
        let end = after
            .find(|c: char| c == '&' || c == '\'' || c == '"' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn malformed(reference: &str, part: &str, problem: impl Into<String>) -> KeyRefError {
    KeyRefError::Malformed {
        reference: redact_pins(reference),
        part: part.to_owned(),
        problem: problem.into(),
    }
}

/// RFC 3986 percent-decoding into bytes.
fn pct_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn pct_text(reference: &str, part: &str, s: &str) -> Result<String, KeyRefError> {
    let bytes = pct_decode(s).ok_or_else(|| malformed(reference, part, "bad percent-encoding"))?;
    String::from_utf8(bytes)
        .map_err(|_| malformed(reference, part, "not UTF-8 after percent-decoding"))
}

fn pct_encode(s: &[u8]) -> String {
    let mut out = String::new();
    for &c in s {
        if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

const IGNORED_PATH_ATTRS: [&str; 9] = [
    "manufacturer",
    "model",
    "type",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-description",
    "slot-manufacturer",
    "module-name",
];

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    reference: &str,
    part: &str,
) -> Result<(), KeyRefError> {
    if slot.replace(value).is_some() {
        return Err(malformed(reference, part, "given more than once"));
    }
    Ok(())
}

fn parse_pkcs11(reference: &str, rest: &str) -> Result<Pkcs11Uri, KeyRefError> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut token, mut serial, mut slot_id) = (None, None, None);
    let (mut object, mut id, mut module_path, mut pin) = (None, None, None, None);
    for attr in path.split(';').filter(|a| !a.is_empty()) {
        let (name, value) = attr
            .split_once('=')
            .ok_or_else(|| malformed(reference, attr, "expected NAME=VALUE"))?;
        match name {
            "token" => set_once(
                &mut token,
                pct_text(reference, name, value)?,
                reference,
                name,
            )?,
            "serial" => set_once(
                &mut serial,
                pct_text(reference, name, value)?,
                reference,
                name,
            )?,
            "slot-id" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| malformed(reference, name, "must be a decimal number"))?;
                set_once(&mut slot_id, n, reference, name)?;
            }
            "object" => set_once(
                &mut object,
                pct_text(reference, name, value)?,
                reference,
                name,
            )?,
            "id" => {
                let bytes = pct_decode(value)
                    .ok_or_else(|| malformed(reference, name, "bad percent-encoding"))?;
                set_once(&mut id, bytes, reference, name)?;
            }
            n if IGNORED_PATH_ATTRS.contains(&n) || n.starts_with("x-") => {}
            other => return Err(malformed(reference, other, "unknown PKCS#11 URI attribute")),
        }
    }
    for attr in query.split('&').filter(|a| !a.is_empty()) {
        let (name, value) = attr
            .split_once('=')
            .ok_or_else(|| malformed(reference, attr, "expected NAME=VALUE"))?;
        match name {
            "module-path" => {
                let p = PathBuf::from(pct_text(reference, name, value)?);
                set_once(&mut module_path, p, reference, name)?;
            }
            "pin-source" => {
                let v = pct_text(reference, name, value)?;
                let src = match v.strip_prefix("env:") {
                    Some("") => {
                        return Err(malformed(reference, name, "env: needs a variable name"))
                    }
                    Some(var) => PinSource::Env(var.to_owned()),
                    None => PinSource::File(PathBuf::from(v.strip_prefix("file:").unwrap_or(&v))),
                };
                set_once(&mut pin, src, reference, "pin-source/pin-value")?;
            }
            "pin-value" => {
                let v = pct_text(reference, name, value)?;
                set_once(
                    &mut pin,
                    PinSource::Value(SecretString::from(v)),
                    reference,
                    "pin-source/pin-value",
                )?;
            }
            "module-name" => {}
            other => {
                return Err(malformed(
                    reference,
                    other,
                    "unknown PKCS#11 URI query attribute",
                ))
            }
        }
    }
    let token = match (token, serial, slot_id) {
        (Some(t), None, None) => TokenSelector::Label(t),
        (None, Some(s), None) => TokenSelector::Serial(s),
        (None, None, Some(n)) => TokenSelector::SlotId(n),
        (None, None, None) => {
            return Err(malformed(
                reference,
                "token",
                "one of token=, serial= or slot-id= must select the token",
            ))
        }
        _ => {
            return Err(malformed(
                reference,
                "token",
                "give only one of token=, serial= and slot-id=",
            ))
        }
    };
    Ok(Pkcs11Uri {
        token,
        object,
        id,
        module_path,
        pin,
    })
}

fn parse_kms(reference: &str, rest: &str) -> Result<KmsKeyRef, KeyRefError> {
    let rest = rest.strip_prefix("///").ok_or_else(|| {
        malformed(
            reference,
            "awskms",
            "expected awskms:///KEY-ID (three slashes)",
        )
    })?;
    let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
    let key_id = pct_text(reference, "key id", key)?;
    if key_id.is_empty() {
        return Err(malformed(reference, "key id", "missing after awskms:///"));
    }
    if key_id.starts_with("arn:") && !key_id.starts_with("arn:aws") {
        return Err(malformed(
            reference,
            "key id",
            "an ARN must start with arn:aws",
        ));
    }
    let (mut region, mut endpoint) = (None, None);
    for attr in query.split('&').filter(|a| !a.is_empty()) {
        let (name, value) = attr
            .split_once('=')
            .ok_or_else(|| malformed(reference, attr, "expected NAME=VALUE"))?;
        let value = pct_text(reference, name, value)?;
        match name {
            "region" => set_once(&mut region, value, reference, name)?,
            "endpoint" => {
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(malformed(
                        reference,
                        name,
                        "must be an http:// or https:// URL",
                    ));
                }
                set_once(&mut endpoint, value, reference, name)?;
            }
            other => {
                return Err(malformed(
                    reference,
                    other,
                    "unknown awskms: query attribute",
                ))
            }
        }
    }
    Ok(KmsKeyRef {
        key_id,
        region,
        endpoint,
    })
}

impl FromStr for KeyRef {
    type Err = KeyRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(KeyRefError::Empty);
        }
        if let Some(path) = s.strip_prefix("file:") {
            // Accept `file://PATH` (absolute) too, as people type it.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(KeyRefError::EmptyPath(s.to_owned()));
            }
            return Ok(KeyRef::File(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("pkcs11:") {
            return parse_pkcs11(s, rest).map(KeyRef::Pkcs11);
        }
        if let Some(rest) = s.strip_prefix("awskms:") {
            return parse_kms(s, rest).map(KeyRef::AwsKms);
        }
        Ok(KeyRef::File(PathBuf::from(s)))
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI, canonical, without any PIN value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        match &self.token {
            TokenSelector::Label(t) => write!(f, "token={}", pct_encode(t.as_bytes()))?,
            TokenSelector::Serial(s) => write!(f, "serial={}", pct_encode(s.as_bytes()))?,
            TokenSelector::SlotId(n) => write!(f, "slot-id={n}")?,
        }
        if let Some(o) = &self.object {
            write!(f, ";object={}", pct_encode(o.as_bytes()))?;
        }
        if let Some(id) = &self.id {
            f.write_str(";id=")?;
            for b in id {
                write!(f, "%{b:02X}")?;
            }
        }
        let mut sep = '?';
        if let Some(m) = &self.module_path {
            write!(
                f,
                "{sep}module-path={}",
                pct_encode(m.as_os_str().as_encoded_bytes())
            )?;
            sep = '&';
        }
        match &self.pin {
            Some(PinSource::File(p)) => write!(
                f,
                "{sep}pin-source={}",
                pct_encode(p.as_os_str().as_encoded_bytes())
            )?,
            Some(PinSource::Env(v)) => write!(f, "{sep}pin-source=env:{v}")?,
            Some(PinSource::Value(_)) | None => {}
        }
        Ok(())
    }
}

impl fmt::Display for KmsKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "awskms:///{}", self.key_id)?;
        let mut sep = '?';
        if let Some(r) = &self.region {
            write!(f, "{sep}region={r}")?;
            sep = '&';
        }
        if let Some(e) = &self.endpoint {
            write!(f, "{sep}endpoint={e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::File(p) => write!(f, "file:{}", p.display()),
            KeyRef::Pkcs11(u) => u.fmt(f),
            KeyRef::AwsKms(k) => k.fmt(f),
        }
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRef({self})")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_pin_value_is_redacted_wherever_it_ends() {
        let text = "invalid value 'pkcs11:token=t?pin-value=1234&pin-value=5678' for '--key': \
                    duplicate pin-value=9999 \"pin-value=4321\"";
        let r = redact_pins(text);
        for pin in ["1234", "5678", "9999", "4321"] {
            assert!(!r.contains(pin), "{r}");
        }
        assert!(r.contains("for '--key'"), "{r}");
        assert_eq!(redact_pins("no pins here"), "no pins here");
    }

    proptest::proptest! {
        #[test]
        fn redaction_never_leaves_a_value(prefix in "[ -~]{0,20}", pin in "[0-9a-z]{1,12}", suffix in "[&' ][ -~]{0,20}") {
            let text = format!("{prefix}pin-value={pin}{suffix}");
            let r = redact_pins(&text);
            let after = r.split("pin-value=").nth(1).unwrap_or_default();
            proptest::prop_assert!(after.starts_with("<redacted>"), "{}", r);
        }
    }

    use super::*;
    use proptest::prelude::*;

    fn k(s: &str) -> Result<KeyRef, KeyRefError> {
        s.parse()
    }

    fn p11(s: &str) -> Pkcs11Uri {
        match k(s).unwrap() {
            KeyRef::Pkcs11(u) => u,
            other => panic!("not pkcs11: {other:?}"),
        }
    }

    #[test]
    fn paths_and_file_uris() {
        assert_eq!(k("keys/a.pem").unwrap(), KeyRef::File("keys/a.pem".into()));
        assert_eq!(
            k("file:keys/a.pem").unwrap(),
            KeyRef::File("keys/a.pem".into())
        );
        assert_eq!(
            k("file:///abs/a.pem").unwrap(),
            KeyRef::File("/abs/a.pem".into())
        );
        assert_eq!(
            k("odd:name.pem").unwrap(),
            KeyRef::File("odd:name.pem".into())
        );
        assert_eq!(k("file:keys/a.pem").unwrap().to_string(), "file:keys/a.pem");
        assert_eq!(k(""), Err(KeyRefError::Empty));
        assert!(matches!(k("file:"), Err(KeyRefError::EmptyPath(_))));
    }

    #[test]
    fn pkcs11_uris() {
        let u = p11("pkcs11:token=Release%20Keys;object=fw-2026;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN");
        assert_eq!(u.token, TokenSelector::Label("Release Keys".into()));
        assert_eq!(u.object.as_deref(), Some("fw-2026"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(
            u.module_path,
            Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(u.pin, Some(PinSource::Env("HSM_PIN".into())));
        assert_eq!(
            u.to_string(),
            "pkcs11:token=Release%20Keys;object=fw-2026;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN"
        );
        assert_eq!(
            p11("pkcs11:serial=abc123;object=x").token,
            TokenSelector::Serial("abc123".into())
        );
        assert_eq!(
            p11("pkcs11:slot-id=3;object=x").token,
            TokenSelector::SlotId(3)
        );
        assert_eq!(
            p11("pkcs11:token=t;manufacturer=SoftHSM;type=private;object=x")
                .object
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            p11("pkcs11:token=t?pin-source=/run/pin").pin,
            Some(PinSource::File("/run/pin".into()))
        );
    }

    #[test]
    fn pin_values_never_print() {
        let r = k("pkcs11:token=t;object=o?pin-value=123456").unwrap();
        assert!(!r.to_string().contains("123456"));
        assert!(!format!("{r:?}").contains("123456"));
        let e = k("pkcs11:token=t;bogus=1?pin-value=123456").unwrap_err();
        assert!(!e.to_string().contains("123456"), "{e}");
        assert!(e.to_string().contains("<redacted>"), "{e}");
    }

    #[test]
    fn pkcs11_refusals_name_the_part() {
        let msg = |s: &str| k(s).unwrap_err().to_string();
        assert!(msg("pkcs11:object=x").contains("must select the token"));
        assert!(msg("pkcs11:token=a;serial=b").contains("only one of"));
        assert!(msg("pkcs11:token=a;colour=red").contains("colour: unknown PKCS#11 URI attribute"));
        assert!(msg("pkcs11:token=a;slot-id=x").contains("slot-id: must be a decimal number"));
        assert!(msg("pkcs11:token=a;id=%zz").contains("id: bad percent-encoding"));
        assert!(msg("pkcs11:token=a;object=x;object=y").contains("object: given more than once"));
        assert!(msg("pkcs11:token=a?pin-source=env:").contains("needs a variable name"));
        assert!(msg("pkcs11:token=a?frobnicate=1").contains("frobnicate: unknown"));
        assert!(msg("pkcs11:token").contains("expected NAME=VALUE"));
    }

    #[test]
    fn kms_references() {
        let kms = |s: &str| match k(s).unwrap() {
            KeyRef::AwsKms(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(kms("awskms:///alias/release").key_id, "alias/release");
        let r = kms("awskms:///arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab?region=eu-north-1&endpoint=http://127.0.0.1:5000");
        assert_eq!(
            r.key_id,
            "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab"
        );
        assert_eq!(r.region.as_deref(), Some("eu-north-1"));
        assert_eq!(r.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(kms("awskms:///1234abcd").to_string(), "awskms:///1234abcd");
        let msg = |s: &str| k(s).unwrap_err().to_string();
        assert!(msg("awskms://alias/x").contains("three slashes"));
        assert!(msg("awskms:///").contains("missing"));
        assert!(msg("awskms:///alias/x?endpoint=localhost").contains("http://"));
        assert!(msg("awskms:///alias/x?zone=1").contains("zone: unknown"));
        assert!(msg("awskms:///arn:gcp:x").contains("arn:aws"));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = k(&s);
        }

        #[test]
        fn pkcs11_shaped_input_never_panics(s in "pkcs11:[a-z=;%0-9?&/:-]{0,60}") {
            let _ = k(&s);
        }

        #[test]
        fn display_round_trips(label in "[ -~]{1,20}", object in "[ -~]{1,20}", id in proptest::collection::vec(any::<u8>(), 0..6)) {
            let uri = Pkcs11Uri { token: TokenSelector::Label(label), object: Some(object), id: Some(id), module_path: None, pin: None };
            prop_assert_eq!(k(&uri.to_string()).unwrap(), KeyRef::Pkcs11(uri));
        }
    }
}
