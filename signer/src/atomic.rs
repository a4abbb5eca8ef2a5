//! Output files appear whole or not at all: written to a temporary file in
//! the same directory, flushed, then renamed over the destination.

use std::io::Write;
use std::path::{Path, PathBuf};

/// An output file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    /// The destination.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// A file being written: invisible at its destination until [`commit`]. Dropped
/// without committing, it is removed.
///
/// [`commit`]: AtomicFile::commit
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// Start writing `path`, with the given Unix mode (e.g. 0o600 for keys).
    pub fn create(path: &Path, mode: Option<u32>) -> Result<Self, WriteError> {
        let err = |source| WriteError {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".keytool-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(err)?;
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(err)?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// The open file.
    pub fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    /// An error about this file.
    pub fn error(&self, source: std::io::Error) -> WriteError {
        WriteError {
            path: self.path.clone(),
            source,
        }
    }

    /// Flush to disk and move into place.
    pub fn commit(self) -> Result<(), WriteError> {
        let Self { path, tmp } = self;
        tmp.as_file().sync_data().map_err(|source| WriteError {
            path: path.clone(),
            source,
        })?;
        tmp.persist(&path).map_err(|e| WriteError {
            path: path.clone(),
            source: e.error,
        })?;
        // The rename itself is only durable once the directory is.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| WriteError { path, source })
    }
}

/// Write `parts` in order to `path` atomically, with the given Unix mode for a
/// new file (e.g. 0o600 for key material).
pub fn write_parts(path: &Path, parts: &[&[u8]], mode: Option<u32>) -> Result<(), WriteError> {
    let out = AtomicFile::create(path, mode)?;
    let mut f = out.file();
    for part in parts {
        f.write_all(part).map_err(|e| out.error(e))?;
    }
    out.commit()
}

/// Write `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_parts(path, &[bytes], None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_parts(&p, &[b"ab", b"cd"], Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcd");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_names_the_path() {
        let e = write(Path::new("/nonexistent-dir/x.bin"), b"x").unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/x.bin"));
    }
}
