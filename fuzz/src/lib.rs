//! Shared checks of the fuzz targets. Test-harness code: it may panic on
//! its own setup failures (a full temp disk is not a finding, but it is
//! loud).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sgnode::runner::artifact::detect::detect;
use sgnode::runner::artifact::unpack::{unpack, ArchiveKind, UnpackLimits, JAR_NAME};

/// Small limits, so that the fuzzer reaches them with small inputs.
pub const LIMITS: UnpackLimits = UnpackLimits { max_entries: 16, max_bytes: 64 * 1024 };

/// Writes `data` to `artifact.<ext>`, unpacks it into a fresh directory and
/// checks the unpacker's promises whatever the bytes:
/// - nothing appears outside the destination (its parent holds only it,
///   and the archive's directory only the archive);
/// - the bytes written stay within the limit (plus the one probe byte of a
///   refused file);
/// - after success, every symlink resolves inside the destination, and
///   runner detection on the result returns rather than panics.
pub fn check_unpack(data: &[u8], ext: &str) {
    let scratch = tempfile::tempdir().expect("temp dir");
    let input = scratch.path().join("in");
    let outer = scratch.path().join("out");
    let dest = outer.join("job");
    fs::create_dir(&input).expect("mkdir in");
    fs::create_dir_all(&dest).expect("mkdir out/job");
    let archive = input.join(format!("artifact.{ext}"));
    fs::write(&archive, data).expect("write archive");

    let result = unpack(&archive, &dest, LIMITS);

    assert_eq!(names(scratch.path()), ["in", "out"], "something was created next to the scratch dirs");
    assert_eq!(names(&outer), ["job"], "something was created next to the destination");
    assert_eq!(names(&input), [format!("artifact.{ext}")], "something was created next to the archive");

    let skip_jar = matches!(result, Ok(ArchiveKind::Jar));
    let mut inodes = BTreeSet::new();
    let mut bytes = 0u64;
    let mut links = Vec::new();
    walk(&dest, &dest, skip_jar, &mut inodes, &mut bytes, &mut links);
    match &result {
        Ok(_) => {
            assert!(bytes <= LIMITS.max_bytes, "unpacked {bytes} bytes, limit {}", LIMITS.max_bytes);
            let root = fs::canonicalize(&dest).expect("canonical dest");
            for link in links {
                if let Ok(real) = fs::canonicalize(&link) {
                    assert!(
                        real.starts_with(&root),
                        "{} resolves outside to {}",
                        link.display(),
                        real.display()
                    );
                }
            }
            let _ = detect(&dest);
        }
        Err(e) => {
            assert!(bytes <= LIMITS.max_bytes + 1, "refused, but wrote {bytes} bytes first");
            let _ = e.to_string();
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Sums the bytes of distinct regular files (hard links count once) and
/// collects symlinks, never following one.
fn walk(
    root: &Path,
    dir: &Path,
    skip_jar: bool,
    inodes: &mut BTreeSet<(u64, u64)>,
    bytes: &mut u64,
    links: &mut Vec<std::path::PathBuf>,
) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("dir entry").path();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        if meta.file_type().is_symlink() {
            links.push(path);
        } else if meta.is_dir() {
            walk(root, &path, skip_jar, inodes, bytes, links);
        } else if !(skip_jar && dir == root && path.file_name() == Some(JAR_NAME.as_ref())) {
            if inodes.insert((meta.dev(), meta.ino())) {
                *bytes += meta.len();
            }
        }
    }
}
