//! Structural parsing: header, TLV areas and the bytes after them.

use core::ops::Range;

use super::{
    tlv, ImageError, ImageHeader, Tail, TLV_INFO_MAGIC, TLV_INFO_SIZE, TLV_PROT_INFO_MAGIC,
};

/// Size of one TLV's header (type, length).
pub const TLV_HEADER_SIZE: usize = 4;

/// Encode a TLV header. Types are 16-bit little-endian; MCUboot's own types
/// are below 0x100, so their high byte is zero as imgtool writes it.
pub fn tlv_header(kind: u16, len: u16) -> [u8; TLV_HEADER_SIZE] {
    let [k0, k1] = kind.to_le_bytes();
    let [l0, l1] = len.to_le_bytes();
    [k0, k1, l0, l1]
}

/// Encode a TLV info header: area magic and total length including itself.
pub fn tlv_info(magic: u16, total: u16) -> [u8; TLV_INFO_SIZE] {
    tlv_header(magic, total)
}

/// One TLV entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// Type.
    pub kind: u16,
    /// Offset of the TLV header in the image.
    pub offset: usize,
    /// The value.
    pub value: &'a [u8],
    /// Whether it sits in the protected (hashed) area.
    pub protected: bool,
}

/// A structurally valid image: header, TLV areas in bounds, every TLV whole.
/// Nothing cryptographic has been checked yet; see [`Image::verify`].
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    bytes: &'a [u8],
    header: ImageHeader,
    protected: Option<(usize, usize)>,
    unprotected: (usize, usize),
}

fn read_u16(bytes: &[u8], at: usize, what: &'static str) -> Result<u16, ImageError> {
    match bytes.get(at..at + 2) {
        Some(b) => Ok(u16::from_le_bytes([b[0], b[1]])),
        None => Err(ImageError::Truncated {
            what,
            needed: at as u64 + 2,
            len: bytes.len(),
        }),
    }
}

/// Read a TLV info header at `start` with `magic`; check every TLV in the
/// area is whole. Returns the area's end.
fn check_area(bytes: &[u8], start: usize, magic: u16) -> Result<usize, ImageError> {
    let found = read_u16(bytes, start, "TLV info header")?;
    if found != magic {
        return Err(ImageError::BadTlvInfoMagic {
            offset: start,
            found,
            expected: magic,
        });
    }
    let total = read_u16(bytes, start + 2, "TLV info header")?;
    if usize::from(total) < TLV_INFO_SIZE {
        return Err(ImageError::BadTlvAreaLength {
            offset: start,
            total,
        });
    }
    let end = start + usize::from(total);
    if end > bytes.len() {
        return Err(ImageError::Truncated {
            what: "TLV area",
            needed: end as u64,
            len: bytes.len(),
        });
    }
    let mut pos = start + TLV_INFO_SIZE;
    while pos < end {
        if pos + TLV_HEADER_SIZE > end {
            return Err(ImageError::TlvOverrun {
                offset: pos,
                area_end: end,
            });
        }
        let len = usize::from(u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let next = pos + TLV_HEADER_SIZE + len;
        if next > end {
            return Err(ImageError::TlvOverrun {
                offset: pos,
                area_end: end,
            });
        }
        pos = next;
    }
    Ok(end)
}

impl<'a> Image<'a> {
    /// Parse the structure of an image. `bytes` may extend past the TLV area
    /// (a padded image, or a whole slot); see [`Image::tail`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ImageError> {
        let header = ImageHeader::parse(bytes)?;
        let tlv_off = header.tlv_offset();
        // Room for at least the unprotected info header, checked in u64 so a
        // huge image_size cannot wrap on 32-bit targets.
        if tlv_off + TLV_INFO_SIZE as u64 > bytes.len() as u64 {
            return Err(ImageError::Truncated {
                what: "payload and TLV info",
                needed: tlv_off + TLV_INFO_SIZE as u64,
                len: bytes.len(),
            });
        }
        let tlv_off = tlv_off as usize;
        let first_magic = read_u16(bytes, tlv_off, "TLV info header")?;
        let (protected, unprot_start) = if header.protected_tlv_size != 0 {
            let end = check_area(bytes, tlv_off, TLV_PROT_INFO_MAGIC)?;
            let area = (end - tlv_off) as u16;
            if area != header.protected_tlv_size {
                return Err(ImageError::ProtectedSizeMismatch {
                    header: header.protected_tlv_size,
                    area,
                });
            }
            (Some((tlv_off, end)), end)
        } else if first_magic == TLV_PROT_INFO_MAGIC {
            let area = read_u16(bytes, tlv_off + 2, "TLV info header")?;
            return Err(ImageError::ProtectedSizeMismatch { header: 0, area });
        } else {
            (None, tlv_off)
        };
        let unprot_end = check_area(bytes, unprot_start, TLV_INFO_MAGIC)?;
        Ok(Self {
            bytes,
            header,
            protected,
            unprotected: (unprot_start, unprot_end),
        })
    }

    /// The image header.
    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    /// All the bytes given to [`Image::parse`].
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The payload (after the header, before the TLVs).
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload_range()]
    }

    /// Byte range of the payload.
    pub fn payload_range(&self) -> Range<usize> {
        usize::from(self.header.header_size)..self.hashed_len() - self.protected_len()
    }

    /// Byte range of the protected TLV area (with its info header), if any.
    pub fn protected_range(&self) -> Option<Range<usize>> {
        self.protected.map(|(s, e)| s..e)
    }

    /// Byte range of the unprotected TLV area (with its info header).
    pub fn unprotected_range(&self) -> Range<usize> {
        self.unprotected.0..self.unprotected.1
    }

    fn protected_len(&self) -> usize {
        self.protected.map_or(0, |(s, e)| e - s)
    }

    fn hashed_len(&self) -> usize {
        self.unprotected.0
    }

    /// What the image hash and signature cover: header, payload, protected TLVs.
    pub fn hashed_region(&self) -> &'a [u8] {
        &self.bytes[..self.hashed_len()]
    }

    /// End of the TLV areas: the size of the image proper.
    pub fn tlv_end(&self) -> usize {
        self.unprotected.1
    }

    /// Every TLV, protected area first.
    pub fn tlvs(&self) -> TlvIter<'a> {
        TlvIter {
            bytes: self.bytes,
            pos: self.protected.map_or(self.unprotected.0, |(s, _)| s) + TLV_INFO_SIZE,
            end: self.protected.map_or(self.unprotected.1, |(_, e)| e),
            protected: self.protected.is_some(),
            next: self.protected.map(|_| self.unprotected),
        }
    }

    /// The first TLV of `kind` in the protected (`true`) or unprotected area.
    pub fn find(&self, kind: u16, protected: bool) -> Option<Tlv<'a>> {
        self.tlvs()
            .find(|t| t.kind == kind && t.protected == protected)
    }

    /// The security counter from the protected area, if present and 4 bytes.
    pub fn security_counter(&self) -> Option<u32> {
        let t = self.find(tlv::SEC_CNT, true)?;
        let b: [u8; 4] = t.value.try_into().ok()?;
        Some(u32::from_le_bytes(b))
    }

    /// Classify the bytes after the TLV area (padding and MCUboot trailer).
    pub fn tail(&self) -> Result<Tail, ImageError> {
        Tail::classify(&self.bytes[self.tlv_end()..], self.tlv_end())
    }
}

/// Iterator over the TLVs of a parsed [`Image`].
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    protected: bool,
    next: Option<(usize, usize)>,
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        loop {
            if self.pos + TLV_HEADER_SIZE <= self.end {
                let h = self.bytes.get(self.pos..self.pos + TLV_HEADER_SIZE)?;
                let kind = u16::from_le_bytes([h[0], h[1]]);
                let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
                let start = self.pos + TLV_HEADER_SIZE;
                let value = self.bytes.get(start..start + len)?;
                let item = Tlv {
                    kind,
                    offset: self.pos,
                    value,
                    protected: self.protected,
                };
                self.pos = start + len;
                return Some(item);
            }
            let (s, e) = self.next.take()?;
            self.pos = s + TLV_INFO_SIZE;
            self.end = e;
            self.protected = false;
        }
    }
}
