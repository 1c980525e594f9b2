//! Typed errors of the replay library, each mapped to the exit-code contract of DESIGN §8:
//! [`ReplayError::exit_code`] is 2 for bad usage or input (unknown ids, offsets beyond the end,
//! malformed points, a source that holds no journal), 1 for damage found in the journal (a
//! broken chain, a tampered object, a gap in S3), and 2 for anything else that stopped the run
//! before an answer (I/O, S3 requests): the journal was not judged.

use logbook::journal::JournalError;
use logbook::s3::S3Error;

/// Why a replay command could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The caller's input is wrong (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The journal is damaged (exit 1).
    #[error("journal damaged: {0}")]
    Damaged(String),
    /// The local journal failed.
    #[error(transparent)]
    Journal(JournalError),
    /// An S3 operation failed.
    #[error(transparent)]
    S3(S3Error),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// An internal worker stopped unexpectedly.
    #[error("decoder worker failed: {0}")]
    Worker(String),
}

impl From<JournalError> for ReplayError {
    fn from(error: JournalError) -> ReplayError {
        match error {
            JournalError::Damaged(damage) => ReplayError::Damaged(damage.to_string()),
            JournalError::OffsetBeyondEnd { .. } => ReplayError::BadInput(error.to_string()),
            other => ReplayError::Journal(other),
        }
    }
}

impl From<S3Error> for ReplayError {
    fn from(error: S3Error) -> ReplayError {
        match error {
            S3Error::Tampered { .. } | S3Error::Gap { .. } => {
                ReplayError::Damaged(error.to_string())
            }
            S3Error::BadUrl { .. } => ReplayError::BadInput(error.to_string()),
            S3Error::Journal(inner) => ReplayError::from(inner),
            other => ReplayError::S3(other),
        }
    }
}

impl ReplayError {
    /// The process exit code for this error (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::Damaged(_) => 1,
            _ => 2,
        }
    }

    /// Whether a broken output pipe (`| head`) stopped the run: not an error to report.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ReplayError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Result alias of the replay library.
pub type Result<T, E = ReplayError> = std::result::Result<T, E>;
