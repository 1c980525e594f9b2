//! One engine per data directory per process: a `ProgressTracker` and a `TestArtifactsManager`
//! pointed at the same directory share one journal (the journal's lock allows one writer per
//! directory, and two engines in one process would be two writers).
//!
//! Invariants: the registry holds only weak references, so an engine closes when the last
//! handle on it is closed or collected; a directory is keyed by its canonical path (`./a` and
//! `a/` are one); a second opener asking for other settings (durability, S3, EventBridge,
//! retention) than the engine it would share is refused, naming both, rather than silently
//! getting the first one's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use logbook::Logbook;

/// What an engine was opened with (compared when a second handle asks for the same dir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub durability: String,
    pub s3: Option<String>,
    pub ship: bool,
    pub eventbridge_bus: Option<String>,
    pub aws_region: Option<String>,
    pub retention_days: Option<String>,
}

impl Settings {
    fn describe(&self) -> String {
        format!(
            "durability={}, s3={}, auto_upload={}, eventbridge_bus={}, aws_region={}, retention_days={}",
            self.durability,
            self.s3.as_deref().unwrap_or("None"),
            self.ship,
            self.eventbridge_bus.as_deref().unwrap_or("None"),
            self.aws_region.as_deref().unwrap_or("None"),
            self.retention_days.as_deref().unwrap_or("None"),
        )
    }

    /// Whether a handle asking for `self` may share an engine opened with `open`: the same
    /// durability and, for each optional part asked for, the same value.
    fn fits(&self, open: &Settings) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        self.durability == open.durability
            && same(&self.s3, &open.s3)
            && (!self.ship || open.ship)
            && same(&self.eventbridge_bus, &open.eventbridge_bus)
            && same(&self.aws_region, &open.aws_region)
            && same(&self.retention_days, &open.retention_days)
    }
}

/// An open engine.
#[derive(Debug)]
pub struct Shared {
    pub logbook: Logbook,
    pub dir: PathBuf,
    pub settings: Settings,
    /// The AWS configuration S3 calls use (when S3 or EventBridge is configured).
    pub aws: Option<aws_config::SdkConfig>,
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
    open: impl FnOnce(&Path) -> Result<(Logbook, Option<aws_config::SdkConfig>), logbook::LogbookError>,
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
    let (logbook, aws) = open(&key).map_err(Refused::Open)?;
    let shared = Arc::new(Shared {
        logbook,
        dir: key.clone(),
        settings,
        aws,
    });
    engines.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}
