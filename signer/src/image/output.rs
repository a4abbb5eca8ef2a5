//! Writing an image as imgtool does: binary (padded to the slot with
//! `--pad`) or Intel HEX (with only the trailer's magic and `image_ok` placed
//! at the end of the slot), chosen by the output file's extension.

use std::path::Path;

use super::{ImageBuildError, SignOptions, SignedImage};
use crate::{atomic, intel_hex};

/// Whether a path names an Intel HEX file (extension `.hex`, any case).
pub fn is_hex_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("hex"))
}

/// Write `image` to `path` atomically. `hex_addr` (`--hex-addr`) sets the
/// address of a HEX output, overriding the input's.
pub fn write_output(
    path: &Path,
    image: &SignedImage,
    opts: &SignOptions,
    hex_addr: Option<u32>,
) -> Result<(), ImageBuildError> {
    let layout = opts.trailer();
    let magic = layout.boot_magic();
    let mark_ok = (opts.test || opts.confirm) && !opts.overwrite_only;
    let mut image_ok = vec![opts.erased_val; layout.max_align as usize];
    if opts.confirm {
        image_ok[0] = 0x01;
    }

    if is_hex_path(path) {
        let base = hex_addr
            .or(image.base_addr)
            .ok_or(ImageBuildError::NoHexAddress)?;
        let mut pieces: Vec<(u32, &[u8])> = vec![(base, &image.bytes)];
        if opts.padded() {
            let overflow =
                || ImageBuildError::Usage("slot end is beyond the 32-bit address space".into());
            let slot_end = base.checked_add(opts.slot_size).ok_or_else(overflow)?;
            if mark_ok {
                let at = slot_end
                    .checked_sub(layout.image_ok_from_end() as u32)
                    .ok_or_else(overflow)?;
                pieces.push((at, &image_ok));
            }
            let at = slot_end
                .checked_sub(magic.len() as u32)
                .ok_or_else(overflow)?;
            pieces.push((at, &magic));
        }
        let text = intel_hex::write(&pieces)?;
        atomic::write(path, text.as_bytes())?;
        return Ok(());
    }

    if !opts.padded() {
        atomic::write(path, &image.bytes)?;
        return Ok(());
    }
    atomic::write_parts(
        path,
        &[&image.bytes, &padded_tail(opts, image.bytes.len())],
        None,
    )?;
    Ok(())
}

/// What follows an image of `image_len` bytes in a padded binary: erased
/// padding to the slot's end, with `image_ok` (for `--confirm`) and the boot
/// magic in the trailer.
pub(crate) fn padded_tail(opts: &SignOptions, image_len: usize) -> Vec<u8> {
    let layout = opts.trailer();
    let trailer_size = layout.size();
    let magic = layout.boot_magic();
    let padding = (opts.slot_size as usize).saturating_sub(image_len + trailer_size);
    let mut tail = vec![opts.erased_val; padding + trailer_size];
    let end = tail.len();
    tail[end - magic.len()..].copy_from_slice(&magic);
    if opts.confirm && !opts.overwrite_only {
        tail[end - layout.image_ok_from_end()] = 0x01;
    }
    tail
}
