//! `imgtool dumpinfo` output, for the drop-in: the same human layout and the
//! same JSON structure imgtool 2.5 prints, from our own parser.

use std::fmt::Write as _;

use firmware::image::{flags, tlv, Image, BOOT_MAGIC, BOOT_MAGIC_SIZE};
use serde::Serialize;

const LINE: usize = 60;

#[derive(Serialize)]
struct Header {
    magic: u32,
    load_addr: u32,
    hdr_size: u16,
    protected_tlv_size: u16,
    img_size: u32,
    flags: u32,
    version: String,
}

#[derive(Serialize, Default)]
struct AreaHeader {
    #[serde(skip_serializing_if = "Option::is_none")]
    magic: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tlv_tot: Option<u16>,
}

#[derive(Serialize)]
struct TlvRecord {
    #[serde(rename = "type")]
    kind: u16,
    type_name: &'static str,
    len: usize,
    data: String,
    #[serde(skip)]
    bytes: Vec<u8>,
}

#[derive(Serialize)]
struct TlvArea {
    tlv_hdr_prot: AreaHeader,
    tlvs_prot: Vec<TlvRecord>,
    tlv_hdr: AreaHeader,
    tlvs: Vec<TlvRecord>,
}

#[derive(Serialize, Default)]
struct Trailer {
    #[serde(skip_serializing_if = "Option::is_none")]
    magic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_ok: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copy_done: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swap_info: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swap_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_field_len: Option<usize>,
    #[serde(skip)]
    magic_bytes: Vec<u8>,
}

/// What imgtool's dumpinfo collects.
#[derive(Serialize)]
pub(crate) struct ImgInfo {
    filename: String,
    header: Header,
    tlv_area: TlvArea,
    trailer: Trailer,
    #[serde(skip)]
    warning: Option<&'static str>,
}

fn records(image: &Image<'_>, protected: bool) -> Vec<TlvRecord> {
    image
        .tlvs()
        .filter(|t| t.protected == protected)
        .map(|t| TlvRecord {
            kind: t.kind,
            type_name: tlv::name(t.kind).unwrap_or("UNKNOWN"),
            len: t.value.len(),
            data: hex::encode(t.value),
            bytes: t.value.to_vec(),
        })
        .collect()
}

fn area_header(bytes: &[u8], at: usize) -> AreaHeader {
    let word = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    AreaHeader {
        magic: Some(word(at)),
        tlv_tot: Some(word(at + 2)),
    }
}

fn align_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

/// Collect what imgtool shows of an image.
pub(crate) fn collect(filename: &str, image: &Image<'_>) -> ImgInfo {
    let b = image.bytes();
    let h = image.header();
    let mut trailer = Trailer::default();
    let mut warning = None;
    if b.len() > image.tlv_end() && b.len() >= BOOT_MAGIC_SIZE {
        let magic = &b[b.len() - BOOT_MAGIC_SIZE..];
        trailer.magic = Some(hex::encode(magic));
        trailer.magic_bytes = magic.to_vec();
        let max_align = if magic == BOOT_MAGIC {
            Some(8)
        } else if magic[2..] == aligned_tail() {
            Some(usize::from(u16::from_le_bytes([magic[0], magic[1]])))
        } else {
            warning = Some("Warning: the trailer magic value is invalid!");
            None
        };
        if let Some(a) = max_align.filter(|a| *a > 0) {
            let magic_area = align_up(BOOT_MAGIC_SIZE, a);
            let at = |k: usize| b.len().checked_sub(magic_area + k * a);
            trailer.image_ok = at(1).map(|o| b[o]);
            trailer.copy_done = at(2).map(|o| b[o]);
            trailer.swap_info = at(3).map(|o| b[o]);
            trailer.swap_size = at(4)
                .and_then(|o| b.get(o..o + 4))
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            if h.flags & (flags::ENCRYPTED_AES128 | flags::ENCRYPTED_AES256) != 0 {
                trailer.key_field_len = Some(align_up(16, a) * 2);
            }
        }
    }
    ImgInfo {
        filename: filename.to_owned(),
        header: Header {
            magic: firmware::image::IMAGE_MAGIC,
            load_addr: h.load_addr,
            hdr_size: h.header_size,
            protected_tlv_size: h.protected_tlv_size,
            img_size: h.image_size,
            flags: h.flags,
            version: h.version.to_string(),
        },
        tlv_area: TlvArea {
            tlv_hdr_prot: image
                .protected_range()
                .map(|r| area_header(b, r.start))
                .unwrap_or_default(),
            tlvs_prot: records(image, true),
            tlv_hdr: area_header(b, image.unprotected_range().start),
            tlvs: records(image, false),
        },
        trailer,
        warning,
    }
}

/// The 14 bytes that follow the alignment in a non-default boot magic.
fn aligned_tail() -> [u8; 14] {
    let layout = firmware::image::TrailerLayout {
        align: 1,
        max_align: 16,
        max_sectors: 0,
        overwrite_only: true,
        enc_key_size: 0,
    };
    let m = layout.boot_magic();
    let mut t = [0u8; 14];
    t.copy_from_slice(&m[2..]);
    t
}

fn row(text: &str) -> String {
    let head = format!("#### {text} ");
    let fill = "#".repeat(LINE.saturating_sub(head.len()));
    head + &fill
}

fn frame(title: &str, content: &str) -> String {
    let blank = format!("|{}|", " ".repeat(LINE - 2));
    let offset = (LINE - content.len()) / 2;
    let pre = format!("|{}", " ".repeat(offset.saturating_sub(1)));
    let post = format!(
        "{}|",
        " ".repeat(LINE.saturating_sub(pre.len() + content.len() + 1))
    );
    [
        row(title),
        blank.clone(),
        format!("{pre}{content}{post}"),
        blank,
        "#".repeat(LINE),
    ]
    .join("\n")
}

fn tlv_lines(list: &[TlvRecord]) -> String {
    let indent = " ".repeat(LINE / 8);
    let mut lines = Vec::new();
    for t in list {
        lines.push(format!("{indent} {}", "-".repeat(45)));
        lines.push(format!("{indent} type: {} ({:#x})", t.type_name, t.kind));
        lines.push(format!("{indent} len:  {:#x}", t.len));
        let mut line = format!("{indent} data: ");
        for (j, byte) in t.bytes.iter().enumerate() {
            let _ = write!(line, "{byte:#04x} ");
            if (j + 1) % 8 == 0 && j + 1 != t.bytes.len() {
                lines.push(std::mem::replace(&mut line, " ".repeat(LINE / 8 + 7)));
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}

fn status(v: u8) -> String {
    match v {
        1 => "SET (0x1)".into(),
        2 => "BAD (0x2)".into(),
        3 => "UNSET (0x3)".into(),
        4 => "ANY (0x4)".into(),
        other => format!("INVALID ({other:#x})"),
    }
}

/// imgtool's human-readable layout.
pub(crate) fn human(info: &ImgInfo) -> String {
    let mut o = String::new();
    if let Some(w) = info.warning {
        let _ = writeln!(o, "{w}");
    }
    let _ = writeln!(o, "Printing content of signed image: {} \n", info.filename);
    let _ = writeln!(o, "{}", row("Image header (offset: 0x0)"));
    let h = &info.header;
    let flag_text = if h.flags == 0 {
        "0x0".to_owned()
    } else {
        flags::NAMES
            .iter()
            .filter(|(bit, _)| h.flags & bit != 0)
            .map(|(bit, name)| format!("{name} ({bit:#x})"))
            .collect::<Vec<_>>()
            .join(&format!("\n{}", " ".repeat(20)))
    };
    let fields: [(&str, String); 7] = [
        ("magic", format!("{:#x}", h.magic)),
        ("load_addr", format!("{:#x}", h.load_addr)),
        ("hdr_size", format!("{:#x}", h.hdr_size)),
        ("protected_tlv_size", format!("{:#x}", h.protected_tlv_size)),
        ("img_size", format!("{:#x}", h.img_size)),
        ("flags", flag_text),
        ("version", h.version.clone()),
    ];
    for (k, v) in fields {
        let _ = writeln!(o, "{k}:{}{v}", " ".repeat(19 - k.len()));
    }
    let _ = writeln!(o, "{}", "#".repeat(LINE));
    let mut off = usize::from(h.hdr_size);
    let content = format!("FW image (size: {:#x} Bytes)", h.img_size);
    let _ = writeln!(
        o,
        "{}",
        frame(&format!("Payload (offset: {off:#x})"), &content)
    );
    off += h.img_size as usize;
    let area = |o: &mut String, title: String, hdr: &AreaHeader, tlvs: &[TlvRecord]| {
        let _ = writeln!(o, "{}", row(&title));
        let _ = writeln!(o, "magic:     {:#x}", hdr.magic.unwrap_or(0));
        let _ = writeln!(o, "area size: {:#x}", hdr.tlv_tot.unwrap_or(0));
        let _ = writeln!(o, "{}", tlv_lines(tlvs));
        let _ = writeln!(o, "{}", "#".repeat(LINE));
    };
    if h.protected_tlv_size != 0 {
        area(
            &mut o,
            format!("Protected TLV area (offset: {off:#x})"),
            &info.tlv_area.tlv_hdr_prot,
            &info.tlv_area.tlvs_prot,
        );
    }
    off += usize::from(h.protected_tlv_size);
    area(
        &mut o,
        format!("TLV area (offset: {off:#x})"),
        &info.tlv_area.tlv_hdr,
        &info.tlv_area.tlvs,
    );
    let t = &info.trailer;
    if t.magic.is_some() {
        let _ = writeln!(o, "{}", row("Image trailer (offset: unknown)"));
        let notice = "(Note: some fields may not be used, depending on the update strategy)\n";
        let chunks: Vec<String> = notice
            .chars()
            .collect::<Vec<_>>()
            .chunks(LINE)
            .map(|c| c.iter().collect())
            .collect();
        let _ = writeln!(o, "{}", chunks.join("\n"));
        let _ = writeln!(o, "swap status: (len: unknown)");
        let enc = match t.key_field_len {
            Some(n) => format!("(len: {n:#x}, if BOOT_SWAP_SAVE_ENCTLV is unset)"),
            None => "Image not encrypted".into(),
        };
        let _ = writeln!(o, "enc. keys:   {enc}");
        if let Some(s) = t.swap_size {
            let text = if s == u32::MAX {
                "unknown".to_owned()
            } else {
                format!("{s:#x} octal: {s}")
            };
            let _ = writeln!(o, "swap size:   {text}");
        }
        for (name, v) in [
            ("swap_info:  ", t.swap_info),
            ("copy_done:  ", t.copy_done),
            ("image_ok:   ", t.image_ok),
        ] {
            if let Some(v) = v {
                let _ = writeln!(o, "{name} {}", status(v));
            }
        }
        let mut magic = String::new();
        for (i, byte) in t.magic_bytes.iter().enumerate() {
            let _ = write!(magic, "{byte:#04x} ");
            if i == BOOT_MAGIC_SIZE / 2 - 1 {
                magic.push_str(&format!("\n{}", " ".repeat(13)));
            }
        }
        let _ = writeln!(o, "boot magic:  {magic}");
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "{}", row("End of Image "));
    o
}
