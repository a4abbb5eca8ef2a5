//! X.509 certificates from keys that never leave their backend
//! (docs/certificates.md): a self-signed root CA, a device CA under it, and
//! per-device client certificates naming the device's serial and hardware ID.
//! `rcgen` lays the certificates out; every signature is made by a
//! [`Signer`] (PKCS#11, KMS or file). Certificate requests are parsed with
//! `x509-cert` and their signature checked before anything is issued.

use std::time::{Duration, SystemTime};

use der::{Decode, DecodePem, Encode};
use firmware::record::HwId;
use firmware::P256PublicKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
    SigningKey, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};

use crate::keys::Signer;

/// The URI scheme that carries a device's hardware ID in subjectAltName.
pub const HWID_URN_PREFIX: &str = "urn:dev:hwid:";

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A `--subject` that is not `KEY=VALUE,…` with known keys.
    #[error(
        "subject {0:?}: expected KEY=VALUE pairs separated by commas, keys CN, O, OU, C, ST, L"
    )]
    Subject(String),
    /// The issuer certificate does not parse, or is no CA.
    #[error("issuer certificate: {0}")]
    Issuer(String),
    /// The issuer key is not the key of the issuer certificate.
    #[error("the issuer key is not the key certified by the issuer certificate")]
    IssuerKeyMismatch,
    /// A certificate request was refused.
    #[error("certificate request: {0}")]
    Csr(String),
    /// The signer failed.
    #[error(transparent)]
    Key(#[from] crate::keys::SignerError),
    /// rcgen refused the parameters.
    #[error("certificate: {0}")]
    Build(String),
}

fn build(e: rcgen::Error) -> CertError {
    CertError::Build(e.to_string())
}

/// A [`Signer`] as rcgen's signing key: rcgen hands over the bytes to sign,
/// the backend signs their SHA-256.
struct BackendKey<'a> {
    signer: &'a dyn Signer,
    point: [u8; 65],
}

impl<'a> BackendKey<'a> {
    fn new(signer: &'a dyn Signer) -> Result<Self, CertError> {
        Ok(Self {
            point: *signer.public_key()?.sec1(),
            signer,
        })
    }
}

impl PublicKeyData for BackendKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for BackendKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        self.signer
            .sign_digest(&digest)
            .map(|s| s.to_der())
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A device's public key, to be certified.
struct DeviceKey([u8; 65]);

impl PublicKeyData for DeviceKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Parse `CN=Fleet Root CA,O=Acme,C=SE`.
pub fn parse_subject(text: &str) -> Result<DistinguishedName, CertError> {
    let bad = || CertError::Subject(text.to_owned());
    let mut dn = DistinguishedName::new();
    let mut any = false;
    for part in text.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(bad)?;
        let v = v.trim();
        if v.is_empty() {
            return Err(bad());
        }
        let kind = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) => {
                // X520countryName is a PrintableString.
                let c = rcgen::string::PrintableString::try_from(v).map_err(|_| bad())?;
                dn.push(DnType::CountryName, rcgen::DnValue::PrintableString(c));
                any = true;
                continue;
            }
            "ST" => DnType::StateOrProvinceName,
            "L" => DnType::LocalityName,
            _ => return Err(bad()),
        };
        dn.push(kind, v);
        any = true;
    }
    if any {
        Ok(dn)
    } else {
        Err(bad())
    }
}

/// A random positive 16-byte certificate serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; // positive, and always 16 bytes long
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = SystemTime::now();
    // An hour of slack for clocks that are a little behind.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(u64::from(days) * 86_400)).into();
}

fn ca_params(subject: DistinguishedName, days: u32, path_len: u8) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(random_serial());
    validity(&mut p, days);
    p
}

/// A self-signed root CA (`pathLen:1`, keyCertSign and cRLSign, SKI), PEM.
pub fn root_ca(
    key: &dyn Signer,
    subject: DistinguishedName,
    days: u32,
) -> Result<String, CertError> {
    let signing = BackendKey::new(key)?;
    let mut params = ca_params(subject, days, 1);
    // A self-signed certificate's AKI would only repeat its SKI.
    params.use_authority_key_identifier_extension = false;
    let cert = params.self_signed(&signing).map_err(build)?;
    Ok(cert.pem())
}

/// The issuer: its certificate (PEM), checked against its key.
fn issuer<'a>(
    cert_pem: &str,
    key: &'a dyn Signer,
) -> Result<Issuer<'static, BackendKey<'a>>, CertError> {
    let cert = x509_cert::Certificate::from_pem(cert_pem.as_bytes())
        .map_err(|e| CertError::Issuer(e.to_string()))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| CertError::Issuer(e.to_string()))?;
    let cert_key =
        P256PublicKey::from_spki_der(&spki).map_err(|e| CertError::Issuer(e.to_string()))?;
    let signing = BackendKey::new(key)?;
    if cert_key.sec1() != &signing.point {
        return Err(CertError::IssuerKeyMismatch);
    }
    let is_ca = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS)
        .filter_map(|e| {
            x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes()).ok()
        })
        .any(|bc| bc.ca);
    if !is_ca {
        return Err(CertError::Issuer(
            "not a CA certificate (basicConstraints CA:FALSE)".into(),
        ));
    }
    Issuer::from_ca_cert_pem(cert_pem, signing).map_err(|e| CertError::Issuer(e.to_string()))
}

/// A DER certificate as PEM (64-column lines).
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Check that `cert_pem` is a CA certificate for `key`, before any device
/// is touched.
pub fn check_issuer(cert_pem: &str, key: &dyn Signer) -> Result<(), CertError> {
    issuer(cert_pem, key).map(|_| ())
}

/// A device CA under `issuer` (`pathLen:0`, AKI and SKI), PEM.
pub fn intermediate_ca(
    key: &dyn Signer,
    issuer_key: &dyn Signer,
    issuer_cert_pem: &str,
    subject: DistinguishedName,
    days: u32,
) -> Result<String, CertError> {
    let issuer = issuer(issuer_cert_pem, issuer_key)?;
    let subject_key = BackendKey::new(key)?;
    let params = ca_params(subject, days, 0);
    let cert = params.signed_by(&subject_key, &issuer).map_err(build)?;
    Ok(cert.pem())
}

/// What a device certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The device's key.
    pub public_key: P256PublicKey,
    /// Its serial: the subject's CN.
    pub serial: u32,
    /// Its chip: `urn:dev:hwid:HEX` in subjectAltName.
    pub hw_id: HwId,
}

/// A device's client certificate (CN = serial, SAN URI with the hardware ID,
/// digitalSignature, clientAuth, AKI), PEM.
pub fn device_cert(
    issuer_key: &dyn Signer,
    issuer_cert_pem: &str,
    device: &DeviceIdentity,
    days: u32,
) -> Result<String, CertError> {
    Ok(device_certificate(issuer_key, issuer_cert_pem, device, days)?.pem())
}

/// The same certificate, DER (as the factory writes it to the device).
pub fn device_cert_der(
    issuer_key: &dyn Signer,
    issuer_cert_pem: &str,
    device: &DeviceIdentity,
    days: u32,
) -> Result<Vec<u8>, CertError> {
    Ok(
        device_certificate(issuer_key, issuer_cert_pem, device, days)?
            .der()
            .to_vec(),
    )
}

fn device_certificate(
    issuer_key: &dyn Signer,
    issuer_cert_pem: &str,
    device: &DeviceIdentity,
    days: u32,
) -> Result<rcgen::Certificate, CertError> {
    let issuer = issuer(issuer_cert_pem, issuer_key)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, device.serial.to_string());
    p.subject_alt_names = vec![SanType::URI(
        format!("{HWID_URN_PREFIX}{}", device.hw_id)
            .try_into()
            .map_err(build)?,
    )];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(random_serial());
    validity(&mut p, days);
    p.signed_by(&DeviceKey(*device.public_key.sec1()), &issuer)
        .map_err(build)
}

const ECDSA_WITH_SHA256: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const EXTENSION_REQUEST: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// Check a device's certificate request (PEM): its signature, a P-256 key,
/// CN = serial and the hardware ID in a subjectAltName URI.
pub fn check_csr(pem: &str) -> Result<DeviceIdentity, CertError> {
    let bad = |m: String| CertError::Csr(m);
    let req = x509_cert::request::CertReq::from_pem(pem.as_bytes())
        .map_err(|e| bad(format!("not a PEM certificate request: {e}")))?;
    let spki = req
        .info
        .public_key
        .to_der()
        .map_err(|e| bad(e.to_string()))?;
    let public_key = P256PublicKey::from_spki_der(&spki)
        .map_err(|_| bad("the key is not an ECDSA P-256 key (wrong curve or algorithm)".into()))?;
    if req.algorithm.oid != ECDSA_WITH_SHA256 {
        return Err(bad(format!(
            "signed with {}, not ecdsa-with-SHA256",
            req.algorithm.oid
        )));
    }
    let info = req.info.to_der().map_err(|e| bad(e.to_string()))?;
    let digest: [u8; 32] = Sha256::digest(&info).into();
    let sig = req
        .signature
        .as_bytes()
        .ok_or_else(|| bad("malformed signature".into()))?;
    public_key
        .verify_digest_der(&digest, sig)
        .map_err(|_| bad("its signature does not verify with its own key".into()))?;

    let mut cn = None;
    for rdn in req.info.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == const_oid::db::rfc4519::CN {
                cn = der::asn1::Utf8StringRef::try_from(&atv.value)
                    .map(|s| s.as_str().to_owned())
                    .or_else(|_| {
                        der::asn1::PrintableStringRef::try_from(&atv.value)
                            .map(|s| s.as_str().to_owned())
                    })
                    .ok();
            }
        }
    }
    let serial = cn
        .as_deref()
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or_else(|| {
            bad(format!(
                "the subject CN must be the device serial, found {cn:?}"
            ))
        })?;

    let mut hw_id = None;
    for attr in req
        .info
        .attributes
        .iter()
        .filter(|a| a.oid == EXTENSION_REQUEST)
    {
        for value in attr.values.iter() {
            let exts: Vec<x509_cert::ext::Extension> = value
                .decode_as()
                .map_err(|e| bad(format!("extension request: {e}")))?;
            for ext in exts
                .iter()
                .filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
            {
                let san = x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| bad(format!("subjectAltName: {e}")))?;
                for name in san.0 {
                    if let x509_cert::ext::pkix::name::GeneralName::UniformResourceIdentifier(uri) =
                        name
                    {
                        if let Some(hex) = uri.as_str().strip_prefix(HWID_URN_PREFIX) {
                            hw_id = Some(HwId::parse_hex(hex).ok_or_else(|| {
                                bad(format!("{HWID_URN_PREFIX}{hex}: 16 hex digits expected"))
                            })?);
                        }
                    }
                }
            }
        }
    }
    let hw_id = hw_id.ok_or_else(|| {
        bad(format!(
            "no hardware ID: a subjectAltName URI {HWID_URN_PREFIX}<16 hex digits> is required"
        ))
    })?;
    Ok(DeviceIdentity {
        public_key,
        serial,
        hw_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_or_explain() {
        parse_subject("CN=Fleet Root CA,O=Acme Devices,C=SE").unwrap();
        for bad in ["", "CN", "CN=", "XX=1", "C=sweden", "CN=a,,O=b"] {
            assert!(parse_subject(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_subject_text_parses_or_errs(text in "[ -~]{0,60}") {
            let _ = parse_subject(&text);
        }

        #[test]
        fn any_text_is_a_csr_or_an_error(text in "[ -~\\n]{0,400}") {
            let _ = check_csr(&text);
        }
    }
}
