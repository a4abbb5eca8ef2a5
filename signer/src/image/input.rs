//! Reading the firmware to sign: raw binary, or Intel HEX by extension.

use std::io::Read;
use std::path::Path;

use super::output::is_hex_path;
use super::ImageBuildError;
use crate::intel_hex;

/// Firmware bytes and, for HEX input, the address they start at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareInput {
    /// The bytes, with `header_room` erased bytes in front when requested.
    pub data: Vec<u8>,
    /// Address of `data[0]` in a HEX input (before header room is added).
    pub base_addr: Option<u32>,
}

/// Read `path`. With `header_room > 0` (`--pad-header`), that many bytes of
/// `erased_val` are put in front, in the same allocation, so a large image is
/// never copied. `extra` reserves room for what will be appended.
pub fn read_input(
    path: &Path,
    header_room: usize,
    erased_val: u8,
    extra: usize,
) -> Result<FirmwareInput, ImageBuildError> {
    let read_err = |source| ImageBuildError::Read {
        path: path.to_path_buf(),
        source,
    };
    if is_hex_path(path) {
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let hex = intel_hex::parse(&text).map_err(|source| ImageBuildError::Hex {
            path: path.to_path_buf(),
            source,
        })?;
        let mut data = Vec::with_capacity(header_room + hex.data.len() + extra);
        data.resize(header_room, erased_val);
        data.extend_from_slice(&hex.data);
        return Ok(FirmwareInput {
            data,
            base_addr: hex.base_addr,
        });
    }
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len() as usize;
    let mut data = Vec::with_capacity(header_room + len + extra);
    data.resize(header_room, erased_val);
    file.read_to_end(&mut data).map_err(read_err)?;
    Ok(FirmwareInput {
        data,
        base_addr: None,
    })
}
