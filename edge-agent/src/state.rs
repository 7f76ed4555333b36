//! The state directory's format: versioned, and migrated forward when the agent starts.
//!
//! An upgrade replaces the binary and keeps `/var/lib/kitt-agent`; the new binary must read
//! what the old one left, above all the outbox, which holds records the hub has not
//! acknowledged yet. This module names each layout the directory has had, and moves an old
//! one forward before anything else opens it ([`crate::agent::start`] calls [`migrate`]
//! first).
//!
//! # Constraints
//!
//! - **Forward only, never lossy.** A migration may add, rename or rewrite files; it never
//!   deletes a record the hub has not acknowledged.
//! - **Refuse what is newer.** A directory written by a newer agent (a downgrade) is refused
//!   with [`StateError::Newer`], before anything is read or written: an old binary guessing at
//!   a new layout could lose records.
//! - **Crash-safe.** Each step `n → n+1` is idempotent and ends by atomically replacing the
//!   marker with `n+1` (temporary file, fsync, rename, fsync of the directory). A power cut
//!   part-way leaves the marker at `n`, and the next start runs step `n → n+1` again.
//!
//! # Formats
//!
//! | format | marker | layout |
//! |---|---|---|
//! | 0 | none | `identity.toml`, `agent.key` (0600), `agent.pem`, `hub-ca.pem`, `outbox.db` (+ `-wal`, `-shm`; its own `meta.schema_version` = 1), `pins/<serial>.sha256` |
//! | 1 | `state.toml`, `format = 1` | format 0's files, unchanged; since wire version 4 also `hub-seen-at` (the latest `Welcome.hub_time`, decimal milliseconds; optional: missing or unreadable, it is ignored and written again at the next welcome) |
//!
//! Format 0 is every agent released before the marker existed; a directory without
//! `state.toml` is format 0, including a new empty one. Step 0 → 1 only writes the marker.
//! The outbox's SQLite schema has its own version inside the file (`meta.schema_version`,
//! see [`crate::outbox`]); a later step may migrate it, and then says so here. Optional
//! files that an older agent ignores and a newer one can do without (`hub-seen-at`; the
//! outbox's `job_ends` table) need no new format.
//!
//! # Failure
//!
//! A missing directory is not this module's business: [`migrate`] returns
//! [`Opened::Missing`] and [`crate::sync::identity::Identity::load`] explains what to do. A
//! marker that cannot be read or parsed is [`StateError::Damaged`]: nothing is guessed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The format this agent writes and understands.
pub const CURRENT_FORMAT: u32 = 1;

/// The marker's file name inside the state directory.
pub const MARKER: &str = "state.toml";

/// The steps, in order: `STEPS[n]` moves format `n` to `n + 1`.
/// One migration, from the format of its index to the next.
type Step = fn(&Path) -> Result<(), StateError>;

const STEPS: [Step; CURRENT_FORMAT as usize] = [v0_to_v1];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Written by a newer agent; this one cannot read it safely.
    #[error(
        "the state directory {} has format {found}, newer than this kitt-agent understands (up to {CURRENT_FORMAT}); it was written by a newer kitt-agent: install that version again (downgrades are not supported)",
        dir.display()
    )]
    Newer { dir: PathBuf, found: u32 },
    /// The marker exists but is not what this module writes.
    #[error("{} is damaged: {detail}; it says which layout the state directory has, so kitt-agent will not guess", path.display())]
    Damaged { path: PathBuf, detail: String },
    /// Reading or writing failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What [`migrate`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// There is no state directory (yet).
    Missing,
    /// Already at [`CURRENT_FORMAT`]; nothing was written.
    Current,
    /// Moved from `from` to [`CURRENT_FORMAT`].
    Migrated { from: u32 },
}

/// Brings the state directory at `dir` to [`CURRENT_FORMAT`]; call before anything else
/// reads it.
pub fn migrate(dir: &Path) -> Result<Opened, StateError> {
    if !dir.is_dir() {
        return Ok(Opened::Missing);
    }
    let found = format(dir)?;
    if found > CURRENT_FORMAT {
        return Err(StateError::Newer { dir: dir.to_owned(), found });
    }
    if found == CURRENT_FORMAT {
        return Ok(Opened::Current);
    }
    for (step, migration) in STEPS.iter().enumerate().skip(found as usize) {
        migration(dir)?;
        let to = step as u32 + 1;
        write_marker(dir, to)?;
        tracing::info!(dir = %dir.display(), from = step, to, "Migrated the state directory.");
    }
    Ok(Opened::Migrated { from: found })
}

/// The format of the state directory at `dir`: its marker's, or 0 without one.
pub fn format(dir: &Path) -> Result<u32, StateError> {
    let path = dir.join(MARKER);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(StateError::Io { action: "read", path, source }),
    };
    // Unknown keys are allowed: a newer agent may add some, and must still be refused for
    // its format number rather than for a key.
    #[derive(Deserialize)]
    struct Marker {
        format: u32,
    }
    let marker: Marker = toml::from_str(&text)
        .map_err(|e| StateError::Damaged { path, detail: e.message().to_owned() })?;
    Ok(marker.format)
}

/// 0 → 1: the layout is unchanged; the marker is what is new.
fn v0_to_v1(_dir: &Path) -> Result<(), StateError> {
    Ok(())
}

/// Atomically replaces the marker with one saying `format`.
fn write_marker(dir: &Path, format: u32) -> Result<(), StateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(MARKER);
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let io = |action, source| StateError::Io { action, path: path.clone(), source };
    let text = format!(
        "# The layout of this directory, for kitt-agent's upgrades. Written by kitt-agent; do not edit.\nformat = {format}\n"
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("write", e))?;
    file.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("sync the directory of", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-0 directory as agents before the marker left it (contents are placeholders;
    /// step 0 → 1 reads none of them).
    fn format_0(dir: &Path) {
        for file in ["identity.toml", "agent.key", "agent.pem", "hub-ca.pem", "outbox.db"] {
            std::fs::write(dir.join(file), file).unwrap();
        }
        std::fs::create_dir(dir.join("pins")).unwrap();
        std::fs::write(dir.join("pins/01P00A391800001.sha256"), "pin").unwrap();
    }

    fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = walk(dir)
            .into_iter()
            .map(|path| {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
        }
        files
    }

    #[test]
    fn format_0_moves_to_1_keeping_every_file() {
        let dir = tempfile::tempdir().unwrap();
        format_0(dir.path());
        let before = listing(dir.path());

        assert_eq!(migrate(dir.path()).unwrap(), Opened::Migrated { from: 0 });
        assert_eq!(format(dir.path()).unwrap(), 1);
        let mut after = listing(dir.path());
        after.retain(|(name, _)| name != MARKER);
        assert_eq!(after, before, "every file of format 0 is still there, unchanged");
        assert!(!dir.path().join("state.toml.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(MARKER)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        assert_eq!(
            migrate(dir.path()).unwrap(),
            Opened::Current,
            "the second start migrates nothing"
        );
    }

    #[test]
    fn an_empty_directory_is_format_0_and_gets_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(format(dir.path()).unwrap(), 0);
        assert_eq!(migrate(dir.path()).unwrap(), Opened::Migrated { from: 0 });
        assert_eq!(format(dir.path()).unwrap(), CURRENT_FORMAT);
    }

    #[test]
    fn a_missing_directory_is_left_to_the_identity_to_explain() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("kitt-agent");
        assert_eq!(migrate(&missing).unwrap(), Opened::Missing);
        assert!(!missing.exists(), "nothing is created");
    }

    #[test]
    fn a_newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        format_0(dir.path());
        let marker = "format = 7\nsomething_new = true\n";
        std::fs::write(dir.path().join(MARKER), marker).unwrap();
        let error = migrate(dir.path()).unwrap_err();
        assert!(matches!(error, StateError::Newer { found: 7, .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("format 7") && message.contains("downgrades"), "{message}");
        assert_eq!(std::fs::read_to_string(dir.path().join(MARKER)).unwrap(), marker);
    }

    #[test]
    fn a_damaged_marker_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["format = \"one\"\n", "", "\u{0}\u{1}garbage"] {
            std::fs::write(dir.path().join(MARKER), text).unwrap();
            let error = migrate(dir.path()).unwrap_err();
            assert!(matches!(error, StateError::Damaged { .. }), "{text:?}: {error:?}");
            assert!(error.to_string().contains(MARKER), "{error}");
        }
    }

    #[test]
    fn a_step_interrupted_before_its_marker_runs_again() {
        // A crash after step 0 → 1's work but before the rename leaves a stray temporary
        // file and no marker: the directory is still format 0 and migrates again.
        let dir = tempfile::tempdir().unwrap();
        format_0(dir.path());
        std::fs::write(dir.path().join("state.toml.tmp"), "format = 1\n").unwrap();
        assert_eq!(format(dir.path()).unwrap(), 0);
        assert_eq!(migrate(dir.path()).unwrap(), Opened::Migrated { from: 0 });
        assert_eq!(format(dir.path()).unwrap(), 1);
        assert!(!dir.path().join("state.toml.tmp").exists());
    }
}
