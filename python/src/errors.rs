//! Python exceptions from Rust errors: `RefusedError` (the input was refused: `.code` such as
//! `unknown_task`, `duplicate_id`, `terminal_status`, `out_of_range`, `invalid`; `.reason`;
//! nothing was written) and its base `LogbookError` (anything else: the journal, I/O, S3,
//! settings; `.code` is `None` or a failure code such as `locked`).

use logbook::LogbookError as Failure;
use logbook::artifacts::ArtifactError;
use logbook::journal::JournalError;
use logbook::recorder::RecordError;
use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    LogbookError,
    PyException,
    "Any Logbook failure; `.code` names it when it has a code, `.reason` says why."
);
create_exception!(
    _native,
    RefusedError,
    LogbookError,
    "The input was refused and nothing was written; `.code` (e.g. `unknown_task`, \
     `duplicate_id`, `terminal_status`, `out_of_range`, `invalid`) and `.reason`."
);

/// An exception of `kind` with `.code` and `.reason` set.
fn raise(refused: bool, code: Option<&str>, reason: String) -> PyErr {
    Python::attach(|py| {
        let error = match refused {
            true => RefusedError::new_err(reason.clone()),
            false => LogbookError::new_err(reason.clone()),
        };
        let value = error.value(py);
        // Setting attributes on a fresh exception instance cannot fail in practice; if it
        // did, the exception still carries its message.
        let _ = value.setattr("code", code);
        let _ = value.setattr("reason", reason);
        error
    })
}

/// A refusal with a machine code (for checks made in the binding itself).
pub fn refused(code: &str, reason: impl Into<String>) -> PyErr {
    raise(true, Some(code), reason.into())
}

/// A failure that is not the input's fault, with an optional code.
pub fn failed(code: Option<&str>, reason: impl Into<String>) -> PyErr {
    raise(false, code, reason.into())
}

/// The exception for a recorder error.
pub fn from_record(error: RecordError) -> PyErr {
    match (&error, error.code()) {
        (_, Some(code)) => refused(code, error.to_string()),
        (RecordError::Journal(JournalError::Locked { holder, dir }), None) => failed(
            Some("locked"),
            format!(
                "{} is used by another process (pid {holder}); one process writes a data dir: \
                 share it by running `logbook serve --data {}` there and passing \
                 server_url=\"http://HOST:PORT\" here, or use another directory",
                dir.display(),
                dir.parent().unwrap_or(dir).display()
            ),
        ),
        (RecordError::Journal(JournalError::Closed), None) => {
            failed(Some("closed"), "this Logbook is closed")
        }
        _ => failed(None, error.to_string()),
    }
}

/// The exception for an artifact store error.
pub fn from_artifact(error: ArtifactError) -> PyErr {
    match error {
        ArtifactError::Record(e) => from_record(e),
        ArtifactError::Io { .. } => failed(Some("io"), error.to_string()),
        other => refused("invalid", other.to_string()),
    }
}

/// The exception for a front-door error.
pub fn from_logbook(error: Failure) -> PyErr {
    match error {
        Failure::Record(e) => from_record(e),
        Failure::Artifact(e) => from_artifact(e),
        Failure::Config(reason) => refused("invalid", reason),
        other if other.is_bad_input() => refused("invalid", other.to_string()),
        other => failed(None, other.to_string()),
    }
}

/// The exception for an S3 error.
pub fn from_s3(error: logbook::s3::S3Error) -> PyErr {
    match error {
        logbook::s3::S3Error::Record(e) => from_record(e),
        other if other.is_bad_input() => refused("invalid", other.to_string()),
        other => failed(Some("s3"), other.to_string()),
    }
}
