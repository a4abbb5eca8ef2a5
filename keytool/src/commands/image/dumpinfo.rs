//! `keytool image dumpinfo`: the whole structure of an image.

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

fn print_tlvs(title: &str, offset: Option<usize>, tlvs: &[TlvEntry]) {
    match offset {
        Some(o) => println!("{title} (offset {o:#x}):"),
        None => println!("{title}: none"),
    }
    for t in tlvs {
        println!(
            "  {:#06x} {:<16} len {:#x} at {:#x}",
            t.kind, t.name, t.len, t.offset
        );
        for chunk in t.value.as_bytes().chunks(64) {
            println!("      {}", std::str::from_utf8(chunk).unwrap_or_default());
        }
    }
}

fn print_human(info: &ImageInfo, image: &Image<'_>) {
    println!("Image header:");
    println!("  magic:              0x96f3b83d");
    println!("  load_addr:          {:#x}", info.load_addr);
    println!("  hdr_size:           {:#x}", info.header_size);
    println!("  protected_tlv_size: {:#x}", info.protected_tlv_size);
    println!("  img_size:           {:#x}", info.image_size);
    println!(
        "  flags:              {:#x} {}",
        info.flags,
        info.flag_names.join(" | ")
    );
    println!("  version:            {}", info.version);
    println!(
        "Payload: offset {:#x}, {:#x} bytes",
        info.header_size, info.image_size
    );
    print_tlvs(
        "Protected TLVs",
        image.protected_range().map(|r| r.start),
        &info.protected_tlvs,
    );
    print_tlvs(
        "Unprotected TLVs",
        Some(image.unprotected_range().start),
        &info.unprotected_tlvs,
    );
    println!("Computed digest: {}", info.computed_digest);
    match &info.tail {
        Tail::None => println!("End of image at {:#x}; no trailer", info.tlv_end),
        Tail::Erased { len, erased_val } => {
            println!("End of image at {:#x}; {len:#x} erased bytes ({erased_val:#04x}), no trailer magic", info.tlv_end)
        }
        Tail::Trailer { len, erased_val, max_align, confirmed } => println!(
            "End of image at {:#x}; padding and trailer {len:#x} bytes (erased {erased_val:#04x}, max-align {max_align}, image_ok {})",
            info.tlv_end,
            if *confirmed { "set" } else { "unset" }
        ),
    }
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
        print_human(&info, &image);
        Ok(())
    }
}
