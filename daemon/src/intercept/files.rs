//! File system calls: `open`, the `stat` family, `access`, `readlink`.
//!
//! A path is first made absolute (cwd or dirfd), then the session's path rules decide. Local
//! paths continue in the kernel untouched. A remote file is fetched in one round trip and
//! materialised into a memfd that becomes the call's result, so every later `read`, `mmap` or
//! `lseek` runs at local speed with no trap. A remote directory is materialised as a local
//! directory of placeholders so that `getdents64` works; paths opened relative to it map back to
//! the remote directory.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tether_config::fs::{Access, Route};
use tether_protocol::agent::{FileKind, FileStat};

use super::notify::Slot;
use super::{Answer, Call, Stats, memory, proc};

const PATH_MAX: usize = 4096;

/// Where a `stat`-like call wants its answer.
#[derive(Clone, Copy)]
pub enum StatOut {
    /// A `struct stat` at this address.
    Stat(u64),
    /// A `struct statx` at this address.
    Statx(u64),
}

impl Call {
    /// The absolute path an `*at` call names, mapped back from a materialised directory.
    fn path(&self, dirfd: i32, addr: u64) -> Result<Option<String>, i32> {
        let raw =
            memory::read_cstr(self.n.tid, addr, PATH_MAX).map_err(|e| e.raw_os_error().unwrap_or(libc::EFAULT))?;
        if raw.is_empty() {
            return Ok(None); // AT_EMPTY_PATH and friends act on the descriptor itself
        }
        let Some(path) = proc::resolve(self.n.tid, dirfd, &raw) else { return Ok(None) };
        if path.starts_with(self.scope.dir_root.to_str().unwrap_or("\0")) {
            let dirs = self.scope.dirs.lock().unwrap();
            for (local, remote) in dirs.iter() {
                if let Some(rest) = path.strip_prefix(local.as_str()) {
                    if rest.is_empty() || rest.starts_with('/') {
                        return Ok(Some(proc::normalize(&format!("{remote}{rest}"))));
                    }
                }
            }
        }
        Ok(Some(path))
    }

    /// Decides a path; answers at once unless it is remote.
    fn route(self, dirfd: i32, addr: u64, access: Access) -> Option<(Call, String, bool)> {
        let path = match self.path(dirfd, addr) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.answer(Answer::Continue);
                return None;
            }
            Err(errno) => {
                self.answer(Answer::Errno(errno));
                return None;
            }
        };
        let decision = self.scope.paths.decide(&path, access);
        match decision.route {
            Route::Local => {
                self.answer(Answer::Continue);
                None
            }
            Route::NotFound => {
                tracing::debug!(%path, rule = %decision.rule, "hidden");
                self.answer(Answer::Errno(libc::ENOENT));
                None
            }
            Route::Remote { writable } => Some((self, path, writable)),
        }
    }

    pub(super) fn open(self, dirfd: i32, addr: u64, flags: i32) {
        let writes = flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) != 0;
        let access = if writes { Access::Write } else { Access::Read };
        let Some((call, path, writable)) = self.route(dirfd, addr, access) else { return };
        if writes && !writable {
            // The rules sent a write to a read-only remote path: refuse rather than lose data.
            call.answer(Answer::Errno(libc::EROFS));
            return;
        }
        if writes {
            let mode = if call.n.nr as u32 == super::sys::SYS_openat { call.n.args[3] as u32 } else { 0o644 };
            return call.spawn(move |call| async move { call.open_remote_for_writing(path, flags, mode).await });
        }
        call.spawn(move |call| async move { call.open_remote(path, flags).await })
    }

    pub(super) fn openat2(self) {
        let a = self.n.args;
        // struct open_how { u64 flags; u64 mode; u64 resolve; }
        match memory::read(self.n.tid, a[2], 8) {
            Ok(how) => {
                let flags = u64::from_ne_bytes(how.try_into().unwrap()) as i32;
                self.open(a[0] as i32, a[1], flags)
            }
            Err(_) => self.answer(Answer::Errno(libc::EFAULT)),
        }
    }

    /// One round trip for a file: the first message carries metadata and content.
    async fn open_remote(&self, path: String, flags: i32) -> Option<Answer> {
        let dir = flags & libc::O_DIRECTORY != 0;
        let fd = match if dir { Err(libc::EISDIR) } else { self.scope.agent.read_file(&path).await } {
            Ok(file) => {
                Stats::count(&self.scope.stats.files_read);
                match memfd(&path, &file.data) {
                    Ok(fd) => fd,
                    Err(e) => {
                        self.scope.stats.error(format!("{path}: could not hold the remote file: {e}"));
                        return Some(Answer::Errno(libc::EIO));
                    }
                }
            }
            Err(libc::EISDIR) => match self.materialise_dir(&path).await {
                Ok(fd) => fd,
                Err(errno) => return Some(Answer::Errno(errno)),
            },
            Err(errno) => return Some(Answer::Errno(errno)),
        };
        let cloexec = flags & libc::O_CLOEXEC != 0;
        match self.listener.inject(self.n.id, fd.as_raw_fd(), Slot::AsResult, cloexec) {
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None, // the caller is gone
            Err(e) => Some(Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    /// A remote file opened for writing: created or truncated on the target first, then held in
    /// a memfd whose writes are sent through (see `writes`).
    async fn open_remote_for_writing(&self, path: String, flags: i32, mode: u32) -> Option<Answer> {
        let agent = &self.scope.agent;
        let create = flags & libc::O_CREAT != 0;
        let content = match agent.read_file(&path).await {
            Ok(_) if create && flags & libc::O_EXCL != 0 => return Some(Answer::Errno(libc::EEXIST)),
            Ok(file) if flags & libc::O_TRUNC == 0 => file.data,
            Ok(_) => match agent.write_file(&path, 0, Vec::new(), true, false, 0).await {
                Ok(_) => Vec::new(),
                Err(errno) => return Some(Answer::Errno(errno)),
            },
            Err(libc::ENOENT) if create => {
                match agent.write_file(&path, 0, Vec::new(), true, true, mode & 0o7777).await {
                    Ok(_) => Vec::new(),
                    Err(errno) => return Some(Answer::Errno(errno)),
                }
            }
            Err(errno) => return Some(Answer::Errno(errno)),
        };
        let access = flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_APPEND);
        let file = match memfd_with_access(&path, &content, access) {
            Ok(f) => f,
            Err(e) => {
                self.scope.stats.error(format!("{path}: could not hold the remote file: {e}"));
                return Some(Answer::Errno(libc::EIO));
            }
        };
        let cloexec = flags & libc::O_CLOEXEC != 0;
        // Tracked before the program holds it, so no write can slip past.
        self.scope.writes.track(&file, &path);
        match self.listener.inject(self.n.id, file.as_raw_fd(), Slot::AsResult, cloexec) {
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => Some(Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    /// Builds a local directory whose entries mirror the remote one and opens it.
    async fn materialise_dir(&self, remote: &str) -> Result<OwnedFd, i32> {
        let entries = self.scope.agent.read_dir(remote).await?;
        let scope = &self.scope;
        let local = {
            let mut dirs = scope.dirs.lock().unwrap();
            let existing = dirs.iter().find(|(_, r)| r.as_str() == remote).map(|(l, _)| l.clone());
            match existing {
                Some(l) => l,
                None => {
                    let l = scope.dir_root.join(format!("d{}", dirs.len())).to_string_lossy().into_owned();
                    dirs.insert(l.clone(), remote.to_string());
                    l
                }
            }
        };
        let fresh = format!("{local}.new");
        let _ = std::fs::remove_dir_all(&fresh);
        let build = || -> io::Result<()> {
            std::fs::create_dir_all(&fresh)?;
            for e in &entries {
                if e.name.is_empty() || e.name.contains('/') || e.name == "." || e.name == ".." {
                    continue;
                }
                let p = std::path::Path::new(&fresh).join(&e.name);
                if e.kind == FileKind::Directory as i32 {
                    std::fs::create_dir(&p)?;
                } else if e.kind == FileKind::Symlink as i32 {
                    std::os::unix::fs::symlink("/nonexistent", &p)?;
                } else {
                    std::fs::File::create(&p)?;
                }
            }
            let _ = std::fs::remove_dir_all(&local);
            std::fs::rename(&fresh, &local)
        };
        build().map_err(|e| {
            scope.stats.error(format!("{remote}: could not materialise the remote directory: {e}"));
            libc::EIO
        })?;
        let c = CString::new(local).map_err(|_| libc::EINVAL)?;
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 { Err(libc::EIO) } else { Ok(unsafe { OwnedFd::from_raw_fd(fd) }) }
    }

    pub(super) fn stat(self, dirfd: i32, addr: u64, out: StatOut, flags: i32) {
        let Some((call, path, _)) = self.route(dirfd, addr, Access::Read) else { return };
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        call.spawn(move |call| async move {
            let stat = match call.scope.agent.stat(&path, follow).await {
                Ok(s) => s,
                Err(errno) => return Some(Answer::Errno(errno)),
            };
            let bytes = match out {
                StatOut::Stat(_) => stat_bytes(&stat),
                StatOut::Statx(_) => statx_bytes(&stat),
            };
            let addr = match out {
                StatOut::Stat(a) | StatOut::Statx(a) => a,
            };
            if !call.listener.is_valid(call.n.id) {
                return None;
            }
            Some(match memory::write(call.n.tid, addr, &bytes) {
                Ok(()) => Answer::Value(0),
                Err(_) => Answer::Errno(libc::EFAULT),
            })
        })
    }

    pub(super) fn access(self, dirfd: i32, addr: u64, mode: i32) {
        let Some((call, path, writable)) = self.route(dirfd, addr, Access::Read) else { return };
        call.spawn(move |call| async move {
            Some(match call.scope.agent.stat(&path, true).await {
                Err(errno) => Answer::Errno(errno),
                Ok(_) if mode & libc::W_OK != 0 && !writable => Answer::Errno(libc::EROFS),
                Ok(s) if mode & libc::X_OK != 0 && s.mode & 0o111 == 0 => Answer::Errno(libc::EACCES),
                Ok(_) => Answer::Value(0),
            })
        })
    }

    pub(super) fn readlink(self, dirfd: i32, addr: u64, buf: u64, size: u64) {
        let Some((call, path, _)) = self.route(dirfd, addr, Access::Read) else { return };
        call.spawn(move |call| async move {
            let target = match call.scope.agent.read_link(&path).await {
                Ok(t) => t,
                Err(errno) => return Some(Answer::Errno(errno)),
            };
            let bytes = target.as_bytes();
            let n = bytes.len().min(size as usize);
            if !call.listener.is_valid(call.n.id) {
                return None;
            }
            Some(match memory::write(call.n.tid, buf, &bytes[..n]) {
                Ok(()) => Answer::Value(n as i64),
                Err(_) => Answer::Errno(libc::EFAULT),
            })
        })
    }
}

/// A read-only descriptor for a memfd holding `data`.
fn memfd(path: &str, data: &[u8]) -> io::Result<OwnedFd> {
    memfd_with_access(path, data, libc::O_RDONLY).map(OwnedFd::from)
}

/// A descriptor for a memfd holding `data`, reopened with the access mode the program asked for.
fn memfd_with_access(path: &str, data: &[u8], access: i32) -> io::Result<std::fs::File> {
    let name = CString::new(format!("tether:{}", path.rsplit('/').next().unwrap_or("file")))
        .unwrap_or_else(|_| CString::new("tether").unwrap());
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let rw = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(rw);
    file.write_all(data)?;
    // Reopen so that the program's descriptor has the access mode it asked for.
    let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
    let fd = unsafe { libc::open(proc_path.as_ptr(), access | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn as_bytes<T>(v: &T) -> Vec<u8> {
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn stat_bytes(s: &FileStat) -> Vec<u8> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = s.dev as _;
    st.st_ino = s.ino as _;
    st.st_nlink = s.nlink as _;
    st.st_mode = s.mode as _;
    st.st_uid = s.uid;
    st.st_gid = s.gid;
    st.st_rdev = s.rdev as _;
    st.st_size = s.size as _;
    st.st_blksize = s.blksize as _;
    st.st_blocks = s.blocks as _;
    st.st_atime = s.atime_sec as _;
    st.st_atime_nsec = s.atime_nsec as _;
    st.st_mtime = s.mtime_sec as _;
    st.st_mtime_nsec = s.mtime_nsec as _;
    st.st_ctime = s.ctime_sec as _;
    st.st_ctime_nsec = s.ctime_nsec as _;
    as_bytes(&st)
}

fn statx_bytes(s: &FileStat) -> Vec<u8> {
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    st.stx_mask = libc::STATX_BASIC_STATS;
    st.stx_blksize = s.blksize as u32;
    st.stx_nlink = s.nlink as u32;
    st.stx_uid = s.uid;
    st.stx_gid = s.gid;
    st.stx_mode = s.mode as u16;
    st.stx_ino = s.ino;
    st.stx_size = s.size;
    st.stx_blocks = s.blocks;
    st.stx_atime.tv_sec = s.atime_sec;
    st.stx_atime.tv_nsec = s.atime_nsec;
    st.stx_mtime.tv_sec = s.mtime_sec;
    st.stx_mtime.tv_nsec = s.mtime_nsec;
    st.stx_ctime.tv_sec = s.ctime_sec;
    st.stx_ctime.tv_nsec = s.ctime_nsec;
    st.stx_rdev_major = libc::major(s.rdev as libc::dev_t);
    st.stx_rdev_minor = libc::minor(s.rdev as libc::dev_t);
    st.stx_dev_major = libc::major(s.dev as libc::dev_t);
    st.stx_dev_minor = libc::minor(s.dev as libc::dev_t);
    as_bytes(&st)
}
