//! Why a station workflow did not do its job: a typed error the front ends
//! turn into their own form (the command line: a message and an exit code;
//! the TUI: a status line).

use std::fmt::Display;

/// A station workflow's failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StationError {
    /// The caller's input is wrong: a file, an argument, a key reference.
    #[error("{0:#}")]
    Input(anyhow::Error),
    /// The policy refused; the refusal is in the audit log.
    #[error("{action} refused by policy:\n  {}", reasons.join("\n  "))]
    Refused {
        /// The audited action (`release.sign`, `record.sign`, …).
        action: String,
        /// Every reason.
        reasons: Vec<String>,
    },
    /// The work could not be done (a token, the log, the file system).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl StationError {
    /// Wrong input.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::Input(error.into())
    }

    /// Wrong input, as a message.
    pub(crate) fn usage_msg(msg: impl Display) -> Self {
        Self::Input(anyhow::anyhow!("{msg}"))
    }

    /// A failure.
    pub(crate) fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self::Failed(error.into())
    }
}

impl From<StationError> for crate::failure::Failure {
    fn from(e: StationError) -> Self {
        match e {
            StationError::Input(e) => Self::usage(e),
            other @ StationError::Refused { .. } => Self::failed(anyhow::anyhow!("{other}")),
            StationError::Failed(e) => Self::failed(e),
        }
    }
}

impl From<signer::image::ImageBuildError> for StationError {
    fn from(e: signer::image::ImageBuildError) -> Self {
        if e.is_usage() {
            Self::Input(e.into())
        } else {
            Self::Failed(e.into())
        }
    }
}
