//! Jobs as an unprivileged local user (`run_as` in `cluster.toml`).
//!
//! The peer runs as root, resolves the user once when it starts, and then
//! for every attempt: hands the attempt's directory (with the unpacked
//! artifact) to the user, and switches the child to the user's gid,
//! supplementary groups and uid between fork and exec. The job's
//! stdout/stderr stay pipes into log files the peer opened as root, so the
//! job writes its log without being able to open (or touch) any log file.
//!
//! Invariant: with `run_as`, everything a job can write is its own attempt
//! directory (plus world-writable places such as `/tmp`); the peer's data
//! dir is traversable only, its database and logs are closed to others (see
//! [`RunAs::close_data_dir`]).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why `run_as` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("run_as user {0:?} does not exist on this machine")]
    Unknown(String),
    #[error("cannot look up run_as user {name:?}")]
    Lookup { name: String, source: io::Error },
    #[error(
        "run_as = {user:?} needs the peer to run as root (it runs as uid {uid}), since only root \
         can start processes as another user; start the peer as root or remove run_as"
    )]
    NotRoot { user: String, uid: u32 },
    #[error("cannot hand {path} to run_as user {user:?}")]
    Chown { path: PathBuf, user: String, source: io::Error },
}

/// A resolved `run_as` user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Every group the user is in (the primary one included), as `id` shows.
    pub groups: Vec<u32>,
    /// Home directory from the password database (`HOME` of the job).
    pub home: PathBuf,
}

impl RunAs {
    /// Looks `name` up in the password and group databases.
    ///
    /// # Errors
    /// [`UserError::NotRoot`] when this process is not root (it could not
    /// switch users), [`UserError::Unknown`] when there is no such user.
    pub fn resolve(name: &str) -> Result<RunAs, UserError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(UserError::NotRoot { user: name.to_string(), uid: euid });
        }
        let cname = CString::new(name).map_err(|_| UserError::Unknown(name.to_string()))?;
        let lookup = |source| UserError::Lookup { name: name.to_string(), source };
        let mut buf = vec![0u8; 4096];
        let (uid, gid, home) = loop {
            // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call, and `buf.len()` is
            // the length of the buffer the strings of `entry` are put in.
            let rc = unsafe {
                libc::getpwnam_r(cname.as_ptr(), &mut entry, buf.as_mut_ptr().cast(), buf.len(), &mut found)
            };
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            if rc != 0 {
                return Err(lookup(io::Error::from_raw_os_error(rc)));
            }
            if found.is_null() {
                return Err(UserError::Unknown(name.to_string()));
            }
            let home = if entry.pw_dir.is_null() {
                PathBuf::from("/")
            } else {
                // SAFETY: a found entry's pw_dir is a NUL-terminated string in `buf`.
                PathBuf::from(OsStr::from_bytes(unsafe { CStr::from_ptr(entry.pw_dir) }.to_bytes()))
            };
            break (entry.pw_uid, entry.pw_gid, home);
        };
        let mut groups: Vec<libc::gid_t> = vec![0; 32];
        loop {
            let mut count = groups.len() as libc::c_int;
            // SAFETY: `groups` has room for `count` entries; getgrouplist
            // writes at most that many and reports the needed count.
            let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
            let count = usize::try_from(count).unwrap_or(0);
            if rc >= 0 {
                groups.truncate(count);
                break;
            }
            if count <= groups.len() || count > 65_536 {
                // Cannot tell how many: the primary group alone is safe.
                groups = vec![gid];
                break;
            }
            groups.resize(count, 0);
        }
        Ok(RunAs { name: name.to_string(), uid, gid, groups, home })
    }

    /// The user's `cluster.toml` setting for `peer`, resolved.
    ///
    /// # Errors
    /// As [`RunAs::resolve`].
    pub fn for_peer(
        config: &crate::config::ClusterConfig,
        peer: &crate::config::PeerConfig,
    ) -> Result<Option<RunAs>, UserError> {
        config.run_as(peer).map(RunAs::resolve).transpose()
    }

    /// Variables a login would set, so that tools do not write into root's
    /// home: `USER`, `LOGNAME`, `HOME`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("USER".into(), self.name.clone()),
            ("LOGNAME".into(), self.name.clone()),
            ("HOME".into(), self.home.display().to_string()),
        ]
    }

    /// Makes `dir` and everything below it the user's, and `dir` itself
    /// closed to everybody else (mode 0700). Symlinks are changed, never
    /// followed, so an archive's link cannot hand out a file elsewhere.
    ///
    /// # Errors
    /// [`UserError::Chown`] naming the first path that could not be changed.
    pub fn give(&self, dir: &Path) -> Result<(), UserError> {
        self.chown_tree(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| UserError::Chown { path: dir.to_path_buf(), user: self.name.clone(), source })
    }

    fn chown_tree(&self, path: &Path) -> Result<(), UserError> {
        let error = |source| UserError::Chown { path: path.to_path_buf(), user: self.name.clone(), source };
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(error)?;
        let meta = std::fs::symlink_metadata(path).map_err(error)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).map_err(error)? {
                self.chown_tree(&entry.map_err(error)?.path())?;
            }
        }
        Ok(())
    }

    /// Closes the peer's data dir to other users, the job's user included:
    /// the dir itself and `work/` (where attempt directories live) become
    /// traverse-only (0711) so a job can still reach its own directory by
    /// its absolute path; the database and the logs become 0700.
    ///
    /// # Errors
    /// The first directory that could not be created or changed.
    pub fn close_data_dir(data_dir: &Path) -> io::Result<()> {
        let work = data_dir.join("work");
        for (dir, mode) in [
            (data_dir.to_path_buf(), 0o711),
            (work.clone(), 0o711),
            (work.join("attempts"), 0o711),
            (data_dir.join("db"), 0o700),
            (data_dir.join("logs"), 0o700),
        ] {
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Arranges for `command`'s child to become this user before it execs:
    /// supplementary groups, then the gid, then the uid (the last step
    /// gives up the right to do the other two).
    pub fn apply(&self, command: &mut tokio::process::Command) {
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // SAFETY: the hook runs in the forked child before exec and only
        // makes async-signal-safe system calls on memory prepared before the
        // fork (`groups` is not reallocated); errors are reported through
        // errno without allocating.
        unsafe {
            command.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_and_unknown_users_are_named() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let err = RunAs::resolve("root").unwrap_err().to_string();
            assert!(err.contains("needs the peer to run as root"), "{err}");
            return;
        }
        let root = RunAs::resolve("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let err = RunAs::resolve("no-such-user-sgnode").unwrap_err().to_string();
        assert!(err.contains("no-such-user-sgnode") && err.contains("does not exist"), "{err}");
    }
}
