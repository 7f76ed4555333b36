//! The hub's behaviour, as services that HTTP handlers, the sync server, a scheduler and an
//! assistant all call. A service checks the [`Principal`]'s role itself and writes the audit
//! row for what it changes; callers translate [`ServiceError`] into their own terms (HTTP
//! statuses, a tool's answer). Which service owns what is listed in ARCHITECTURE.md.
//!
//! - [`Fleet`]: printers, agents, presence, revocation.
//! - [`Commands`]: the only way a printer command is created.
//! - [`files::Files`]: print files, read and kept once each.
//! - [`queue::Queue`]: print jobs, "plate clear", and the dispatcher's loop.
//! - [`inventory::Inventory`]: vendors, filaments, spools (Spoolman's behaviour), spools in
//!   slots, Spoolman clients.
//! - [`outcomes::Outcomes`]: prints that ended, their review, analytics and the estimate.
//! - live updates: [`crate::live::LiveHub`], fed by the ingest after each commit.

pub mod commands;
pub mod files;
pub mod fleet;
pub mod inventory;
pub mod managed;
pub mod outcomes;
pub mod principal;
pub mod queue;
pub mod views;

pub use self::commands::{CommandRequest, CommandSpec, Commands, Issued};
pub use self::fleet::Fleet;
pub use self::principal::{Principal, Role, Via};
use crate::db::{Db, DbError};
use crate::live::LiveHub;
use crate::sync::server::SyncHandle;

/// Why a service refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("this needs the {} role", needed.as_str())]
    Forbidden { needed: Role },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Something the hub needs is not reachable now (an agent offline, a camera failing).
    #[error("{0}")]
    Unavailable(String),
    /// Well-formed but refused for what it is (a damaged print file, one for another
    /// printer); `code` is the API's error code.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    TooLarge(String),
    /// The hub's disk has no room.
    #[error("{0}")]
    NoSpace(String),
    #[error("storage: {0}")]
    Storage(#[from] DbError),
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn unknown_printer(id: &str) -> ServiceError {
        ServiceError::NotFound(format!("no printer {id:?}; GET /api/v1/printers lists them"))
    }
}

/// Every service, built once and shared.
#[derive(Debug, Clone)]
pub struct Services {
    pub fleet: Fleet,
    pub commands: Commands,
    pub managed: managed::Managed,
    pub files: files::Files,
    pub queue: queue::Queue,
    pub inventory: inventory::Inventory,
    pub outcomes: outcomes::Outcomes,
    pub live: LiveHub,
}

impl Services {
    pub fn new(db: Db, sync: SyncHandle, store: crate::files::FileStore) -> Services {
        Services {
            fleet: Fleet::new(db.clone(), sync.clone()),
            managed: managed::Managed::new(db.clone(), sync.clone()),
            files: files::Files::new(db.clone(), store),
            queue: queue::Queue::new(db.clone(), sync.clone()),
            inventory: inventory::Inventory::new(db.clone(), sync.live().clone()),
            outcomes: outcomes::Outcomes::new(db.clone()),
            commands: Commands::new(db, sync.clone()),
            live: sync.live().clone(),
        }
    }
}
