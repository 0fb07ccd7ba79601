//! Safe unpacking of a verified archive (tar.gz/tgz, plain tar, zip, jar)
//! into a fresh per-attempt directory.
//!
//! Invariants, whatever the archive says:
//! - nothing is written outside the directory: entries with `..`, absolute
//!   paths, or a path through a symlink are refused, and so are symlinks
//!   and hard links that point outside (checked on the link text, and again
//!   on the real files once everything is unpacked, which catches chains of
//!   links that are each harmless alone);
//! - no device files, FIFOs or sockets;
//! - at most `max_entries` entries and `max_unpacked` bytes, counted from
//!   the bytes actually decompressed, never from what headers claim (zip
//!   bombs);
//! - files get plain permissions (0644, or 0755 when executable): no
//!   setuid/setgid bits.
//!
//! Everything here is blocking file I/O: callers run it in
//! `spawn_blocking`.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::ArtifactError;

/// Bounds on what one archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most entries (files, directories, links).
    pub max_entries: u64,
    /// Most bytes written, summed over all files.
    pub max_bytes: u64,
}

/// What kind of archive was unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    TarGz,
    Tar,
    Zip,
    /// A zip with `META-INF/MANIFEST.MF`; the archive itself is also placed
    /// in the directory as [`JAR_NAME`], for `hadoop jar`.
    Jar,
}

/// Name under which a jar artifact is kept next to its unpacked content.
pub const JAR_NAME: &str = "job.jar";
/// Longest symlink target read from a zip entry.
const MAX_LINK_TARGET: u64 = 4096;

fn invalid(message: impl Into<String>) -> ArtifactError {
    ArtifactError::Invalid(message.into())
}

fn io_invalid(what: &str, e: impl std::fmt::Display) -> ArtifactError {
    invalid(format!("{what}: {e}"))
}

/// Unpacks `archive` into the (existing, empty) directory `dest`.
///
/// # Errors
/// [`ArtifactError::Invalid`] for an unknown format, a corrupt archive, an
/// entry that would escape `dest`, a special file, or a limit exceeded;
/// [`ArtifactError::Io`] when `dest` cannot be written.
pub fn unpack(archive: &Path, dest: &Path, limits: UnpackLimits) -> Result<ArchiveKind, ArtifactError> {
    let mut head = [0u8; 512];
    let read = {
        let mut file =
            fs::File::open(archive).map_err(|e| ArtifactError::io("cannot open the archive", e))?;
        read_up_to(&mut file, &mut head).map_err(|e| ArtifactError::io("cannot read the archive", e))?
    };
    let head = &head[..read];
    let root =
        fs::canonicalize(dest).map_err(|e| ArtifactError::io("cannot resolve the attempt directory", e))?;
    let mut unpacker = Unpacker { root, limits, entries: 0, bytes: 0, symlinks: Vec::new() };
    let open = || fs::File::open(archive).map_err(|e| ArtifactError::io("cannot open the archive", e));
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        unpacker.tar(flate2::read::GzDecoder::new(io::BufReader::new(open()?)))?;
        ArchiveKind::TarGz
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        let jar = unpacker.zip(open()?)?;
        if jar {
            let target = unpacker.root.join(JAR_NAME);
            if fs::symlink_metadata(&target).is_ok() {
                return Err(invalid(format!(
                    "the jar holds an entry named {JAR_NAME}, which sgnode reserves"
                )));
            }
            fs::copy(archive, &target).map_err(|e| ArtifactError::io("cannot place the jar", e))?;
            ArchiveKind::Jar
        } else {
            ArchiveKind::Zip
        }
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        unpacker.tar(io::BufReader::new(open()?))?;
        ArchiveKind::Tar
    } else {
        return Err(invalid("not a tar.gz, tgz, tar, zip or jar archive"));
    };
    unpacker.check_symlinks()?;
    Ok(kind)
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Checks an entry name and returns it as a relative path of plain
/// components. `..`, absolute paths, drive prefixes and empty names are
/// refused, whether or not they would end up inside.
fn safe_relative(name: &str) -> Result<PathBuf, ArtifactError> {
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes.get(2), None | Some(b'/' | b'\\'));
    if name.starts_with('/') || name.starts_with('\\') || drive {
        return Err(invalid(format!("entry {name} has an absolute path")));
    }
    let mut rel = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(invalid(format!("entry {name} escapes the directory"))),
            p if p.contains('\0') => return Err(invalid(format!("entry {name:?} has a NUL byte"))),
            p => rel.push(p),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(invalid(format!("entry {name:?} has an empty path")));
    }
    Ok(rel)
}

struct Unpacker {
    /// Canonical destination directory.
    root: PathBuf,
    limits: UnpackLimits,
    entries: u64,
    bytes: u64,
    /// Symlinks created, re-checked once everything is unpacked.
    symlinks: Vec<PathBuf>,
}

impl Unpacker {
    fn count_entry(&mut self) -> Result<(), ArtifactError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(invalid(format!(
                "more than {} entries (artifact_max_entries)",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// The absolute destination of `rel`, after making sure that no
    /// existing ancestor inside the root is a symlink (writing through one
    /// could land anywhere) and creating the missing parent directories.
    fn prepare(&self, name: &str, rel: &Path) -> Result<PathBuf, ArtifactError> {
        let mut at = self.root.clone();
        let parts: Vec<Component> = rel.components().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(invalid(format!("entry {name} goes through the symlink {}", self.show(&at))))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(invalid(format!("entry {name} is inside a file ({})", self.show(&at)))),
                Err(_) => {
                    fs::create_dir(&at).map_err(|e| ArtifactError::io("cannot create a directory", e))?
                }
            }
        }
        let target = self.root.join(rel);
        // A later entry replaces an earlier file or link of the same name
        // (as tar does), but never by writing through it.
        if let Ok(m) = fs::symlink_metadata(&target) {
            if !m.is_dir() {
                fs::remove_file(&target).map_err(|e| ArtifactError::io("cannot replace an entry", e))?;
            }
        }
        Ok(target)
    }

    fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).display().to_string()
    }

    fn dir(&mut self, name: &str, rel: &Path) -> Result<(), ArtifactError> {
        let target = self.prepare(name, rel)?;
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(invalid(format!("entry {name} is a directory over a file"))),
            Err(_) => fs::create_dir(&target).map_err(|e| ArtifactError::io("cannot create a directory", e)),
        }
    }

    fn file(
        &mut self,
        name: &str,
        rel: &Path,
        mode: u32,
        content: &mut impl Read,
    ) -> Result<(), ArtifactError> {
        let target = self.prepare(name, rel)?;
        if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(invalid(format!("entry {name} is a file over a directory")));
        }
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&target)
            .map_err(|e| ArtifactError::io("cannot create a file", e))?;
        let budget = self.limits.max_bytes.saturating_sub(self.bytes);
        // One byte more than the budget tells "exactly at the limit" from
        // "over it" without trusting any declared size.
        let copied = io::copy(&mut content.take(budget.saturating_add(1)), &mut file)
            .map_err(|e| io_invalid(&format!("cannot unpack {name}"), e))?;
        if copied > budget {
            return Err(invalid(format!(
                "unpacks to more than {} bytes (artifact_unpacked_max_mb)",
                self.limits.max_bytes
            )));
        }
        file.flush().map_err(|e| ArtifactError::io("cannot write a file", e))?;
        self.bytes += copied;
        Ok(())
    }

    fn symlink(&mut self, name: &str, rel: &Path, target: &Path) -> Result<(), ArtifactError> {
        let escapes =
            || invalid(format!("symlink {name} points outside the directory ({})", target.display()));
        if target.as_os_str().is_empty() {
            return Err(invalid(format!("symlink {name} has an empty target")));
        }
        if target.is_absolute() {
            return Err(escapes());
        }
        // Lexically: the link's own depth, then each component of the target.
        let mut depth = rel.components().count() as i64 - 1;
        for part in target.components() {
            match part {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(escapes());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(escapes()),
            }
        }
        let at = self.prepare(name, rel)?;
        std::os::unix::fs::symlink(target, &at)
            .map_err(|e| ArtifactError::io("cannot create a symlink", e))?;
        self.symlinks.push(at);
        Ok(())
    }

    fn hardlink(&mut self, name: &str, rel: &Path, target: &str) -> Result<(), ArtifactError> {
        let target_rel = safe_relative(target)
            .map_err(|_| invalid(format!("hard link {name} points outside the directory ({target})")))?;
        let source = self.root.join(&target_rel);
        let mut at = self.root.clone();
        for part in target_rel.components() {
            at.push(part);
            if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(invalid(format!("hard link {name} points through a symlink ({target})")));
            }
        }
        if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
            return Err(invalid(format!(
                "hard link {name} points to {target}, which is not a file unpacked before it"
            )));
        }
        let at = self.prepare(name, rel)?;
        fs::hard_link(&source, &at).map_err(|e| ArtifactError::io("cannot create a hard link", e))
    }

    /// Every symlink, resolved through whatever else was unpacked, must
    /// still land inside the root (chains like `a -> .`, `b -> a/..`).
    fn check_symlinks(&self) -> Result<(), ArtifactError> {
        for link in &self.symlinks {
            if let Ok(real) = fs::canonicalize(link) {
                if !real.starts_with(&self.root) {
                    return Err(invalid(format!(
                        "symlink {} points outside the directory (resolves to {})",
                        self.show(link),
                        real.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn tar(&mut self, reader: impl Read) -> Result<(), ArtifactError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| io_invalid("corrupt tar archive", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| io_invalid("corrupt tar archive", e))?;
            let kind = entry.header().entry_type();
            if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
                continue;
            }
            self.count_entry()?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let rel = safe_relative(&name)?;
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mode = entry.header().mode().unwrap_or(0o644);
                    self.file(&name, &rel, mode, &mut entry)?;
                }
                tar::EntryType::Directory => self.dir(&name, &rel)?,
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(|e| io_invalid("corrupt tar archive", e))?
                        .ok_or_else(|| invalid(format!("symlink {name} has no target")))?
                        .into_owned();
                    self.symlink(&name, &rel, &target)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .ok_or_else(|| invalid(format!("hard link {name} has no target")))?;
                    self.hardlink(&name, &rel, &target)?;
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    return Err(invalid(format!("entry {name} is a device file")))
                }
                tar::EntryType::Fifo => return Err(invalid(format!("entry {name} is a FIFO"))),
                other => return Err(invalid(format!("entry {name} has an unsupported type {other:?}"))),
            }
        }
        Ok(())
    }

    /// Returns whether the zip is a jar (has `META-INF/MANIFEST.MF`).
    fn zip(&mut self, file: fs::File) -> Result<bool, ArtifactError> {
        let mut zip = zip::ZipArchive::new(io::BufReader::new(file))
            .map_err(|e| io_invalid("corrupt zip archive", e))?;
        if zip.len() as u64 > self.limits.max_entries {
            return Err(invalid(format!(
                "more than {} entries (artifact_max_entries)",
                self.limits.max_entries
            )));
        }
        let mut jar = false;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| io_invalid("corrupt zip archive", e))?;
            self.count_entry()?;
            let name = entry.name().map_err(|e| io_invalid("corrupt zip archive", e))?.into_owned();
            let rel = safe_relative(&name)?;
            jar |= rel == Path::new("META-INF/MANIFEST.MF");
            let mode = entry.unix_mode();
            match mode.map(|m| m & 0o170000) {
                Some(0o120000) => {
                    let mut target = String::new();
                    (&mut entry)
                        .take(MAX_LINK_TARGET)
                        .read_to_string(&mut target)
                        .map_err(|e| io_invalid(&format!("cannot read symlink {name}"), e))?;
                    self.symlink(&name, &rel, Path::new(&target))?;
                }
                Some(0o020000 | 0o060000) => return Err(invalid(format!("entry {name} is a device file"))),
                Some(0o010000) => return Err(invalid(format!("entry {name} is a FIFO"))),
                Some(0o140000) => return Err(invalid(format!("entry {name} is a socket"))),
                _ if entry.is_dir() => self.dir(&name, &rel)?,
                _ => self.file(&name, &rel, mode.unwrap_or(0o644), &mut entry)?,
            }
        }
        Ok(jar)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const LIMITS: UnpackLimits = UnpackLimits { max_entries: 1000, max_bytes: 1 << 20 };

    /// Builds a tar.gz from (name, kind, content-or-link-target) triples,
    /// writing raw header names so that hostile paths survive.
    pub(crate) fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(if name.ends_with(".sh") { 0o755 } else { 0o644 });
            // Raw bytes: `set_path` would refuse `..` itself.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    header.set_link_name_literal(data).unwrap();
                    header.set_size(0);
                    header.set_cksum();
                    builder.append(&header, io::empty()).unwrap();
                }
                _ => {
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append(&header, *data).unwrap();
                }
            }
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        for (name, data) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn try_unpack(
        bytes: &[u8],
        limits: UnpackLimits,
    ) -> (tempfile::TempDir, Result<ArchiveKind, ArtifactError>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        std::fs::write(&archive, bytes).unwrap();
        let dest = dir.path().join("job");
        std::fs::create_dir(&dest).unwrap();
        let result = unpack(&archive, &dest, limits);
        (dir, result)
    }

    fn refused(bytes: &[u8], limits: UnpackLimits, needle: &str) {
        let (dir, result) = try_unpack(bytes, limits);
        let err = result.expect_err("must be refused").to_string();
        assert!(err.starts_with("artifact_invalid: "), "{err}");
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        // Nothing landed next to the destination.
        let outside: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(outside.len(), 2, "only archive and job/ exist: {outside:?}");
    }

    #[test]
    fn tar_gz_unpacks_files_dirs_modes_and_inner_links() {
        let bytes = tar_gz(&[
            ("bin/", tar::EntryType::Directory, b""),
            ("run.sh", tar::EntryType::Regular, b"#!/bin/sh\necho hi\n"),
            ("data/a.txt", tar::EntryType::Regular, b"a"),
            ("data/link", tar::EntryType::Symlink, b"a.txt"),
            ("data/up", tar::EntryType::Symlink, b"../run.sh"),
            ("data/hard", tar::EntryType::Link, b"data/a.txt"),
        ]);
        let (dir, result) = try_unpack(&bytes, LIMITS);
        assert_eq!(result.unwrap(), ArchiveKind::TarGz);
        let job = dir.path().join("job");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(job.join("run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read_to_string(job.join("data/link")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(job.join("data/hard")).unwrap(), "a");
        assert!(job.join("bin").is_dir());
    }

    #[test]
    fn zip_slip_and_absolute_paths_are_refused() {
        refused(&tar_gz(&[("../evil", tar::EntryType::Regular, b"x")]), LIMITS, "entry ../evil escapes");
        refused(&tar_gz(&[("a/../../evil", tar::EntryType::Regular, b"x")]), LIMITS, "escapes");
        refused(&tar_gz(&[("/tmp/evil", tar::EntryType::Regular, b"x")]), LIMITS, "absolute path");
        refused(&zip_bytes(&[("../evil", b"x")]), LIMITS, "entry ../evil escapes");
        refused(&zip_bytes(&[("/etc/evil", b"x")]), LIMITS, "absolute path");
        refused(&zip_bytes(&[("C:\\evil", b"x")]), LIMITS, "absolute path");
        // A colon elsewhere is just a name.
        let (dir, result) = try_unpack(&zip_bytes(&[("a:b.txt", b"x")]), LIMITS);
        assert_eq!(result.unwrap(), ArchiveKind::Zip);
        assert!(dir.path().join("job/a:b.txt").is_file());
    }

    #[test]
    fn symlinks_pointing_out_are_refused() {
        refused(&tar_gz(&[("out", tar::EntryType::Symlink, b"../..")]), LIMITS, "symlink out points outside");
        refused(&tar_gz(&[("out", tar::EntryType::Symlink, b"/etc")]), LIMITS, "points outside");
        // Each harmless alone, together they escape: caught after unpacking.
        refused(
            &tar_gz(&[
                ("d/", tar::EntryType::Directory, b""),
                ("d/b", tar::EntryType::Symlink, b"../a/.."),
                ("a", tar::EntryType::Symlink, b"."),
            ]),
            LIMITS,
            "points outside",
        );
        // Writing through a symlink is refused even when it points inside.
        refused(
            &tar_gz(&[("in", tar::EntryType::Symlink, b"."), ("in/x", tar::EntryType::Regular, b"x")]),
            LIMITS,
            "goes through the symlink",
        );
    }

    #[test]
    fn hard_links_pointing_out_are_refused() {
        refused(
            &tar_gz(&[("h", tar::EntryType::Link, b"../../etc/passwd")]),
            LIMITS,
            "hard link h points outside",
        );
        refused(&tar_gz(&[("h", tar::EntryType::Link, b"/etc/passwd")]), LIMITS, "points outside");
        refused(&tar_gz(&[("h", tar::EntryType::Link, b"missing")]), LIMITS, "not a file unpacked before");
    }

    #[test]
    fn device_files_and_fifos_are_refused() {
        refused(&tar_gz(&[("dev", tar::EntryType::Char, b"")]), LIMITS, "entry dev is a device file");
        refused(&tar_gz(&[("blk", tar::EntryType::Block, b"")]), LIMITS, "device file");
        refused(&tar_gz(&[("pipe", tar::EntryType::Fifo, b"")]), LIMITS, "FIFO");
    }

    #[test]
    fn zip_bombs_are_refused_by_count_and_by_actual_size() {
        let many: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("f{i}"), Vec::new())).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let limits = UnpackLimits { max_entries: 10, max_bytes: 1 << 20 };
        refused(&zip_bytes(&many), limits, "more than 10 entries");
        refused(&tar_gz(&[("a", tar::EntryType::Regular, &b""[..]); 11]), limits, "more than 10 entries");
        // 8 MiB of zeros compress to a few KiB; the limit is 1 MiB.
        let zeros = vec![0u8; 8 << 20];
        let bomb = zip_bytes(&[("zeros", &zeros)]);
        assert!(bomb.len() < 64 * 1024, "compressed to {}", bomb.len());
        refused(&bomb, LIMITS, "unpacks to more than 1048576 bytes");
        refused(&tar_gz(&[("zeros", tar::EntryType::Regular, &zeros)]), LIMITS, "unpacks to more than");
        // Many small files that add up.
        let half = vec![1u8; 600 * 1024];
        refused(&zip_bytes(&[("a", &half), ("b", &half)]), LIMITS, "unpacks to more than");
    }

    #[test]
    fn jars_are_unpacked_and_kept_whole() {
        let bytes = zip_bytes(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\nMain-Class: a.B\r\n"),
            ("a/B.class", b"\xca\xfe"),
        ]);
        let (dir, result) = try_unpack(&bytes, LIMITS);
        assert_eq!(result.unwrap(), ArchiveKind::Jar);
        assert_eq!(std::fs::read(dir.path().join("job").join(JAR_NAME)).unwrap(), bytes);
        let plain = zip_bytes(&[("x.txt", b"x")]);
        assert_eq!(try_unpack(&plain, LIMITS).1.unwrap(), ArchiveKind::Zip);
    }

    #[test]
    fn garbage_is_not_an_archive() {
        refused(b"hello, I am not an archive", LIMITS, "not a tar.gz");
        refused(&[0x1f, 0x8b, 1, 2, 3], LIMITS, "corrupt tar archive");
    }
}
