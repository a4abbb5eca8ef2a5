//! Small pieces shared by the commands.

use std::io::Write;
use std::path::Path;

use signer::image::{is_hex_path, parse_int};
use signer::{intel_hex, KeyRef};

use crate::failure::Failure;

/// clap parser for key references.
pub(crate) fn key_ref(s: &str) -> Result<KeyRef, String> {
    let key: KeyRef = s.parse().map_err(|e: signer::KeyRefError| e.to_string())?;
    if let KeyRef::Pkcs11(uri) = &key {
        if matches!(uri.pin, Some(signer::key_ref::PinSource::Value(_))) {
            eprintln!("warning: pin-value= puts the PIN in shell history and process lists; prefer pin-source=FILE or env:VAR");
        }
    }
    Ok(key)
}

/// clap parser for 32-bit integers in imgtool's forms (`4096`, `0x1000`).
pub(crate) fn based_u32(s: &str) -> Result<u32, String> {
    parse_int(s)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            format!("{s} is not a valid 32-bit integer (use 0x, 0o or 0b prefixes as needed)")
        })
}

/// clap parser for 16-bit integers in imgtool's forms.
pub(crate) fn based_u16(s: &str) -> Result<u16, String> {
    parse_int(s)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or_else(|| {
            format!("{s} is not a valid 16-bit integer (use 0x, 0o or 0b prefixes as needed)")
        })
}

/// Read an image file: Intel HEX by extension (gaps read as 0xFF), else raw.
pub(crate) fn read_image(path: &Path) -> Result<Vec<u8>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    if !is_hex_path(path) {
        return Ok(bytes);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::failed(anyhow::anyhow!("{}: not Intel HEX text", path.display())))?;
    let hex = intel_hex::parse(&text)
        .map_err(|e| Failure::failed(anyhow::anyhow!("{}: {e}", path.display())))?;
    Ok(hex.data)
}

/// Write to a file atomically, or to stdout when `path` is `None`.
pub(crate) fn emit(path: Option<&Path>, bytes: &[u8]) -> Result<(), Failure> {
    match path {
        Some(p) => signer::atomic::write(p, bytes).map_err(Failure::failed),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .map_err(Failure::failed)
        }
    }
}

/// Print a value as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::failed)?;
    println!("{text}");
    Ok(())
}

/// clap parser for `NAME=URI`: an officer and their own token.
pub(crate) fn officer(s: &str) -> Result<signer::keys::quorum::Officer, String> {
    let (name, uri) = s
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| "expected NAME=pkcs11:token=…".to_owned())?;
    match key_ref(uri)? {
        KeyRef::Pkcs11(token) => Ok(signer::keys::quorum::Officer {
            name: name.to_owned(),
            token,
        }),
        _ => Err(format!("{name}: an officer's token is a pkcs11: URI")),
    }
}
