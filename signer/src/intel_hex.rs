//! Intel HEX: reading firmware from it and writing images to it.
//!
//! Reading follows what `imgtool` (through Python's `intelhex`) accepts: data,
//! end-of-file, extended segment/linear address and start address records;
//! overlapping data is an error; gaps read back as 0xFF. Writing produces the
//! same text `intelhex` does: 16-byte data records that never cross a 64 KiB
//! boundary, an extended linear address record before each 64 KiB segment
//! when any address is above 0xFFFF, uppercase hex and `\n` line ends.

use std::fmt::Write as _;

/// Why Intel HEX text was refused. Lines are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// The line does not start with `:`.
    #[error("Intel HEX line {line}: does not start with ':'")]
    MissingColon {
        /// Line number.
        line: usize,
    },
    /// Not hex digits, or an odd count of them.
    #[error("Intel HEX line {line}: not an even number of hex digits")]
    BadDigits {
        /// Line number.
        line: usize,
    },
    /// The record is shorter or longer than its length byte says.
    #[error("Intel HEX line {line}: record length does not match its byte count")]
    BadLength {
        /// Line number.
        line: usize,
    },
    /// The checksum byte is wrong.
    #[error("Intel HEX line {line}: checksum mismatch")]
    BadChecksum {
        /// Line number.
        line: usize,
    },
    /// An unknown record type, or a known one with the wrong length.
    #[error("Intel HEX line {line}: invalid record of type {kind:#04x}")]
    BadRecord {
        /// Line number.
        line: usize,
        /// Record type.
        kind: u8,
    },
    /// Data at an address that already holds data.
    #[error("Intel HEX line {line}: data at address {address:#x} overlaps earlier data")]
    Overlap {
        /// Line number.
        line: usize,
        /// First overlapping address.
        address: u64,
    },
    /// Data beyond the 32-bit address space.
    #[error("Intel HEX line {line}: data runs past address 0xffffffff")]
    AddressOverflow {
        /// Line number.
        line: usize,
    },
    /// No end-of-file record.
    #[error("Intel HEX: no end-of-file record")]
    MissingEof,
    /// The data spans more than any nRF flash holds.
    #[error("Intel HEX: data spans {span:#x} bytes, more than the {max:#x} an image may (a sparse file?)")]
    TooLarge {
        /// From the lowest to the highest address.
        span: u64,
        /// The limit, [`MAX_SPAN`].
        max: u64,
    },
}

/// The largest span from lowest to highest address a HEX file may cover
/// (16 MiB: far more than any nRF's flash), so that two records far apart
/// cannot make us allocate gigabytes of gap.
pub const MAX_SPAN: u64 = 16 << 20;

/// Firmware read from Intel HEX, made contiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexData {
    /// Lowest address with data, if any.
    pub base_addr: Option<u32>,
    /// Bytes from `base_addr` to the highest address, gaps filled with 0xFF.
    pub data: Vec<u8>,
}

fn decode_record(line: &str, n: usize) -> Result<Vec<u8>, HexError> {
    let digits = line
        .strip_prefix(':')
        .ok_or(HexError::MissingColon { line: n })?;
    let bytes = hex::decode(digits).map_err(|_| HexError::BadDigits { line: n })?;
    if bytes.len() < 5 || bytes.len() != usize::from(bytes[0]) + 5 {
        return Err(HexError::BadLength { line: n });
    }
    if bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) != 0 {
        return Err(HexError::BadChecksum { line: n });
    }
    Ok(bytes)
}

/// Parse Intel HEX text.
pub fn parse(text: &str) -> Result<HexData, HexError> {
    // (address, line, bytes) of each data record, in file order.
    let mut chunks: Vec<(u64, usize, Vec<u8>)> = Vec::new();
    let mut offset: u64 = 0;
    let mut saw_eof = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let rec = decode_record(line, n)?;
        let len = usize::from(rec[0]);
        let addr = u64::from(u16::from_be_bytes([rec[1], rec[2]]));
        let kind = rec[3];
        let data = &rec[4..4 + len];
        match (kind, len) {
            (0x00, _) => {
                let start = offset + addr;
                if start + len as u64 > 1 << 32 {
                    return Err(HexError::AddressOverflow { line: n });
                }
                if len > 0 {
                    chunks.push((start, n, data.to_vec()));
                }
            }
            (0x01, 0) => {
                saw_eof = true;
                break;
            }
            (0x02, 2) => offset = u64::from(u16::from_be_bytes([data[0], data[1]])) * 16,
            (0x04, 2) => offset = u64::from(u16::from_be_bytes([data[0], data[1]])) << 16,
            (0x03 | 0x05, 4) => {}
            _ => return Err(HexError::BadRecord { line: n, kind }),
        }
    }
    if !saw_eof {
        return Err(HexError::MissingEof);
    }
    flatten(chunks)
}

fn flatten(mut chunks: Vec<(u64, usize, Vec<u8>)>) -> Result<HexData, HexError> {
    chunks.sort_by_key(|c| c.0);
    let (Some(first), Some(last)) = (
        chunks.first(),
        chunks.iter().map(|c| c.0 + c.2.len() as u64).max(),
    ) else {
        return Ok(HexData {
            base_addr: None,
            data: Vec::new(),
        });
    };
    let base = first.0;
    if last - base > MAX_SPAN {
        return Err(HexError::TooLarge {
            span: last - base,
            max: MAX_SPAN,
        });
    }
    let mut data = vec![0xffu8; (last - base) as usize];
    let mut filled_to = base;
    for (addr, line, bytes) in &chunks {
        if *addr < filled_to {
            return Err(HexError::Overlap {
                line: *line,
                address: *addr,
            });
        }
        let at = (addr - base) as usize;
        data[at..at + bytes.len()].copy_from_slice(bytes);
        filled_to = addr + bytes.len() as u64;
    }
    Ok(HexData {
        base_addr: Some(base as u32),
        data,
    })
}

fn push_record(out: &mut String, addr: u16, kind: u8, data: &[u8]) {
    let [hi, lo] = addr.to_be_bytes();
    let mut sum = (data.len() as u8)
        .wrapping_add(hi)
        .wrapping_add(lo)
        .wrapping_add(kind);
    let _ = write!(out, ":{:02X}{:04X}{:02X}", data.len(), addr, kind);
    for b in data {
        sum = sum.wrapping_add(*b);
        let _ = write!(out, "{b:02X}");
    }
    let _ = writeln!(out, "{:02X}", sum.wrapping_neg());
}

/// Why data could not be written as Intel HEX.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexWriteError {
    /// Two pieces cover the same address.
    #[error("data pieces overlap at address {0:#x}")]
    Overlap(u64),
    /// Data beyond the 32-bit address space.
    #[error("data runs past address 0xffffffff")]
    AddressOverflow,
}

/// Write pieces of data at their addresses as Intel HEX text. Adjacent pieces
/// are joined, so records run across them as they would in one buffer.
pub fn write(pieces: &[(u32, &[u8])]) -> Result<String, HexWriteError> {
    let mut sorted: Vec<(u64, &[u8])> = pieces
        .iter()
        .filter(|p| !p.1.is_empty())
        .map(|&(a, d)| (u64::from(a), d))
        .collect();
    sorted.sort_by_key(|p| p.0);
    // Join adjacent pieces into runs of contiguous addresses.
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    for (addr, data) in sorted {
        if addr + data.len() as u64 > 1 << 32 {
            return Err(HexWriteError::AddressOverflow);
        }
        match runs.last_mut() {
            Some((start, run)) if *start + run.len() as u64 == addr => run.extend_from_slice(data),
            Some((start, run)) if *start + run.len() as u64 > addr => {
                return Err(HexWriteError::Overlap(addr));
            }
            _ => runs.push((addr, data.to_vec())),
        }
    }
    let max_addr = runs.last().map_or(0, |(s, r)| s + r.len() as u64 - 1);
    let need_ela = max_addr > 0xffff;
    let total: usize = runs.iter().map(|r| r.1.len()).sum();
    let mut out = String::with_capacity(total / 16 * 44 + 64);
    let mut segment: Option<u64> = None;
    for (start, run) in &runs {
        let mut addr = *start;
        let mut rest = run.as_slice();
        while !rest.is_empty() {
            let high = addr >> 16;
            if need_ela && segment != Some(high) {
                push_record(&mut out, 0, 0x04, &(high as u16).to_be_bytes());
                segment = Some(high);
            }
            let to_boundary = 0x1_0000 - (addr & 0xffff);
            let n = rest.len().min(16).min(to_boundary as usize);
            let (now, later) = rest.split_at(n);
            push_record(&mut out, (addr & 0xffff) as u16, 0x00, now);
            addr += n as u64;
            rest = later;
        }
    }
    out.push_str(":00000001FF\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sparse_file_cannot_force_a_huge_allocation() {
        // One byte at 0, one byte at 0xFFFF0000: 4 GiB of gap.
        let text = ":0100000001FE\n:02000004FFFFFC\n:01000000AA55\n:00000001FF\n";
        match parse(text) {
            Err(HexError::TooLarge { span, .. }) => assert!(span > MAX_SPAN),
            other => panic!("{other:?}"),
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_across_64k_boundaries() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let text = write(&[(0xfff0, &data)]).unwrap();
        assert!(text.starts_with(":020000040000FA\n"));
        let back = parse(&text).unwrap();
        assert_eq!(back.base_addr, Some(0xfff0));
        assert_eq!(back.data, data);
    }

    #[test]
    fn small_images_have_no_extended_address_record() {
        let text = write(&[(0x100, &[1, 2, 3])]).unwrap();
        assert_eq!(text, ":03010000010203F6\n:00000001FF\n");
    }

    #[test]
    fn gaps_fill_with_ff_and_overlaps_are_refused() {
        let text = ":0100000001FE\n:01000200030A\n:00000001FF\n";
        // second record's checksum is wrong on purpose
        assert!(matches!(
            parse(text),
            Err(HexError::BadChecksum { line: 2 })
        ));
        let text = ":0100000001FE\n:0100020003FA\n:00000001FF\n";
        assert_eq!(parse(text).unwrap().data, vec![1, 0xff, 3]);
        let text = ":0100000001FE\n:0100000003FC\n:00000001FF\n";
        assert!(matches!(
            parse(text),
            Err(HexError::Overlap { line: 2, .. })
        ));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("0100000001FE\n"),
            Err(HexError::MissingColon { line: 1 })
        );
        assert_eq!(parse(":01000000\n"), Err(HexError::BadLength { line: 1 }));
        assert_eq!(parse(":0G\n"), Err(HexError::BadDigits { line: 1 }));
        assert_eq!(parse(":0100000001FE\n"), Err(HexError::MissingEof));
        assert_eq!(
            parse(":00000007F9\n"),
            Err(HexError::BadRecord { line: 1, kind: 7 })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn arbitrary_records_never_panic(lines in proptest::collection::vec("[:0-9A-F]{0,24}", 0..8)) {
            let _ = parse(&lines.join("\n"));
        }

        #[test]
        fn write_then_parse_is_identity(base in 0u32..0x2_0000, data in proptest::collection::vec(any::<u8>(), 1..600)) {
            let back = parse(&write(&[(base, &data)]).unwrap()).unwrap();
            prop_assert_eq!(back.base_addr, Some(base));
            prop_assert_eq!(back.data, data);
        }
    }
}
