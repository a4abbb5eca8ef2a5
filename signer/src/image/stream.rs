//! Signing a binary image file without holding it in memory.
//!
//! The header is known before the payload is hashed, so the payload is read
//! once, in 1 MiB chunks: this thread hashes each chunk and a second one
//! writes it to the output meanwhile. Only the TLVs and the trailer are
//! written after the hash. On two cores a large image costs about one read
//! and one SHA-256 pass, with constant memory.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use firmware::image::keys::{HashAlg, ImageHash};
use sha2::Digest;

use super::build::{check_slot, layout, unprotected_area};
use super::output::padded_tail;
use super::{ImageBuildError, SignOptions, Signing};
use crate::atomic::AtomicFile;

/// What [`sign_file`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFile {
    /// The image hash over header, payload and protected TLVs.
    pub digest: ImageHash,
    /// The signature TLVs' values, in order (empty if unsigned).
    pub signatures: Vec<Vec<u8>>,
}

const CHUNK: usize = 1 << 20;

/// An image hash computed in pieces.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(alg: HashAlg) -> Self {
        match alg {
            HashAlg::Sha256 => Self::Sha256(sha2::Sha256::new()),
            HashAlg::Sha384 => Self::Sha384(sha2::Sha384::new()),
            HashAlg::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> ImageHash {
        let (alg, digest) = match self {
            Self::Sha256(h) => (HashAlg::Sha256, h.finalize().to_vec()),
            Self::Sha384(h) => (HashAlg::Sha384, h.finalize().to_vec()),
            Self::Sha512(h) => (HashAlg::Sha512, h.finalize().to_vec()),
        };
        ImageHash::from_digest(alg, &digest)
            .unwrap_or_else(|| unreachable!("digest length matches its algorithm"))
    }
}

/// Sign the binary firmware `input` into the binary image `output`, exactly
/// as [`super::build`] and [`super::write_output`] would, streaming. A pure
/// image (`--pure`) is signed over all its bytes at once: build it in
/// memory with [`super::build`].
pub fn sign_file(
    input: &Path,
    output: &Path,
    opts: &SignOptions,
    signing: Signing<'_>,
) -> Result<SignedFile, ImageBuildError> {
    if opts.pure || opts.encrypt.is_some() {
        return Err(ImageBuildError::Usage(
            "pure and encrypted images are built in memory (build)".into(),
        ));
    }
    let alg = signing.hash_alg(opts)?;
    let read_err = |source| ImageBuildError::Read {
        path: input.to_path_buf(),
        source,
    };
    let mut hash_in = File::open(input).map_err(read_err)?;
    let before = hash_in.metadata().map_err(read_err)?;
    let file_len = before.len() as usize;
    let header_size = usize::from(opts.header_size);

    // Without --pad-header the header's room is the input's first bytes,
    // which must be zero; the payload follows them.
    let (body_start, fill) = if opts.pad_header {
        (0, opts.erased_val)
    } else {
        if file_len < header_size {
            return Err(ImageBuildError::InputSmallerThanHeader {
                len: file_len,
                header_size: opts.header_size,
            });
        }
        let mut head = vec![0u8; header_size];
        hash_in.read_exact(&mut head).map_err(read_err)?;
        if head.iter().any(|&b| b != 0) {
            return Err(ImageBuildError::HeaderNotZero(opts.header_size));
        }
        (header_size, 0)
    };
    let body_len = file_len - body_start;
    let plan = layout(opts, body_len)?;

    let mut header_region = vec![fill; header_size];
    header_region[..plan.header.len()].copy_from_slice(&plan.header);
    let out = AtomicFile::create(output, None)?;
    let mut out_file = out.file();
    out_file
        .write_all(&header_region)
        .map_err(|e| out.error(e))?;

    let mut copy_out = out.file().try_clone().map_err(|e| out.error(e))?;
    let digest: ImageHash = std::thread::scope(|s| {
        // This thread reads and hashes; the writer writes what was hashed.
        // Buffers go round between the two, so nothing is allocated per chunk.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        let writer = s.spawn(move || -> std::io::Result<()> {
            for chunk in full_rx {
                copy_out.write_all(&chunk)?;
                let _ = empty_tx.send(chunk);
            }
            Ok(())
        });
        let mut hasher = Hasher::new(alg);
        hasher.update(&header_region);
        let mut spare = vec![vec![0u8; CHUNK], vec![0u8; CHUNK], vec![0u8; CHUNK]];
        let mut left = body_len;
        let mut result = Ok(());
        while left > 0 {
            let mut buf = match spare.pop() {
                Some(b) => b,
                None => match empty_rx.recv() {
                    Ok(b) => b,
                    Err(_) => break, // writer failed; its error is reported below
                },
            };
            buf.resize(left.min(CHUNK), 0);
            if let Err(e) = hash_in.read_exact(&mut buf) {
                result = Err(read_err(e));
                break;
            }
            hasher.update(&buf);
            left -= buf.len();
            if full_tx.send(buf).is_err() {
                break;
            }
        }
        drop(full_tx);
        let written = writer
            .join()
            .map_err(|_| out.error(std::io::Error::other("writer thread failed")))?;
        result?;
        written.map_err(|e| ImageBuildError::Write(out.error(e)))?;
        if left > 0 {
            return Err(read_err(std::io::ErrorKind::UnexpectedEof.into()));
        }
        hasher.update(&plan.protected);
        Ok(hasher.finish())
    })?;

    // Refuse an input that changed while it was read (a file growing or
    // being rewritten), rather than sign a mix of two versions.
    let after = std::fs::metadata(input).map_err(read_err)?;
    if after.len() != before.len() || after.modified().ok() != before.modified().ok() {
        return Err(ImageBuildError::Usage(format!(
            "{} changed while it was being signed",
            input.display()
        )));
    }

    let (unprotected, signatures) = unprotected_area(opts, &digest, None, signing, None)?;
    let image_len = header_size + body_len + plan.protected.len() + unprotected.len();
    check_slot(opts, image_len)?;
    out_file
        .write_all(&plan.protected)
        .map_err(|e| out.error(e))?;
    out_file.write_all(&unprotected).map_err(|e| out.error(e))?;
    if opts.padded() {
        out_file
            .write_all(&padded_tail(opts, image_len))
            .map_err(|e| out.error(e))?;
    }
    out.commit()?;
    Ok(SignedFile { digest, signatures })
}
