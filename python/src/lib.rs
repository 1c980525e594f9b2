//! `logbook._native`: the binding under the `logbook` Python package (python/logbook/). It holds
//! one embedded [`Logbook`] engine per data directory per process ([`registry`]) and offers its
//! operations with plain Python values; the Python layer builds the original system's API
//! (`ProgressTracker`, `TestArtifactsManager`, enums, views with datetimes) on top.
//!
//! | file | role |
//! |---|---|
//! | [`registry`] | one engine per data dir per process, shared by every handle, closed by the last |
//! | [`engine`] | [`engine::Engine`]: record, views, artifacts, S3, callbacks, the server |
//! | [`errors`] | `LogbookError` and `RefusedError` (`.code`, `.reason`) from Rust errors |
//!
//! Invariants: every call that can wait on I/O or on durability releases the GIL
//! (`Python::detach`); callbacks run on Logbook threads and take the GIL only to call the
//! Python function, whose exception is logged through Python's `logging` and never stops the
//! callback; no call panics across the boundary (errors become exceptions).

mod engine;
mod errors;
mod registry;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::Engine>()?;
    m.add_function(wrap_pyfunction!(engine::open, m)?)?;
    m.add("LogbookError", m.py().get_type::<errors::LogbookError>())?;
    m.add("RefusedError", m.py().get_type::<errors::RefusedError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
