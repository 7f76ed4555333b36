//! Just enough ELF reading to check a built binary: its machine, whether it is stripped, and
//! the newest glibc symbol version it needs (which decides the Raspberry Pi OS releases it
//! runs on and the package's `libc6` dependency). Little-endian files only, which covers
//! every target kitt builds for.

use anyhow::{Context, bail};

/// `e_machine` values of the targets kitt builds for.
pub const EM_ARM: u16 = 40;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// `e_machine`.
    pub machine: u16,
    /// Section names, in file order.
    pub sections: Vec<String>,
    /// The shared libraries it needs (`DT_NEEDED`), in order.
    pub needed: Vec<String>,
    /// The newest `GLIBC_x.y[.z]` version the file refers to.
    pub glibc: Option<GlibcVersion>,
}

/// A glibc symbol version, `GLIBC_2.34` = `GlibcVersion(2, 34, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub u32, pub u32, pub u32);

impl std::fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlibcVersion(major, minor, 0) => write!(f, "{major}.{minor}"),
            GlibcVersion(major, minor, patch) => write!(f, "{major}.{minor}.{patch}"),
        }
    }
}

impl Elf {
    /// Whether the symbol table is gone (`strip`); the dynamic symbols stay, as they must.
    pub fn is_stripped(&self) -> bool {
        !self.sections.iter().any(|name| name == ".symtab" || name.starts_with(".debug_"))
    }
}

/// Reads the ELF header, the section names and the glibc versions of `bytes`.
pub fn inspect(bytes: &[u8]) -> anyhow::Result<Elf> {
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!("not an ELF file");
    }
    let wide = match bytes.get(4) {
        Some(1) => false,
        Some(2) => true,
        other => bail!("unknown ELF class {other:?}"),
    };
    if bytes.get(5) != Some(&1) {
        bail!("not a little-endian ELF file");
    }
    let machine = u16_at(bytes, 0x12)?;
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (u64_at(bytes, 0x28)?, u16_at(bytes, 0x3a)?, u16_at(bytes, 0x3c)?, u16_at(bytes, 0x3e)?)
    } else {
        (
            u64::from(u32_at(bytes, 0x20)?),
            u16_at(bytes, 0x2e)?,
            u16_at(bytes, 0x30)?,
            u16_at(bytes, 0x32)?,
        )
    };
    let header = |index: u16| -> anyhow::Result<(u32, usize, usize)> {
        let at = usize::try_from(shoff)?
            .checked_add(usize::from(index) * usize::from(shentsize))
            .context("the section header table lies outside the file")?;
        let name = u32_at(bytes, at)?;
        let (offset, size) = if wide {
            (u64_at(bytes, at.saturating_add(0x18))?, u64_at(bytes, at.saturating_add(0x20))?)
        } else {
            (
                u64::from(u32_at(bytes, at.saturating_add(0x10))?),
                u64::from(u32_at(bytes, at.saturating_add(0x14))?),
            )
        };
        Ok((name, usize::try_from(offset)?, usize::try_from(size)?))
    };
    let mut sections = Vec::new();
    let mut dynamic = None;
    let mut dynstr = None;
    if shnum > 0 {
        let (_, names_at, names_len) = header(shstrndx).context("the section name table")?;
        let names = slice(bytes, names_at, names_len).context("the section name table")?;
        for index in 0..shnum {
            let (name, at, len) =
                header(index).with_context(|| format!("section header {index}"))?;
            let name = c_string(names, name as usize).context("a section name")?;
            match name.as_str() {
                ".dynamic" => dynamic = Some(slice(bytes, at, len).context(".dynamic")?),
                ".dynstr" => dynstr = Some(slice(bytes, at, len).context(".dynstr")?),
                _ => {}
            }
            sections.push(name);
        }
    }
    let mut needed = Vec::new();
    if let (Some(dynamic), Some(dynstr)) = (dynamic, dynstr) {
        // Entries are (tag, value) pairs of the class's word size; DT_NEEDED = 1, DT_NULL = 0.
        let word = if wide { 8 } else { 4 };
        for entry in dynamic.chunks_exact(2 * word) {
            let (tag, value) = if wide {
                (u64_at(entry, 0)?, u64_at(entry, 8)?)
            } else {
                (u64::from(u32_at(entry, 0)?), u64::from(u32_at(entry, 4)?))
            };
            match tag {
                0 => break,
                1 => needed.push(c_string(dynstr, usize::try_from(value)?).context("DT_NEEDED")?),
                _ => {}
            }
        }
    }
    Ok(Elf { machine, sections, needed, glibc: newest_glibc(bytes) })
}

fn slice(bytes: &[u8], at: usize, len: usize) -> anyhow::Result<&[u8]> {
    at.checked_add(len).and_then(|end| bytes.get(at..end)).context("lies outside the file")
}

/// The NUL-terminated string at `at` of a string table.
fn c_string(table: &[u8], at: usize) -> anyhow::Result<String> {
    let rest = table.get(at..).context("outside its string table")?;
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The newest `GLIBC_<digits>.<digits>[.<digits>]` in `bytes` (the version names of
/// `.gnu.version_r`); `GLIBC_PRIVATE` and the like are skipped.
pub fn newest_glibc(bytes: &[u8]) -> Option<GlibcVersion> {
    const PREFIX: &[u8] = b"GLIBC_";
    let mut newest = None;
    let mut rest = bytes;
    while let Some(at) = rest.windows(PREFIX.len()).position(|w| w == PREFIX) {
        let tail = &rest[at + PREFIX.len()..];
        let len =
            tail.iter().position(|b| !(b.is_ascii_digit() || *b == b'.')).unwrap_or(tail.len());
        let parts: Vec<Option<u32>> = std::str::from_utf8(&tail[..len])
            .unwrap_or_default()
            .split('.')
            .map(|part| part.parse().ok())
            .collect();
        let version = match parts.as_slice() {
            [Some(major), Some(minor)] => Some(GlibcVersion(*major, *minor, 0)),
            [Some(major), Some(minor), Some(patch)] => Some(GlibcVersion(*major, *minor, *patch)),
            _ => None,
        };
        newest = newest.max(version);
        rest = tail;
    }
    newest
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
    at.checked_add(N)
        .and_then(|end| bytes.get(at..end))
        .and_then(|slice| slice.try_into().ok())
        .with_context(|| format!("the file ends before offset {at:#x} + {N}"))
}

fn u16_at(bytes: &[u8], at: usize) -> anyhow::Result<u16> {
    field(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> anyhow::Result<u32> {
    field(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> anyhow::Result<u64> {
    field(bytes, at).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_very_executable() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = inspect(&bytes).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(elf.machine, EM_X86_64);
        }
        assert!(elf.sections.iter().any(|s| s == ".text"), "{:?}", elf.sections);
        assert!(elf.sections.iter().any(|s| s == ".gnu.version_r"), "{:?}", elf.sections);
        assert!(elf.needed.iter().any(|lib| lib == "libc.so.6"), "{:?}", elf.needed);
        let glibc = elf.glibc.expect("a dynamically linked test binary needs glibc");
        assert!(glibc >= GlibcVersion(2, 17, 0), "{glibc}");
    }

    #[test]
    fn the_newest_glibc_version_wins_and_private_ones_are_skipped() {
        let bytes = b"\0GLIBC_2.17\0GLIBC_PRIVATE\0GLIBC_2.34\0GLIBC_2.3.4\0GLIBC_2.9\0GLIBC_\0";
        assert_eq!(newest_glibc(bytes), Some(GlibcVersion(2, 34, 0)));
        assert_eq!(GlibcVersion(2, 3, 4).to_string(), "2.3.4");
        assert_eq!(GlibcVersion(2, 34, 0).to_string(), "2.34");
        assert_eq!(newest_glibc(b"no versions here"), None);
    }

    #[test]
    fn truncated_and_foreign_files_are_errors_not_panics() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for len in [0, 3, 4, 5, 6, 0x13, 0x20, 0x40, 0x41] {
            assert!(inspect(&bytes[..len]).is_err(), "{len} bytes");
        }
        assert!(inspect(b"#!/bin/sh\necho hi\n").is_err());
        let mut big_endian = bytes[..0x40].to_vec();
        big_endian[5] = 2;
        assert!(inspect(&big_endian).is_err());
        // A section header table pointing past the end of the file.
        let mut lying = bytes.clone();
        lying[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(inspect(&lying).is_err());
    }
}
