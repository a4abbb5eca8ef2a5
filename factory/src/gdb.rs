//! A client for the GDB Remote Serial Protocol over TCP: the debug stub of
//! QEMU (`-gdb tcp::PORT`), OpenOCD, pyOCD or J-Link's GDB server. Only what a
//! provisioning station needs: read and write memory, program flash through
//! the `vFlash*` packets where the stub offers them, continue, and kill.

use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a stub conversation failed.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The connection failed.
    #[error("gdb stub: {0}")]
    Io(#[from] std::io::Error),
    /// The stub sent something that is not a well-formed packet.
    #[error("gdb stub sent a malformed packet: {0}")]
    Malformed(&'static str),
    /// The stub answered with an error code.
    #[error("gdb stub refused {request}: E{code}")]
    Refused {
        /// What was asked (the packet's command letter or name).
        request: String,
        /// Its error code.
        code: String,
    },
    /// The stub answered something unexpected.
    #[error("gdb stub: unexpected answer {answer:?} to {request}")]
    Unexpected {
        /// What was asked.
        request: String,
        /// What came back (shortened).
        answer: String,
    },
}

/// The checksum of a packet's payload.
fn checksum(payload: &[u8]) -> u8 {
    payload.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// Frame a payload: `$payload#cs`, with `#`, `$`, `}` and `*` escaped.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload.len() + 4);
    for &b in payload {
        if matches!(b, b'#' | b'$' | b'}' | b'*') {
            body.push(b'}');
            body.push(b ^ 0x20);
        } else {
            body.push(b);
        }
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(b'$');
    out.extend_from_slice(&body);
    out.push(b'#');
    out.extend_from_slice(format!("{:02x}", checksum(&body)).as_bytes());
    out
}

/// Decode a received packet body (between `$` and `#`) with its two
/// checksum digits: unescape, expand run-length encoding, check the sum.
pub fn decode(body: &[u8], cs: [u8; 2]) -> Result<Vec<u8>, GdbError> {
    let text = std::str::from_utf8(&cs).map_err(|_| GdbError::Malformed("checksum"))?;
    let want = u8::from_str_radix(text, 16).map_err(|_| GdbError::Malformed("checksum"))?;
    if checksum(body) != want {
        return Err(GdbError::Malformed("checksum mismatch"));
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'}' => {
                let next = *body.get(i + 1).ok_or(GdbError::Malformed("escape"))?;
                out.push(next ^ 0x20);
                i += 2;
            }
            b'*' => {
                let last = *out.last().ok_or(GdbError::Malformed("run length"))?;
                let n = *body.get(i + 1).ok_or(GdbError::Malformed("run length"))?;
                let count = n.checked_sub(29).ok_or(GdbError::Malformed("run length"))?;
                out.extend(std::iter::repeat_n(last, usize::from(count)));
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A connection to a stub.
#[derive(Debug)]
pub struct GdbClient {
    stream: BufReader<TcpStream>,
    acks: bool,
    packet_size: usize,
    vflash: bool,
    described: bool,
}

impl GdbClient {
    /// Connect and learn what the stub supports.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, GdbError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut client = Self {
            stream: BufReader::new(stream),
            acks: true,
            packet_size: 1024,
            vflash: false,
            described: false,
        };
        let features = client.request(b"qSupported:multiprocess-;swbreak+;hwbreak+")?;
        let features = String::from_utf8_lossy(&features).into_owned();
        for f in features.split(';') {
            if let Some(size) = f.strip_prefix("PacketSize=") {
                if let Ok(n) = usize::from_str_radix(size, 16) {
                    client.packet_size = n.clamp(64, 64 * 1024);
                }
            }
            if f == "qXfer:memory-map:read+" {
                client.vflash = true;
            }
            if f == "QStartNoAckMode+" && client.request(b"QStartNoAckMode")? == b"OK" {
                client.acks = false;
            }
        }
        // The stop reason; stubs want it asked before other requests.
        client.request(b"?")?;
        Ok(client)
    }

    /// Whether the stub programs flash through `vFlash*` (it publishes a
    /// memory map); otherwise flash is written like RAM (QEMU).
    pub fn has_vflash(&self) -> bool {
        self.vflash
    }

    fn send(&mut self, payload: &[u8]) -> Result<(), GdbError> {
        let framed = frame(payload);
        for _ in 0..3 {
            self.stream.get_mut().write_all(&framed)?;
            if !self.acks {
                return Ok(());
            }
            let mut ack = [0u8; 1];
            loop {
                self.stream.read_exact(&mut ack)?;
                match ack[0] {
                    b'+' => return Ok(()),
                    b'-' => break,
                    _ => continue,
                }
            }
        }
        Err(GdbError::Malformed("the stub keeps rejecting our packet"))
    }

    fn receive(&mut self) -> Result<Vec<u8>, GdbError> {
        let mut byte = [0u8; 1];
        loop {
            self.stream.read_exact(&mut byte)?;
            if byte[0] == b'$' {
                break;
            }
        }
        let mut body = Vec::new();
        loop {
            self.stream.read_exact(&mut byte)?;
            if byte[0] == b'#' {
                break;
            }
            body.push(byte[0]);
            if body.len() > 1 << 20 {
                return Err(GdbError::Malformed("packet too long"));
            }
        }
        let mut cs = [0u8; 2];
        self.stream.read_exact(&mut cs)?;
        match decode(&body, cs) {
            Ok(p) => {
                if self.acks {
                    self.stream.get_mut().write_all(b"+")?;
                }
                Ok(p)
            }
            Err(e) => {
                if self.acks {
                    self.stream.get_mut().write_all(b"-")?;
                }
                Err(e)
            }
        }
    }

    /// Send a request and return the answer (an `Exx` answer is an error).
    pub fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>, GdbError> {
        self.send(payload)?;
        let answer = self.receive()?;
        if answer.len() == 3 && answer[0] == b'E' {
            return Err(GdbError::Refused {
                request: name(payload),
                code: String::from_utf8_lossy(&answer[1..]).into_owned(),
            });
        }
        Ok(answer)
    }

    fn expect_ok(&mut self, payload: &[u8]) -> Result<(), GdbError> {
        let answer = self.request(payload)?;
        if answer == b"OK" {
            Ok(())
        } else {
            Err(GdbError::Unexpected {
                request: name(payload),
                answer: String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned(),
            })
        }
    }

    /// Read `buf.len()` bytes at `addr`.
    pub fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), GdbError> {
        let chunk = (self.packet_size / 2).saturating_sub(16).max(16);
        let mut done = 0;
        while done < buf.len() {
            let n = chunk.min(buf.len() - done);
            let at = addr
                .checked_add(done as u32)
                .ok_or(GdbError::Malformed("address overflow"))?;
            let answer = self.request(format!("m{at:x},{n:x}").as_bytes())?;
            let bytes = hex::decode(&answer).map_err(|_| GdbError::Unexpected {
                request: "m".into(),
                answer: String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned(),
            })?;
            if bytes.is_empty() || bytes.len() > n {
                return Err(GdbError::Malformed("memory read of the wrong length"));
            }
            buf[done..done + bytes.len()].copy_from_slice(&bytes);
            done += bytes.len();
        }
        Ok(())
    }

    /// Write `data` at `addr` (RAM, or flash on stubs that map it writable).
    pub fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), GdbError> {
        let chunk = (self.packet_size / 2).saturating_sub(32).max(16);
        for (i, part) in data.chunks(chunk).enumerate() {
            let at = addr + (i * chunk) as u32;
            let mut payload = format!("M{at:x},{:x}:", part.len()).into_bytes();
            payload.extend_from_slice(hex::encode(part).as_bytes());
            self.expect_ok(&payload)?;
        }
        Ok(())
    }

    /// Erase and program flash through `vFlashErase`/`vFlashWrite`/`vFlashDone`.
    pub fn program_flash(&mut self, addr: u32, data: &[u8], page: u32) -> Result<(), GdbError> {
        let start = addr - addr % page;
        let end = (addr + data.len() as u32).div_ceil(page) * page;
        self.expect_ok(format!("vFlashErase:{start:x},{:x}", end - start).as_bytes())?;
        let chunk = (self.packet_size / 2).max(64);
        for (i, part) in data.chunks(chunk).enumerate() {
            let mut payload = format!("vFlashWrite:{:x}:", addr + (i * chunk) as u32).into_bytes();
            payload.extend_from_slice(part); // binary; `frame` escapes it
            self.expect_ok(&payload)?;
        }
        self.expect_ok(b"vFlashDone")
    }

    /// Write register `reg` (the stub's numbering) with `value_hex`, the
    /// register's bytes in target order as hex.
    pub fn write_register(&mut self, reg: u32, value_hex: &str) -> Result<(), GdbError> {
        if !self.described {
            // Stubs number registers by the target description, and QEMU's
            // accepts `P` only from a client that has read it.
            self.request(b"qXfer:features:read:target.xml:0,ffb")?;
            self.described = true;
        }
        self.expect_ok(format!("P{reg:x}={value_hex}").as_bytes())
    }

    /// Kill the target (`k`): the stub answers nothing, a simulator exits.
    pub fn kill(mut self) -> Result<(), GdbError> {
        self.send(b"k")
    }

    /// Detach: the target runs on and the stub is free for the next
    /// debugger (a plain `c` and a dropped connection leave some stubs, QEMU's
    /// among them, halting the target again).
    pub fn detach(&mut self) -> Result<(), GdbError> {
        self.expect_ok(b"D")
    }
}

/// A request's name for messages: its command word or letter.
fn name(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let end = text.find([':', ',']).unwrap_or(text.len()).min(
        if text.starts_with('v') || text.starts_with('q') || text.starts_with('Q') {
            usize::MAX
        } else {
            1
        },
    );
    text[..end.min(text.len())].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_decode_round_trip_with_escapes() {
        let payload = b"M20000000,4:}#$*";
        let framed = frame(payload);
        assert_eq!(framed[0], b'$');
        let hash = framed.iter().rposition(|&b| b == b'#').unwrap();
        let cs = [framed[hash + 1], framed[hash + 2]];
        assert_eq!(decode(&framed[1..hash], cs).unwrap(), payload);
    }

    #[test]
    fn run_length_encoding_expands() {
        // "0* " is '0' repeated 3 more times (' ' = 32 = 29 + 3).
        let body = b"0* ";
        let cs = format!("{:02x}", checksum(body));
        let cs = [cs.as_bytes()[0], cs.as_bytes()[1]];
        assert_eq!(decode(body, cs).unwrap(), b"0000");
    }

    #[test]
    fn bad_checksums_and_truncated_escapes_are_errors() {
        assert!(decode(b"OK", *b"00").is_err());
        assert!(decode(b"OK", *b"zz").is_err());
        let body = b"a}";
        let cs = format!("{:02x}", checksum(body));
        assert!(decode(body, [cs.as_bytes()[0], cs.as_bytes()[1]]).is_err());
        let body = b"*!";
        let cs = format!("{:02x}", checksum(body));
        assert!(decode(body, [cs.as_bytes()[0], cs.as_bytes()[1]]).is_err());
    }

    #[test]
    fn request_names() {
        assert_eq!(name(b"m10000060,8"), "m");
        assert_eq!(name(b"vFlashErase:0,1000"), "vFlashErase");
        assert_eq!(name(b"qSupported:x"), "qSupported");
    }

    proptest::proptest! {
        /// Whatever a stub sends decodes or is refused; never a panic.
        #[test]
        fn decode_is_total(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64), cs in proptest::array::uniform2(proptest::num::u8::ANY)) {
            let _ = decode(&body, cs);
        }

        /// Anything we frame decodes back to itself.
        #[test]
        fn frame_round_trips(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let framed = frame(&payload);
            let hash = framed.len() - 3;
            let decoded = decode(&framed[1..hash], [framed[hash + 1], framed[hash + 2]]).unwrap();
            proptest::prop_assert_eq!(decoded, payload);
        }
    }
}
