//! Print files: an upload is read (`printfile`) before it is kept, so a file the hub holds
//! is always one it can describe and send; each file is kept once, by the SHA-256 of its
//! bytes, which is its id.

use printfile::models::Fit;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Principal, Role, ServiceError};
use crate::db::Db;
use crate::db::files::FileRow;
use crate::files::{FileStore, Received, StoreError};
use proto::UnixMillis;

#[derive(Debug, Clone)]
pub struct Files {
    db: Db,
    store: FileStore,
}

/// A stored file and what it says.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileView {
    /// The SHA-256 of the file's bytes, lowercase hex.
    pub id: String,
    /// The name it was first uploaded under.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    /// `gcode_3mf` (a sliced 3MF) or `gcode`.
    pub kind: String,
    pub slicer: Option<String>,
    pub slicer_version: Option<String>,
    /// The printer it was sliced for, by name (`Bambu Lab P1S`).
    pub printer_model: Option<String>,
    /// The printer's code where the slicer writes one (`C12`).
    pub printer_model_id: Option<String>,
    /// Millimetres.
    pub nozzle_diameter: Option<f64>,
    pub bed_type: Option<String>,
    pub plates: Vec<PlateView>,
    pub thumbnails: Vec<ThumbnailView>,
    pub uploaded_at: i64,
    pub uploaded_by: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlateView {
    /// The plate's own number (need not start at 1).
    pub index: u32,
    pub gcode_bytes: u64,
    /// MD5 of the plate's G-code.
    pub gcode_md5: Option<String>,
    pub estimated_s: Option<u64>,
    pub weight_g: Option<f64>,
    pub layers: Option<u32>,
    pub filaments: Vec<FilamentView>,
    pub objects: Vec<String>,
    /// Its picture, if the file has one.
    pub thumbnail_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FilamentView {
    /// The slicer's filament slot, 1-based (gaps are normal).
    pub slot: u32,
    /// `PLA`, `PETG`, …
    #[serde(rename = "type")]
    pub material: Option<String>,
    /// `#RRGGBB` or `#RRGGBBAA`.
    pub color: Option<String>,
    pub grams: Option<f64>,
    pub meters: Option<f64>,
    /// The slicer's filament profile id (Bambu's `GFA00`).
    pub profile_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThumbnailView {
    pub url: String,
    /// Where it came from in the file.
    pub name: String,
    pub plate: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub mime: String,
}

impl FileView {
    pub fn new(row: &FileRow) -> FileView {
        let meta = &row.meta;
        let picture = |n: usize| format!("/api/v1/files/{}/thumbnails/{n}", row.id);
        FileView {
            id: row.id.clone(),
            name: row.name.clone(),
            size: row.size,
            sha256: row.id.clone(),
            md5: row.md5.clone(),
            kind: match meta.kind {
                printfile::FileKind::Gcode3mf => "gcode_3mf".into(),
                printfile::FileKind::Gcode => "gcode".into(),
            },
            slicer: meta.slicer.as_ref().map(|s| s.name.clone()),
            slicer_version: meta.slicer.as_ref().and_then(|s| s.version.clone()),
            printer_model: meta.printer_model.clone(),
            printer_model_id: meta.printer_model_id.clone(),
            nozzle_diameter: meta.nozzle_diameter,
            bed_type: meta.bed_type.clone(),
            plates: meta
                .plates
                .iter()
                .map(|p| PlateView {
                    index: p.index,
                    gcode_bytes: p.gcode_bytes,
                    gcode_md5: p.gcode_md5.clone(),
                    estimated_s: p.estimated_s,
                    weight_g: p.weight_g,
                    layers: p.layers,
                    filaments: p
                        .filaments
                        .iter()
                        .map(|f| FilamentView {
                            slot: f.slot,
                            material: f.material.clone(),
                            color: f.color.clone(),
                            grams: f.grams,
                            meters: f.meters,
                            profile_id: f.profile_id.clone(),
                        })
                        .collect(),
                    objects: p.objects.clone(),
                    thumbnail_url: p.thumbnail.map(picture),
                })
                .collect(),
            thumbnails: meta
                .thumbnails
                .iter()
                .enumerate()
                .map(|(n, t)| ThumbnailView {
                    url: picture(n),
                    name: t.name.clone(),
                    plate: t.plate,
                    width: t.width,
                    height: t.height,
                    mime: t.mime.clone(),
                })
                .collect(),
            uploaded_at: row.uploaded_at.0,
            uploaded_by: row.uploaded_by.clone(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        match error {
            StoreError::TooLarge { .. } => ServiceError::TooLarge(error.to_string()),
            StoreError::DiskFull { .. } => ServiceError::NoSpace(error.to_string()),
            StoreError::Io(_) => ServiceError::Internal(error.to_string()),
        }
    }
}

/// A file name as kept: its last path component, control characters dropped, at most 255
/// bytes; `None` when nothing is left.
pub fn clean_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let mut name: String = last.chars().filter(|c| !c.is_control()).collect();
    let name_trimmed = name.trim();
    if name_trimmed.is_empty() || name_trimmed == "." || name_trimmed == ".." {
        return None;
    }
    name = name_trimmed.to_owned();
    while name.len() > 255 {
        name.pop();
    }
    Some(name)
}

impl Files {
    pub fn new(db: Db, store: FileStore) -> Files {
        Files { db, store }
    }

    pub fn store(&self) -> &FileStore {
        &self.store
    }

    /// Reads an upload, and keeps it unless the same bytes are kept already. `printer`, when
    /// given, is the printer the file is meant for: a file sliced for another model or
    /// nozzle is refused. Returns the file and whether it is new.
    pub async fn add(
        &self,
        principal: &Principal,
        name: &str,
        received: Received,
        printer: Option<&str>,
    ) -> Result<(FileView, bool), ServiceError> {
        principal.require(Role::Operator)?;
        let name = clean_name(name).ok_or_else(|| {
            ServiceError::Invalid(
                "the upload has no file name; send one in the part's filename".into(),
            )
        })?;
        let path = received.path().to_owned();
        let read_name = name.clone();
        let meta = tokio::task::spawn_blocking(move || {
            let file =
                std::fs::File::open(&path).map_err(|e| printfile::FileError::Io(e.to_string()))?;
            printfile::read(
                &read_name,
                std::io::BufReader::new(file),
                &printfile::Limits::default(),
            )
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("reading the file stopped: {e}")))?;
        let mut meta = meta.map_err(|error| match error {
            printfile::FileError::Io(detail) => ServiceError::Internal(detail),
            error => {
                ServiceError::Unprocessable { code: "invalid_file", message: error.to_string() }
            }
        })?;
        if meta.kind == printfile::FileKind::Gcode {
            // A G-code file is its plate's G-code.
            for plate in &mut meta.plates {
                plate.gcode_md5 = Some(received.md5.clone());
            }
        }
        if let Some(printer) = printer {
            self.check_fit(&meta, printer).await?;
        }
        if let Some(existing) = self.db.file(&received.sha256).await? {
            return Ok((FileView::new(&existing), false));
        }
        let row = FileRow {
            id: received.sha256.clone(),
            name,
            size: received.size,
            md5: received.md5.clone(),
            meta,
            uploaded_at: UnixMillis::now(),
            uploaded_by: principal.name().to_owned(),
        };
        self.store.keep(received).await?;
        let inserted = self.db.insert_file(&row, &row.meta.thumbnails).await?;
        if !inserted {
            // The same bytes arrived twice at once: the other upload's row stands.
            let existing = self.db.file(&row.id).await?.ok_or_else(|| {
                ServiceError::Internal(format!("file {} vanished while it was stored", row.id))
            })?;
            return Ok((FileView::new(&existing), false));
        }
        Ok((FileView::new(&row), true))
    }

    async fn check_fit(
        &self,
        meta: &printfile::PrintFile,
        printer: &str,
    ) -> Result<(), ServiceError> {
        let row = self
            .db
            .printer(printer)
            .await?
            .ok_or_else(|| ServiceError::unknown_printer(printer))?;
        let model = row.state.as_ref().and_then(|s| s.model.clone()).or(row.model);
        match printfile::models::fits(meta, model.as_deref(), None) {
            Fit::Wrong(why) => Err(ServiceError::Unprocessable {
                code: "wrong_printer",
                message: format!("this file does not fit printer {printer}: {why}"),
            }),
            Fit::Fits | Fit::Unknown => Ok(()),
        }
    }

    pub async fn get(&self, id: &str) -> Result<FileView, ServiceError> {
        let row = self.db.file(id).await?.ok_or_else(|| unknown_file(id))?;
        Ok(FileView::new(&row))
    }

    pub async fn list(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<FileView>, ServiceError> {
        Ok(self.db.files(before, limit).await?.iter().map(FileView::new).collect())
    }

    pub async fn thumbnail(&self, id: &str, n: i64) -> Result<(String, Vec<u8>), ServiceError> {
        self.db
            .file_thumbnail(id, n)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("file {id:?} has no picture {n}")))
    }

    pub async fn delete(&self, principal: &Principal, id: &str) -> Result<(), ServiceError> {
        principal.require(Role::Operator)?;
        let open = self.db.open_jobs_of_file(id).await?;
        if open > 0 {
            return Err(ServiceError::Conflict(format!(
                "{open} job(s) of the queue print this file; cancel them first"
            )));
        }
        if !self.db.delete_file(id).await? {
            return Err(unknown_file(id));
        }
        self.store.remove(id).await?;
        Ok(())
    }
}

fn unknown_file(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("no file {id:?}; GET /api/v1/files lists them"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("C:\\Users\\me\\cube.gcode.3mf").as_deref(), Some("cube.gcode.3mf"));
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("a\u{0}b\n.gcode").as_deref(), Some("ab.gcode"));
        assert_eq!(clean_name(".."), None);
        assert_eq!(clean_name("  "), None);
        assert_eq!(clean_name(&"x".repeat(300)).map(|n| n.len()), Some(255));
    }
}
