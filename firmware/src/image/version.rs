//! The image version `major.minor.revision+build` (MCUboot's `image_version`).

use core::fmt;
use core::str::FromStr;

/// An image version as stored in the header: 8-bit major and minor, 16-bit
/// revision, 32-bit build number. Ordered field by field, as MCUboot compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageVersion {
    /// Major version (0–255).
    pub major: u8,
    /// Minor version (0–255).
    pub minor: u8,
    /// Revision (0–65535).
    pub revision: u16,
    /// Build number (0–4294967295).
    pub build: u32,
}

/// Why a version string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// Not of the form `maj.min.rev+build` (later parts optional, no leading zeros).
    #[error("invalid version number, should be maj.min.rev+build with later parts optional")]
    Syntax,
    /// A part is larger than its field in the image header.
    #[error("version part {part} is {value}, above its maximum {max}")]
    OutOfRange {
        /// Which part: `major`, `minor`, `revision` or `build`.
        part: &'static str,
        /// The value given.
        value: u64,
        /// The largest value the header holds.
        max: u64,
    },
}

impl ImageVersion {
    /// Encoded size in the image header.
    pub const ENCODED_LEN: usize = 8;

    /// Little-endian header encoding.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.major;
        out[1] = self.minor;
        out[2..4].copy_from_slice(&self.revision.to_le_bytes());
        out[4..8].copy_from_slice(&self.build.to_le_bytes());
        out
    }

    /// Decode the header encoding.
    pub fn from_bytes(b: &[u8; 8]) -> Self {
        Self {
            major: b[0],
            minor: b[1],
            revision: u16::from_le_bytes([b[2], b[3]]),
            build: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// The security counter imgtool derives with `--security-counter auto`:
    /// `major << 24 | minor << 16 | revision`.
    pub fn auto_security_counter(&self) -> u32 {
        (u32::from(self.major) << 24) | (u32::from(self.minor) << 16) | u32::from(self.revision)
    }
}

fn number(text: &str) -> Result<u64, VersionError> {
    let bytes = text.as_bytes();
    let canonical = match bytes {
        [] => false,
        [b'0'] => true,
        [first, rest @ ..] => (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return Err(VersionError::Syntax);
    }
    // More than 20 digits cannot fit; report it as out of range below.
    Ok(text.parse::<u64>().unwrap_or(u64::MAX))
}

fn fit<T: TryFrom<u64>>(part: &'static str, value: u64, max: u64) -> Result<T, VersionError> {
    T::try_from(value).map_err(|_| VersionError::OutOfRange { part, value, max })
}

impl FromStr for ImageVersion {
    type Err = VersionError;

    /// The grammar imgtool accepts: `N`, `N.N`, `N.N.N` or `N.N.N+N`, each `N`
    /// decimal without leading zeros.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (numbers, build) = match s.split_once('+') {
            Some((n, b)) => (n, Some(b)),
            None => (s, None),
        };
        let mut parts = [0u64; 3];
        let mut count = 0;
        for piece in numbers.split('.') {
            let slot = parts.get_mut(count).ok_or(VersionError::Syntax)?;
            *slot = number(piece)?;
            count += 1;
        }
        let build = match build {
            Some(_) if count != 3 => return Err(VersionError::Syntax),
            Some(b) => number(b)?,
            None => 0,
        };
        Ok(Self {
            major: fit("major", parts[0], u8::MAX.into())?,
            minor: fit("minor", parts[1], u8::MAX.into())?,
            revision: fit("revision", parts[2], u16::MAX.into())?,
            build: fit("build", build, u32::MAX.into())?,
        })
    }
}

impl fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}+{}",
            self.major, self.minor, self.revision, self.build
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn v(s: &str) -> Result<ImageVersion, VersionError> {
        s.parse()
    }

    #[test]
    fn accepts_imgtool_grammar() {
        assert_eq!(v("0").unwrap(), ImageVersion::default());
        assert_eq!(
            v("1.2").unwrap(),
            ImageVersion {
                major: 1,
                minor: 2,
                revision: 0,
                build: 0
            }
        );
        assert_eq!(
            v("255.255.65535+4294967295").unwrap(),
            ImageVersion {
                major: 255,
                minor: 255,
                revision: 65535,
                build: u32::MAX
            }
        );
        assert_eq!(v("1.2.3+4").unwrap().to_string(), "1.2.3+4");
    }

    #[test]
    fn rejects_what_imgtool_rejects() {
        for bad in [
            "", "01", "1.", ".1", "1.2.3.4", "1+2", "1.2+3", "1.2.3+", "a", "1.2.3+04", " 1",
            "1.-2",
        ] {
            assert_eq!(v(bad), Err(VersionError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn rejects_parts_that_do_not_fit() {
        assert!(matches!(
            v("256"),
            Err(VersionError::OutOfRange { part: "major", .. })
        ));
        assert!(matches!(
            v("1.2.65536"),
            Err(VersionError::OutOfRange {
                part: "revision",
                ..
            })
        ));
        assert!(matches!(
            v("1.2.3+99999999999999999999999"),
            Err(VersionError::OutOfRange { part: "build", .. })
        ));
    }

    #[test]
    fn bytes_round_trip_and_auto_counter() {
        let ver = v("1.2.3+4").unwrap();
        assert_eq!(ImageVersion::from_bytes(&ver.to_bytes()), ver);
        assert_eq!(ver.auto_security_counter(), 0x0102_0003);
    }
}
