//! How a command fails: one line on stderr and an exit code.

use std::fmt::Display;

/// Verification failed, or the work could not be done.
pub(crate) const FAILED: u8 = 1;
/// The command line or its inputs are wrong.
pub(crate) const USAGE: u8 = 2;

/// A failed command.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
}

impl Failure {
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: USAGE,
            error: error.into(),
        }
    }

    pub(crate) fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: FAILED,
            error: error.into(),
        }
    }

    pub(crate) fn usage_msg(msg: impl Display) -> Self {
        Self::usage(anyhow::anyhow!("{msg}"))
    }
}

impl From<signer::image::ImageBuildError> for Failure {
    fn from(e: signer::image::ImageBuildError) -> Self {
        let code = if e.is_usage() { USAGE } else { FAILED };
        Self {
            code,
            error: e.into(),
        }
    }
}

/// Result of a command.
pub(crate) type CmdResult = Result<(), Failure>;
