//! Strict DER of an ECDSA-Sig-Value (`SEQUENCE { r INTEGER, s INTEGER }`), as
//! MCUboot's ECDSASIG TLV and X.509 carry it, parsed into 32-byte big-endian
//! scalars. No allocation, no panic; range checks are the caller's.

/// `r` and `s`, big-endian, left-padded to 32 bytes.
pub(crate) type Scalars = ([u8; 32], [u8; 32]);

/// Parse exactly one DER signature (nothing may follow it).
pub(crate) fn parse(der: &[u8]) -> Option<Scalars> {
    let (body, rest) = element(der, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (r, body) = integer(body)?;
    let (s, body) = integer(body)?;
    body.is_empty().then_some((r, s))
}

/// One element with tag `tag` and a short-form length (every part of a
/// P-256 signature is under 128 bytes, and DER requires the short form then).
fn element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = bytes.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if t != tag || len & 0x80 != 0 {
        return None;
    }
    rest.split_at_checked(usize::from(len))
}

/// A non-negative INTEGER in minimal encoding, at most 256 bits.
fn integer(bytes: &[u8]) -> Option<([u8; 32], &[u8])> {
    let (mut value, rest) = element(bytes, 0x02)?;
    let (&first, tail) = value.split_first()?;
    if first & 0x80 != 0 {
        return None; // negative
    }
    if first == 0 {
        if let Some(&next) = tail.first() {
            if next & 0x80 == 0 {
                return None; // a needless leading zero
            }
            value = tail;
        }
    }
    if value.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - value.len()..].copy_from_slice(value);
    Some((out, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_positive_integers_only() {
        let sig = |r: &[u8], s: &[u8]| {
            let mut v = std::vec![0x30, (4 + r.len() + s.len()) as u8, 0x02, r.len() as u8];
            v.extend_from_slice(r);
            v.extend_from_slice(&[0x02, s.len() as u8]);
            v.extend_from_slice(s);
            v
        };
        let (r, s) = parse(&sig(&[1], &[0x00, 0x80])).unwrap();
        assert_eq!((r[31], s[31], s[30]), (1, 0x80, 0));
        assert!(parse(&sig(&[0x00, 0x01], &[1])).is_none(), "leading zero");
        assert!(parse(&sig(&[0x80], &[1])).is_none(), "negative");
        assert!(parse(&sig(&[], &[1])).is_none(), "empty integer");
        assert!(parse(&sig(&[1; 33], &[1])).is_none(), "too long");
        let mut padded = sig(&[1], &[1]);
        padded.push(0);
        assert!(parse(&padded).is_none(), "trailing byte");
        assert!(
            parse(&[0x30, 0x81, 0x06, 2, 1, 1, 2, 1, 1]).is_none(),
            "long form"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = parse(&bytes);
        }
    }
}
