//! The options of `imgtool sign` (all but encryption and compression).

use firmware::image::{tlv, ImageVersion, TrailerLayout, DEFAULT_MAX_ALIGN, DEFAULT_MAX_SECTORS};

use super::ImageBuildError;

/// `--security-counter`: a number, or derived from the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityCounter {
    /// `auto`: `major << 24 | minor << 16 | revision`.
    Auto,
    /// An explicit value.
    Value(u32),
}

/// `--public-key-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublicKeyFormat {
    /// KEYHASH TLV: SHA-256 of the DER public key.
    #[default]
    Hash,
    /// PUBKEY TLV: the DER public key.
    Full,
}

/// One `--dependencies` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    /// Index of the image depended on.
    pub image_id: u8,
    /// Minimum version of it.
    pub version: ImageVersion,
}

/// Every option that shapes the image. Field names follow imgtool's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// `-v/--version`.
    pub version: ImageVersion,
    /// `-H/--header-size`.
    pub header_size: u16,
    /// `--pad-header`.
    pub pad_header: bool,
    /// `-S/--slot-size`.
    pub slot_size: u32,
    /// `--pad` (implied by `--confirm` and `--test`).
    pub pad: bool,
    /// `--confirm`.
    pub confirm: bool,
    /// `--test`.
    pub test: bool,
    /// `--align`.
    pub align: u32,
    /// `--max-align`.
    pub max_align: Option<u32>,
    /// `-M/--max-sectors`.
    pub max_sectors: Option<u32>,
    /// `--overwrite-only`.
    pub overwrite_only: bool,
    /// `-s/--security-counter`.
    pub security_counter: Option<SecurityCounter>,
    /// `-d/--dependencies`.
    pub dependencies: Vec<Dependency>,
    /// `--custom-tlv` and `--custom-tlv-file`, in that order.
    pub custom_tlvs: Vec<(u16, Vec<u8>)>,
    /// `-L/--load-addr`.
    pub load_addr: Option<u32>,
    /// `-F/--rom-fixed`.
    pub rom_fixed: Option<u32>,
    /// `-R/--erased-val`.
    pub erased_val: u8,
    /// `--public-key-format`.
    pub public_key_format: PublicKeyFormat,
    /// `--non-bootable`.
    pub non_bootable: bool,
    /// `--pad-sig`: pad the DER signature with zeros to 72 bytes.
    pub pad_sig: bool,
    /// `--sha`: the image hash, or `None` for the key type's default.
    pub sha: Option<firmware::image::keys::HashAlg>,
    /// `--pure`: Ed25519 signs the image itself, not its hash.
    pub pure: bool,
    /// `-E` and its flags: encrypt the payload for this key.
    pub encrypt: Option<super::encrypt::Encryption>,
}

impl SignOptions {
    /// Defaults for everything but what imgtool requires.
    pub fn new(version: ImageVersion, header_size: u16, slot_size: u32) -> Self {
        Self {
            version,
            header_size,
            pad_header: false,
            slot_size,
            pad: false,
            confirm: false,
            test: false,
            align: 1,
            max_align: None,
            max_sectors: None,
            overwrite_only: false,
            security_counter: None,
            dependencies: Vec::new(),
            custom_tlvs: Vec::new(),
            load_addr: None,
            rom_fixed: None,
            erased_val: 0xff,
            public_key_format: PublicKeyFormat::Hash,
            non_bootable: false,
            pad_sig: false,
            sha: None,
            pure: false,
            encrypt: None,
        }
    }

    /// Whether the output is padded to the slot with a trailer.
    pub fn padded(&self) -> bool {
        self.pad || self.confirm || self.test
    }

    /// The trailer layout these options describe.
    pub fn trailer(&self) -> TrailerLayout {
        TrailerLayout {
            align: self.align,
            max_align: self.max_align.unwrap_or(DEFAULT_MAX_ALIGN.max(self.align)),
            max_sectors: self.max_sectors.unwrap_or(DEFAULT_MAX_SECTORS),
            overwrite_only: self.overwrite_only,
            enc_key_size: self
                .encrypt
                .as_ref()
                .map_or(0, super::encrypt::Encryption::trailer_key_size),
        }
    }

    /// The security counter value, if any.
    pub fn security_counter_value(&self) -> Option<u32> {
        self.security_counter.map(|c| match c {
            SecurityCounter::Auto => self.version.auto_security_counter(),
            SecurityCounter::Value(v) => v,
        })
    }

    /// Check the options against each other, with imgtool's rules.
    pub fn validate(&self) -> Result<(), ImageBuildError> {
        let usage = |m: String| Err(ImageBuildError::Usage(m));
        if usize::from(self.header_size) < firmware::image::IMAGE_HEADER_SIZE {
            return usage(format!(
                "minimum value for -H/--header-size is {}",
                firmware::image::IMAGE_HEADER_SIZE
            ));
        }
        if ![1, 2, 4, 8, 16, 32].contains(&self.align) {
            return usage(format!(
                "invalid alignment {}: choose 1, 2, 4, 8, 16 or 32",
                self.align
            ));
        }
        if let Some(m) = self.max_align {
            if ![8, 16, 32].contains(&m) {
                return usage(format!("invalid --max-align {m}: choose 8, 16 or 32"));
            }
        }
        if self.load_addr.unwrap_or(0) != 0 && self.rom_fixed.unwrap_or(0) != 0 {
            return usage("can not set rom_fixed and load_addr at the same time".into());
        }
        if self.erased_val != 0 && self.erased_val != 0xff {
            return usage("--erased-val must be 0 or 0xff".into());
        }
        let mut seen = Vec::new();
        for (tag, _) in &self.custom_tlvs {
            if seen.contains(tag) {
                return usage(format!("custom TLV {tag:#x} already exists"));
            }
            if tlv::is_defined(*tag) {
                return usage(format!("custom TLV {tag:#x} conflicts with predefined TLV"));
            }
            if !(tlv::VENDOR_MIN..=tlv::VENDOR_MAX).contains(tag) {
                return usage(format!(
                    "invalid custom TLV type {tag:#06x}: allowed values are {:#06x} to {:#06x}",
                    tlv::VENDOR_MIN,
                    tlv::VENDOR_MAX
                ));
            }
            seen.push(*tag);
        }
        Ok(())
    }
}

/// Parse an integer the way imgtool's `int(x, 0)` does for the forms people
/// use: decimal, `0x` hex, `0o` octal, `0b` binary, with `_` separators.
pub fn parse_int(s: &str) -> Option<u64> {
    let t = s.trim().replace('_', "");
    let lower = t.to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h.to_owned(), 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (o.to_owned(), 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (b.to_owned(), 2)
    } else {
        // Python refuses decimal literals with leading zeros ("010").
        if lower.len() > 1 && lower.starts_with('0') && lower.chars().any(|c| c != '0') {
            return None;
        }
        (lower, 10)
    };
    if digits.is_empty() || digits.starts_with('+') {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// Parse `--dependencies "(ID,VERSION), (ID,VERSION)"`.
pub fn parse_dependencies(text: &str) -> Result<Vec<Dependency>, ImageBuildError> {
    let bad = || ImageBuildError::Usage(format!("image dependency format is invalid: {text}"));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        let close = rest[open..].find(')').ok_or_else(bad)? + open;
        let inner = &rest[open + 1..close];
        let (id, version) = inner.split_once(',').ok_or_else(bad)?;
        let image_id: u8 = id.trim().parse().map_err(|_| {
            ImageBuildError::Usage(format!(
                "dependency image id {:?} must be 0 to 255",
                id.trim()
            ))
        })?;
        let version: ImageVersion = version.trim().parse().map_err(|e| {
            ImageBuildError::Usage(format!("dependency version {:?}: {e}", version.trim()))
        })?;
        out.push(Dependency { image_id, version });
        rest = &rest[close + 1..];
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Parse one `--custom-tlv TAG VALUE`: `0x…` is hex bytes, anything else the
/// UTF-8 text itself.
pub fn parse_custom_tlv(tag: &str, value: &str) -> Result<(u16, Vec<u8>), ImageBuildError> {
    let tag_num = parse_int(tag)
        .and_then(|t| u16::try_from(t).ok())
        .ok_or_else(|| {
            ImageBuildError::Usage(format!("custom TLV tag {tag:?} is not a 16-bit number"))
        })?;
    let bytes = match value.strip_prefix("0x") {
        Some(h) if h.len() % 2 == 1 => {
            return Err(ImageBuildError::Usage("custom TLV length is odd".into()));
        }
        Some(h) => hex::decode(h).map_err(|_| {
            ImageBuildError::Usage(format!("custom TLV value {value:?} is not hex"))
        })?,
        None => value.as_bytes().to_vec(),
    };
    Ok((tag_num, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_like_python() {
        assert_eq!(parse_int("0x1000"), Some(0x1000));
        assert_eq!(parse_int("4096"), Some(4096));
        assert_eq!(parse_int("0b101"), Some(5));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("010"), None);
        assert_eq!(parse_int("x"), None);
        assert_eq!(parse_int(""), None);
    }

    #[test]
    fn dependencies() {
        let d = parse_dependencies("(1,1.2.3+4), (2, 0.5)").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].image_id, 1);
        assert_eq!(d[1].version.to_string(), "0.5.0+0");
        assert!(parse_dependencies("1,2").is_err());
        assert!(parse_dependencies("(300,1.0)").is_err());
        assert!(parse_dependencies("(1,1.x)").is_err());
    }

    #[test]
    fn custom_tlvs() {
        assert_eq!(
            parse_custom_tlv("0xa0", "0x0102").unwrap(),
            (0xa0, vec![1, 2])
        );
        assert_eq!(
            parse_custom_tlv("161", "hi").unwrap(),
            (161, b"hi".to_vec())
        );
        assert!(parse_custom_tlv("0xa0", "0x012").is_err());
        let mut o = SignOptions::new(ImageVersion::default(), 32, 0);
        o.custom_tlvs = vec![(0x50, vec![])];
        assert!(o.validate().is_err());
        o.custom_tlvs = vec![(0x9f, vec![])];
        assert!(o.validate().is_err());
        o.custom_tlvs = vec![(0xa0, vec![]), (0xa0, vec![])];
        assert!(o.validate().is_err());
    }

    proptest! {
        #[test]
        fn dependency_parser_never_panics(s in "\\PC{0,60}") {
            let _ = parse_dependencies(&s);
        }
    }
}
