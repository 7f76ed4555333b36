//! A zip archive read as hostile input: every entry's name, method, size and place checked
//! before anything is unpacked, and every read bounded.
//!
//! What is refused, and why:
//! - a name that could escape a folder (`..`, a leading `/` or drive letter, a backslash, a
//!   NUL): nothing here extracts by name, but an archive carrying one was made to attack
//!   something, so it is not kept to be handed on to a printer;
//! - a method other than stored or deflate, and encryption: slicers write neither;
//! - more than [`Limits::max_entries`] entries;
//! - zip bombs: an entry claiming to unpack to more than [`Limits::max_ratio`] times its
//!   packed size (deflate itself tops out near 1,032:1; G-code packs 3–10:1), a total
//!   unpacked size over [`Limits::max_unpacked`], and entries sharing their bytes (the
//!   overlapping-entry bomb); an entry that unpacks to more than it declared fails its CRC
//!   check or the size limit the reader enforces, whichever comes first.
//!
//! Sizes come from the central directory, so archives written with data descriptors (local
//! headers with zero sizes, as streaming writers produce) read like any other.

use std::io::{Read, Seek};

use zip::{CompressionMethod, ZipArchive};

use crate::{FileError, Limits};

/// One checked entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub index: usize,
    pub name: String,
    pub size: u64,
}

#[derive(Debug)]
pub(crate) struct Archive<R> {
    zip: ZipArchive<R>,
    entries: Vec<Entry>,
}

impl<R: Read + Seek> Archive<R> {
    pub fn open(reader: R, limits: &Limits) -> Result<Archive<R>, FileError> {
        let mut zip = ZipArchive::new(reader).map_err(|e| FileError::Archive(e.to_string()))?;
        if zip.len() > limits.max_entries {
            return Err(FileError::Archive(format!(
                "{} entries (at most {} are read)",
                zip.len(),
                limits.max_entries
            )));
        }
        let mut entries = Vec::with_capacity(zip.len());
        let mut unpacked = 0u64;
        for index in 0..zip.len() {
            let file = zip.by_index_raw(index).map_err(|e| FileError::Archive(e.to_string()))?;
            let name = file
                .name()
                .map_err(|e| FileError::Archive(format!("entry {index}: {e}")))?
                .into_owned();
            if let Some(why) = unsafe_name(&name) {
                return Err(FileError::UnsafeEntry { name: printable(&name), why });
            }
            if file.encrypted() {
                return Err(FileError::Archive(format!("{name:?} is encrypted")));
            }
            if !matches!(
                file.compression(),
                CompressionMethod::Stored | CompressionMethod::Deflated
            ) {
                return Err(FileError::Archive(format!(
                    "{name:?} is packed with {:?}; slicers use stored or deflate",
                    file.compression()
                )));
            }
            let (size, packed) = (file.size(), file.compressed_size());
            if size > 1 << 20 && size / packed.max(1) > limits.max_ratio {
                return Err(FileError::Bomb(format!(
                    "{name:?} claims {size} bytes from {packed} packed (over {}:1)",
                    limits.max_ratio
                )));
            }
            unpacked = unpacked.saturating_add(size);
            if unpacked > limits.max_unpacked {
                return Err(FileError::Bomb(format!(
                    "the entries unpack to over {} bytes",
                    limits.max_unpacked
                )));
            }
            let is_dir = file.is_dir();
            drop(file);
            if !is_dir {
                entries.push(Entry { index, name, size });
            }
        }
        if zip.has_overlapping_entries().map_err(|e| FileError::Archive(e.to_string()))? {
            return Err(FileError::Bomb("entries share their bytes (overlapping entries)".into()));
        }
        Ok(Archive { zip, entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry named `name`, matched without regard to case (writers differ on
    /// `Metadata/` and `metadata/`).
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .or_else(|| self.entries.iter().find(|e| e.name.eq_ignore_ascii_case(name)))
    }

    /// The whole of a small entry; `None` when it is over `max` bytes.
    pub fn read_small(&mut self, entry: &Entry, max: u64) -> Result<Option<Vec<u8>>, FileError> {
        if entry.size > max {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(entry.size as usize);
        self.stream(entry, |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(Some(data))
    }

    /// Unpacks `entry` through `sink`, chunk by chunk, checking its CRC and its declared size.
    pub fn stream(
        &mut self,
        entry: &Entry,
        mut sink: impl FnMut(&[u8]) -> Result<(), FileError>,
    ) -> Result<u64, FileError> {
        let corrupt = |detail: String| FileError::Corrupt { entry: entry.name.clone(), detail };
        let mut file = self.zip.by_index(entry.index).map_err(|e| corrupt(e.to_string()))?;
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(|e| corrupt(e.to_string()))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > entry.size {
                return Err(corrupt(format!(
                    "unpacks to more than its declared {} bytes",
                    entry.size
                )));
            }
            sink(&buffer[..n])?;
        }
        if total != entry.size {
            return Err(corrupt(format!(
                "unpacks to {total} bytes, not its declared {}",
                entry.size
            )));
        }
        Ok(total)
    }
}

/// Why an entry's name is refused, if it is.
fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("an empty name");
    }
    if name.contains('\0') {
        return Some("a NUL in the name");
    }
    if name.contains('\\') {
        return Some("a backslash in the name");
    }
    if name.starts_with('/') {
        return Some("an absolute path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Some("a drive letter");
    }
    if name.split('/').any(|part| part == "..") {
        return Some("a path that climbs out (`..`)");
    }
    None
}

/// A name as it can be shown: control characters escaped, at most 200 characters.
fn printable(name: &str) -> String {
    let escaped: String = name.escape_debug().collect();
    match escaped.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &escaped[..at]),
        None => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in ["../x", "a/../../etc/passwd", "/etc/passwd", "C:/x", "a\\b", "a\0b", ""] {
            assert!(unsafe_name(bad).is_some(), "{bad:?}");
        }
        for good in ["Metadata/plate_1.gcode", "3D/3dmodel.model", "[Content_Types].xml", "a..b"] {
            assert_eq!(unsafe_name(good), None, "{good:?}");
        }
    }
}
