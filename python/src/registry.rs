//! One engine per data directory per process: a `ProgressTracker` and a `TestArtifactsManager`
//! pointed at the same directory share one journal (the journal's lock allows one writer per
//! directory, and two engines in one process would be two writers).
//!
//! Invariants: the registry holds only weak references, so an engine closes when the last
//! handle on it is closed or collected; a directory is keyed by its canonical path (`./a` and
//! `a/` are one); a second opener asking for another durability or for a background task
//! (shipping to S3, EventBridge) the engine it would share does not run is refused, naming
//! both, rather than silently getting the first one's. What a handle does on request (upload
//! one artifact, pre-sign a URL, its artifacts' retention) is the handle's own setting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use logbook::Logbook;

/// What an engine was opened with (compared when a second handle asks for the same dir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub durability: String,
    /// Where the engine ships the journal and artifacts in the background (`auto_upload`).
    pub ship: Option<String>,
    pub eventbridge_bus: Option<String>,
    /// The region of the background AWS tasks (shipping, EventBridge), if any run.
    pub aws_region: Option<String>,
}

impl Settings {
    fn describe(&self) -> String {
        format!(
            "durability={}, auto_upload to {}, eventbridge_bus={}, aws_region={}",
            self.durability,
            self.ship.as_deref().unwrap_or("None"),
            self.eventbridge_bus.as_deref().unwrap_or("None"),
            self.aws_region.as_deref().unwrap_or("None"),
        )
    }

    /// Whether a handle asking for `self` may share an engine opened with `open`: the same
    /// durability and, for each background task asked for, the same one running.
    fn fits(&self, open: &Settings) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        self.durability == open.durability
            && same(&self.ship, &open.ship)
            && same(&self.eventbridge_bus, &open.eventbridge_bus)
            && same(&self.aws_region, &open.aws_region)
    }
}

/// An open engine.
#[derive(Debug)]
pub struct Shared {
    pub logbook: Logbook,
    pub dir: PathBuf,
    pub settings: Settings,
}

static ENGINES: Mutex<Option<HashMap<PathBuf, Weak<Shared>>>> = Mutex::new(None);

/// Why an engine was not shared.
pub enum Refused {
    /// Open with other settings.
    Settings(String),
    /// Opening failed.
    Open(logbook::LogbookError),
    /// The directory could not be created.
    Io(std::io::Error),
}

/// The engine of `dir`, opened with `open` if none is (the registry stays locked meanwhile,
/// so two threads opening one dir get one engine).
pub fn engine(
    dir: &Path,
    settings: Settings,
    open: impl FnOnce(&Path) -> Result<Logbook, logbook::LogbookError>,
) -> Result<Arc<Shared>, Refused> {
    std::fs::create_dir_all(dir).map_err(Refused::Io)?;
    let key = dir.canonicalize().map_err(Refused::Io)?;
    let mut engines = ENGINES.lock().unwrap_or_else(PoisonError::into_inner);
    let engines = engines.get_or_insert_with(HashMap::new);
    engines.retain(|_, weak| weak.strong_count() > 0);
    if let Some(shared) = engines.get(&key).and_then(Weak::upgrade) {
        if !settings.fits(&shared.settings) {
            return Err(Refused::Settings(format!(
                "{} is already open in this process with {}; asked for {}: open every \
                 Logbook object on one directory with the same settings",
                key.display(),
                shared.settings.describe(),
                settings.describe()
            )));
        }
        return Ok(shared);
    }
    let logbook = open(&key).map_err(Refused::Open)?;
    let shared = Arc::new(Shared {
        logbook,
        dir: key.clone(),
        settings,
    });
    engines.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}
