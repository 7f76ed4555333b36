//! Printers the hub manages for this agent: the list it sends ([`proto::DesiredPrinters`]),
//! kept in the state directory so the agent drives them after a restart without the hub,
//! and checked printer by printer the way `agent.toml`'s printers are.
//!
//! The file holds access codes and API keys: it is written with mode 0600, to a temporary
//! file first and renamed, so a crash leaves the old list or the new one, never half.
//! Printers of `agent.toml` win: a managed printer with the id of a local one is refused,
//! and the hub hears why.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use proto::{DesiredPrinters, PrinterApplied, PrinterId, PrintersApplied};

use crate::config::PrinterConfig;

/// The file in the state directory.
pub const FILE: &str = "managed-printers.json";

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The list last applied, if the hub ever sent one.
pub fn load(state_dir: &Path) -> Result<Option<DesiredPrinters>, String> {
    let path = path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| format!("{} is not a list of printers: {error}", path.display()))
}

/// Keeps `desired` for the next start (0600, atomically).
pub fn save(state_dir: &Path, desired: &DesiredPrinters) -> std::io::Result<()> {
    let path = path(state_dir);
    let temporary = path.with_extension("json.new");
    let text = serde_json::to_vec_pretty(desired).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    if let Ok(dir) = std::fs::File::open(state_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// What to run for `desired`: each printer that checks out, and every printer's outcome for
/// the hub. `local` are `agent.toml`'s printers.
pub fn plan(
    desired: &DesiredPrinters,
    local: &[PrinterId],
) -> (Vec<PrinterConfig>, PrintersApplied) {
    let mut run: Vec<PrinterConfig> = Vec::new();
    let mut printers = Vec::new();
    for managed in &desired.printers {
        let outcome = if local.contains(&managed.id) {
            Err(format!(
                "{} is managed locally, in this agent's agent.toml; remove it there to manage it from the hub",
                managed.id
            ))
        } else if run.iter().any(|p| p.id == managed.id) {
            Err(format!("{} is listed twice", managed.id))
        } else {
            PrinterConfig::from_managed(managed)
        };
        let error = match outcome {
            Ok(printer) => {
                run.push(printer);
                None
            }
            Err(error) => Some(error),
        };
        printers.push(PrinterApplied { id: managed.id.clone(), error });
    }
    (run, PrintersApplied { version: desired.version, printers })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use proto::{ManagedLink, ManagedPrinter};

    use super::*;

    fn bambu(id: &str, code: &str) -> ManagedPrinter {
        ManagedPrinter {
            id: PrinterId::new(id).unwrap(),
            name: Some("P1S".into()),
            model: Some("C12".into()),
            link: ManagedLink::Bambu {
                host: "10.0.0.5".into(),
                port: 8883,
                access_code: code.into(),
            },
            camera: true,
        }
    }

    fn klipper(id: &str, url: &str) -> ManagedPrinter {
        ManagedPrinter {
            id: PrinterId::new(id).unwrap(),
            name: None,
            model: None,
            link: ManagedLink::Moonraker { url: url.into(), api_key: None, web_port: 80 },
            camera: false,
        }
    }

    #[test]
    fn each_printer_is_checked_and_local_ones_win() {
        let desired = DesiredPrinters {
            version: 4,
            printers: vec![
                bambu("01P00A391800001", "12345678"),
                bambu("01P00A391800002", "has space"),
                klipper("voron-1", "http://10.0.0.7"),
                klipper("voron-2", "https://10.0.0.8"),
                klipper("local-1", "http://10.0.0.9"),
                klipper("voron-1", "http://10.0.0.10"),
            ],
        };
        let (run, applied) = plan(&desired, &[PrinterId::new("local-1").unwrap()]);
        let ids: Vec<&str> = run.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["01P00A391800001", "voron-1"]);
        assert!(run[1].cameras.is_empty(), "camera off");
        assert_eq!(run[0].cameras.len(), 1, "the built-in camera");
        assert_eq!(applied.version, 4);
        let errors: Vec<Option<&str>> =
            applied.printers.iter().map(|p| p.error.as_deref()).collect();
        assert_eq!(errors[0], None);
        assert!(errors[1].unwrap().starts_with("access_code:"), "{errors:?}");
        assert_eq!(errors[2], None);
        assert!(errors[3].unwrap().contains("https"), "{errors:?}");
        assert!(errors[4].unwrap().contains("managed locally"), "{errors:?}");
        assert!(errors[5].unwrap().contains("listed twice"), "{errors:?}");
    }

    #[test]
    fn the_list_survives_a_restart_readable_by_its_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let desired =
            DesiredPrinters { version: 2, printers: vec![bambu("01P00A391800001", "12345678")] };
        save(dir.path(), &desired).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(desired));
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        assert!(load(dir.path()).unwrap_err().contains("not a list of printers"));
    }
}
