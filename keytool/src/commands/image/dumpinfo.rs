//! `keytool image dumpinfo`: the whole structure of an image.

use std::fmt::Write as _;
use std::path::PathBuf;

use firmware::image::Image;
use firmware::image::Tail;
use signer::image::{describe, ImageInfo, TlvEntry};

use crate::commands::util::{print_json, read_image};
use crate::failure::{CmdResult, Failure};

/// Print header, TLV areas and trailer of an image. Nothing is verified
/// beyond the structure; use `keytool image verify` for that.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// The image (.bin or .hex).
    image: PathBuf,
}

fn render_tlvs(out: &mut String, title: &str, offset: Option<usize>, tlvs: &[TlvEntry]) {
    match offset {
        Some(o) => _ = writeln!(out, "{title} (offset {o:#x}):"),
        None => _ = writeln!(out, "{title}: none"),
    }
    for t in tlvs {
        _ = writeln!(
            out,
            "  {:#06x} {:<16} len {:#x} at {:#x}",
            t.kind, t.name, t.len, t.offset
        );
        for chunk in t.value.as_bytes().chunks(64) {
            _ = writeln!(
                out,
                "      {}",
                std::str::from_utf8(chunk).unwrap_or_default()
            );
        }
    }
}

/// The human-readable structure of an image.
pub(crate) fn render_human(info: &ImageInfo, image: &Image<'_>) -> String {
    let mut out = String::new();
    let o = &mut out;
    _ = writeln!(o, "Image header:");
    _ = writeln!(o, "  magic:              0x96f3b83d");
    _ = writeln!(o, "  load_addr:          {:#x}", info.load_addr);
    _ = writeln!(o, "  hdr_size:           {:#x}", info.header_size);
    _ = writeln!(o, "  protected_tlv_size: {:#x}", info.protected_tlv_size);
    _ = writeln!(o, "  img_size:           {:#x}", info.image_size);
    _ = writeln!(
        o,
        "  flags:              {:#x} {}",
        info.flags,
        info.flag_names.join(" | ")
    );
    _ = writeln!(o, "  version:            {}", info.version);
    _ = writeln!(
        o,
        "Payload: offset {:#x}, {:#x} bytes",
        info.header_size, info.image_size
    );
    render_tlvs(
        o,
        "Protected TLVs",
        image.protected_range().map(|r| r.start),
        &info.protected_tlvs,
    );
    render_tlvs(
        o,
        "Unprotected TLVs",
        Some(image.unprotected_range().start),
        &info.unprotected_tlvs,
    );
    _ = writeln!(o, "Computed digest: {}", info.computed_digest);
    let end = info.tlv_end;
    let tail = match &info.tail {
        Tail::None => "no trailer".to_owned(),
        Tail::Erased { len, erased_val } => {
            format!("{len:#x} erased bytes ({erased_val:#04x}), no trailer magic")
        }
        Tail::Trailer { len, erased_val, max_align, confirmed } => format!(
            "padding and trailer {len:#x} bytes (erased {erased_val:#04x}, max-align {max_align}, image_ok {})",
            if *confirmed { "set" } else { "unset" }
        ),
    };
    _ = writeln!(o, "End of image at {end:#x}; {tail}");
    out
}

impl Args {
    pub(crate) fn run(self) -> CmdResult {
        let bytes = read_image(&self.image)?;
        let fail = |e: firmware::image::ImageError| {
            Failure::failed(anyhow::anyhow!("{}: {e}", self.image.display()))
        };
        let image = Image::parse(&bytes).map_err(fail)?;
        let info = describe(&image).map_err(fail)?;
        if self.json {
            return print_json(&info);
        }
        print!("{}", render_human(&info, &image));
        Ok(())
    }
}
