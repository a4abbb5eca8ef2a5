//! Device authentication over the chip's UART: a line protocol
//! (`docs/device-auth.md`, "Over the UART"). The device parses requests and
//! writes answers without allocating; the station parses answers. Lines end
//! in `\n`; the device's other console lines (`BOOT …`, `APP …`) are not
//! answers and are skipped by the station.
//!
//! ```text
//! station: AUTH <nonce, 64 hex digits>
//! device:  AUTH serial=<decimal> hw_id=<16 hex digits> sig=<r ‖ s, 128 hex digits>
//! device:  AUTH error=unprovisioned|no-key|bad-request
//! station: BYE
//! device:  BYE                         (and stops: on QEMU, the run ends)
//! ```

use crate::record::HwId;

/// The longest line either side sends, without its `\n`.
pub const MAX_LINE: usize = 200;

/// What the station asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Sign the challenge with this nonce.
    Auth([u8; 32]),
    /// End the session.
    Bye,
}

/// Why a device could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No provisioning record verified for this chip at boot.
    Unprovisioned,
    /// No usable device key on the chip.
    NoKey,
    /// The request was not one of the protocol's.
    BadRequest,
}

impl Refusal {
    /// The code on the line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unprovisioned => "unprovisioned",
            Self::NoKey => "no-key",
            Self::BadRequest => "bad-request",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        [Self::Unprovisioned, Self::NoKey, Self::BadRequest]
            .into_iter()
            .find(|r| r.code() == code)
    }
}

/// The device's answer to `AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Signed: who the device says it is, and its signature.
    Signed {
        /// The serial from its verified record.
        serial: u32,
        /// Its hardware ID from FICR.
        hw_id: HwId,
        /// `r ‖ s` over the device-authentication digest.
        sig: [u8; 64],
    },
    /// Not signed, and why.
    Refused(Refusal),
}

/// A line that is not what the protocol allows there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a device-authentication line")]
pub struct LineError;

fn hex_into(text: &str, out: &mut [u8]) -> Result<(), LineError> {
    let t = text.as_bytes();
    if t.len() != 2 * out.len() {
        return Err(LineError);
    }
    let digit = |c: u8| (c as char).to_digit(16).ok_or(LineError);
    for (b, pair) in out.iter_mut().zip(t.chunks_exact(2)) {
        *b = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(())
}

fn trim_end(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

impl Request {
    /// Parse a request line (with or without its line end).
    pub fn parse(line: &[u8]) -> Result<Self, LineError> {
        let text = core::str::from_utf8(trim_end(line)).map_err(|_| LineError)?;
        if text == "BYE" {
            return Ok(Self::Bye);
        }
        let nonce_hex = text.strip_prefix("AUTH ").ok_or(LineError)?;
        let mut nonce = [0u8; 32];
        hex_into(nonce_hex, &mut nonce)?;
        Ok(Self::Auth(nonce))
    }
}

/// Writes a line into a fixed buffer.
struct Out<'a> {
    buf: &'a mut [u8; MAX_LINE + 1],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn hex(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.put(&crate::text::hex_pair(b));
        }
    }

    fn dec(&mut self, n: u32) {
        self.put(crate::text::decimal(n, &mut [0u8; 10]));
    }
}

impl Answer {
    /// The answer's line, `\n` included, in `buf`.
    pub fn write<'a>(&self, buf: &'a mut [u8; MAX_LINE + 1]) -> &'a [u8] {
        let mut out = Out { buf, len: 0 };
        match self {
            Self::Signed { serial, hw_id, sig } => {
                out.put(b"AUTH serial=");
                out.dec(*serial);
                out.put(b" hw_id=");
                out.hex(&hw_id.0);
                out.put(b" sig=");
                out.hex(sig);
            }
            Self::Refused(r) => {
                out.put(b"AUTH error=");
                out.put(r.code().as_bytes());
            }
        }
        out.put(b"\n");
        let len = out.len;
        &buf[..len]
    }

    /// Parse a device line: `Ok(None)` for a line that is not an answer
    /// (console output), an error for an `AUTH` line that is malformed.
    pub fn parse(line: &[u8]) -> Result<Option<Self>, LineError> {
        let Ok(text) = core::str::from_utf8(trim_end(line)) else {
            return Ok(None);
        };
        let Some(rest) = text.strip_prefix("AUTH ") else {
            return Ok(None);
        };
        if let Some(code) = rest.strip_prefix("error=") {
            return Refusal::from_code(code)
                .map(|r| Some(Self::Refused(r)))
                .ok_or(LineError);
        }
        let mut fields = rest.split(' ');
        let (Some(serial), Some(hw_id), Some(sig), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(LineError);
        };
        let serial = serial.strip_prefix("serial=").ok_or(LineError)?;
        if serial.is_empty() || serial.len() > 10 || !serial.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LineError);
        }
        let serial: u32 = serial.parse().map_err(|_| LineError)?;
        let mut id = [0u8; 8];
        hex_into(hw_id.strip_prefix("hw_id=").ok_or(LineError)?, &mut id)?;
        let mut s = [0u8; 64];
        hex_into(sig.strip_prefix("sig=").ok_or(LineError)?, &mut s)?;
        Ok(Some(Self::Signed {
            serial,
            hw_id: HwId(id),
            sig: s,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let line = [b"AUTH ".as_slice(), &[b'a'; 64], b"\r\n"].concat();
        assert_eq!(Request::parse(&line), Ok(Request::Auth([0xaa; 32])));
        assert_eq!(Request::parse(b"BYE\n"), Ok(Request::Bye));
        for bad in [&b"AUTH aa\n"[..], b"auth", b"", b"BYE now", b"\xff\xfe"] {
            assert_eq!(Request::parse(bad), Err(LineError), "{bad:?}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let mut buf = [0u8; MAX_LINE + 1];
        for a in [
            Answer::Signed {
                serial: 4_294_967_295,
                hw_id: HwId([0x12, 0x34, 0x56, 0x78, 0, 0, 0, 3]),
                sig: [0xab; 64],
            },
            Answer::Refused(Refusal::Unprovisioned),
            Answer::Refused(Refusal::NoKey),
            Answer::Refused(Refusal::BadRequest),
        ] {
            let line = a.write(&mut buf);
            assert!(line.len() <= MAX_LINE + 1 && line.ends_with(b"\n"));
            assert_eq!(Answer::parse(line), Ok(Some(a)));
        }
        assert_eq!(
            Answer::parse(b"BOOT ok version=1.0.0+0 counter=1\n"),
            Ok(None)
        );
        assert_eq!(Answer::parse(b"AUTH error=nope"), Err(LineError));
        assert_eq!(
            Answer::parse(b"AUTH serial=1 hw_id=00 sig=00"),
            Err(LineError)
        );
        assert_eq!(
            Answer::parse(b"AUTH serial=+1 hw_id=0000000000000000 sig=00"),
            Err(LineError)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_line_gets_a_verdict(line in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = Request::parse(&line);
            let _ = Answer::parse(&line);
            let mut with_prefix = b"AUTH serial=".to_vec();
            with_prefix.extend_from_slice(&line);
            let _ = Answer::parse(&with_prefix);
        }
    }
}
