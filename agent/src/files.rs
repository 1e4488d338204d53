//! File operations inside the target's root file system.
//!
//! The program must see the target's files, and only those: a path like `/etc/resolv.conf`, an
//! absolute symlink such as `/etc/localtime -> /usr/share/zoneinfo/UTC`, or `../../..` must all
//! resolve against the target's root, never against the agent's. So the agent opens a directory
//! descriptor of `/proc/PID/root` once and resolves every path with
//! `openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: the kernel treats that
//! descriptor as `/` for the whole walk, and the walk sees the target's mount namespace.
//!
//! Failures are errnos for the program (`ENOENT`, `EACCES`, `ENOTDIR`, ...), returned in the reply;
//! everything here is blocking and is run on tokio's blocking pool by the service.
//!
//! Details worth knowing:
//! - `ReadDir` always follows a final symlink (as `opendir` does); `.` and `..` are not listed.
//! - `ReadFile` reads regular files to their end (files of `/proc` report size 0); a directory
//!   gives `EISDIR`; other kinds (devices, FIFOs, sockets) give their metadata and no content.
//! - `WriteFile` gives a file it creates to the target's file-system uid and gid, so files written
//!   "as the target" are not left owned by the agent's user.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use tether_protocol::agent::{
    DirEntry, FileKind, FileStat, ReadDirReply, ReadLinkReply, StatReply, WriteFileReply, WriteFileRequest,
};

/// An errno for the program.
pub type Errno = i32;

fn errno_of(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn last_errno() -> Errno {
    errno_of(&io::Error::last_os_error())
}

/// What [`Root::open_read`] found.
pub enum Opened {
    /// A regular file, ready to be read.
    File(File, FileStat),
    /// A device, FIFO or socket: metadata only.
    NotRegular(FileStat),
    /// The errno, with the metadata when it is known (`EISDIR`).
    Failed(Errno, Option<FileStat>),
}

/// The target's root directory, opened once.
pub struct Root {
    dir: OwnedFd,
    pid: i32,
}

impl Root {
    /// Wraps an open `O_PATH` descriptor of `/proc/PID/root`.
    pub fn new(dir: OwnedFd, pid: i32) -> Self {
        Root { dir, pid }
    }

    /// `openat2` below the root. `mode` is only used with `O_CREAT`.
    pub fn open(&self, path: &str, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
        let cpath = CString::new(path).map_err(|_| libc::EINVAL)?;
        if path.is_empty() {
            return Err(libc::ENOENT);
        }
        // SAFETY: zeroed plain-old-data struct (it is non_exhaustive, so no literal).
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.mode = if flags & libc::O_CREAT != 0 { u64::from(mode & 0o7777) } else { 0 };
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        let mut tries = 0;
        loop {
            // SAFETY: valid path pointer and `how` of the size we pass.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.dir.as_raw_fd(),
                    cpath.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                // SAFETY: the kernel just gave us this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            }
            let e = last_errno();
            // EAGAIN: a concurrent rename or mount disturbed RESOLVE_IN_ROOT's walk; try again.
            if (e == libc::EINTR || e == libc::EAGAIN) && tries < 16 {
                tries += 1;
                continue;
            }
            return Err(e);
        }
    }

    fn open_path(&self, path: &str, follow: bool) -> Result<OwnedFd, Errno> {
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        self.open(path, libc::O_PATH | nofollow, 0)
    }

    /// Metadata of `path` (`stat` when `follow`, else `lstat`).
    pub fn stat(&self, path: &str, follow: bool) -> StatReply {
        match self.open_path(path, follow).and_then(|fd| fstat(&fd)) {
            Ok(st) => StatReply { errno: 0, stat: Some(file_stat(&st)) },
            Err(errno) => StatReply { errno, stat: None },
        }
    }

    /// Opens `path` for reading.
    pub fn open_read(&self, path: &str) -> Opened {
        // O_NONBLOCK: opening a FIFO must not hang the agent (no effect on regular files).
        let fd = match self.open(path, libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(e) => return Opened::Failed(e, None),
        };
        let st = match fstat(&fd) {
            Ok(st) => st,
            Err(e) => return Opened::Failed(e, None),
        };
        let meta = file_stat(&st);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Opened::File(File::from(fd), meta),
            libc::S_IFDIR => Opened::Failed(libc::EISDIR, Some(meta)),
            _ => Opened::NotRegular(meta),
        }
    }

    /// Whole content of a small file (for `/etc/hosts` and `/etc/resolv.conf`).
    pub fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>, Errno> {
        let file = match self.open_read(path) {
            Opened::File(file, _) => file,
            Opened::NotRegular(_) => return Err(libc::EINVAL),
            Opened::Failed(e, _) => return Err(e),
        };
        let mut out = Vec::new();
        file.take(limit).read_to_end(&mut out).map_err(|e| errno_of(&e))?;
        Ok(out)
    }

    /// Entries of a directory, without `.` and `..`.
    pub fn read_dir(&self, path: &str) -> ReadDirReply {
        let fail = |errno| ReadDirReply { errno, stat: None, entries: vec![] };
        let fd = match self.open(path, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) => return fail(e),
        };
        let st = match fstat(&fd) {
            Ok(st) => st,
            Err(e) => return fail(e),
        };
        match list_dir(&fd) {
            Ok(entries) => ReadDirReply { errno: 0, stat: Some(file_stat(&st)), entries },
            Err(e) => ReadDirReply { errno: e, stat: Some(file_stat(&st)), entries: vec![] },
        }
    }

    /// The target of a symbolic link (`EINVAL` when `path` is not one).
    pub fn read_link(&self, path: &str) -> ReadLinkReply {
        let result = self.open_path(path, false).and_then(|fd| {
            let st = fstat(&fd)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                return Err(libc::EINVAL);
            }
            let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
            // SAFETY: empty path with an O_PATH symlink descriptor reads that link.
            let n = unsafe { libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                return Err(last_errno());
            }
            buf.truncate(n as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        });
        match result {
            Ok(target) => ReadLinkReply { errno: 0, target },
            Err(errno) => ReadLinkReply { errno, target: String::new() },
        }
    }

    /// Writes `data` at `offset`, creating and/or truncating as asked. The data is in the file
    /// (page cache) when this returns.
    pub fn write_file(&self, req: &WriteFileRequest) -> WriteFileReply {
        match self.write_inner(req) {
            Ok(written) => WriteFileReply { errno: 0, written },
            Err(errno) => WriteFileReply { errno, written: 0 },
        }
    }

    fn write_inner(&self, req: &WriteFileRequest) -> Result<u64, Errno> {
        let base = libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK;
        let mode = if req.mode & 0o7777 == 0 { 0o644 } else { req.mode };
        let (fd, created) = if req.create {
            match self.open(&req.path, base | libc::O_CREAT | libc::O_EXCL, mode) {
                Ok(fd) => (fd, true),
                // Exists (or is a symlink, which O_EXCL refuses): open it; a dangling symlink
                // then gets its target created, as a plain O_CREAT would.
                Err(libc::EEXIST) => match self.open(&req.path, base, 0) {
                    Err(libc::ENOENT) => (self.open(&req.path, base | libc::O_CREAT, mode)?, true),
                    other => (other?, false),
                },
                Err(e) => return Err(e),
            }
        } else {
            (self.open(&req.path, base, 0)?, false)
        };
        if created {
            self.give_to_target(&fd);
        }
        let file = File::from(fd);
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(libc::EISDIR);
        }
        file.write_all_at(&req.data, req.offset).map_err(|e| errno_of(&e))?;
        if req.truncate {
            file.set_len(req.offset + req.data.len() as u64).map_err(|e| errno_of(&e))?;
        }
        Ok(req.data.len() as u64)
    }

    /// Best effort: a created file belongs to the target's file-system uid/gid.
    fn give_to_target(&self, fd: &OwnedFd) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else { return };
        let field = |name: &str| -> Option<u32> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            // "Uid:\treal\teffective\tsaved\tfilesystem"
            line.split_whitespace().nth(4)?.parse().ok()
        };
        if let (Some(uid), Some(gid)) = (field("Uid:"), field("Gid:")) {
            // SAFETY: plain syscall on a descriptor we own.
            if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
                tracing::debug!(uid, gid, err = %io::Error::last_os_error(), "fchown of a created file failed");
            }
        }
    }
}

fn fstat(fd: &impl AsRawFd) -> Result<libc::stat, Errno> {
    // SAFETY: fstat into a zeroed struct we own (works on O_PATH descriptors).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(last_errno());
    }
    Ok(st)
}

fn kind_of(mode: u32) -> FileKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::Regular,
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// `struct stat` -> wire form.
pub fn file_stat(st: &libc::stat) -> FileStat {
    FileStat {
        kind: kind_of(st.st_mode) as i32,
        mode: st.st_mode,
        size: st.st_size as u64,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
        ino: st.st_ino,
        #[allow(clippy::unnecessary_cast)] // u32 on some architectures
        nlink: st.st_nlink as u64,
        dev: st.st_dev,
        atime_sec: st.st_atime,
        atime_nsec: st.st_atime_nsec as u32,
        ctime_sec: st.st_ctime,
        ctime_nsec: st.st_ctime_nsec as u32,
        blocks: st.st_blocks as u64,
        blksize: st.st_blksize as u64,
        rdev: st.st_rdev,
    }
}

/// Reads a directory with `getdents64`; kinds come from `d_type`, or `fstatat` when the file
/// system does not fill it in.
fn list_dir(dir: &OwnedFd) -> Result<Vec<DirEntry>, Errno> {
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: the buffer is ours and its length is passed.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(entries);
        }
        let mut off = 0usize;
        let n = n as usize;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while off + 19 <= n {
            let ino = u64::from_ne_bytes(buf[off..off + 8].try_into().unwrap());
            let reclen = u16::from_ne_bytes(buf[off + 16..off + 18].try_into().unwrap()) as usize;
            let dtype = buf[off + 18];
            if reclen == 0 || off + reclen > n {
                return Err(libc::EIO);
            }
            let name_bytes = &buf[off + 19..off + reclen];
            let name_len = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len());
            let name = &name_bytes[..name_len];
            off += reclen;
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match dtype {
                libc::DT_REG => FileKind::Regular,
                libc::DT_DIR => FileKind::Directory,
                libc::DT_LNK => FileKind::Symlink,
                libc::DT_UNKNOWN => kind_at(dir, name),
                _ => FileKind::Other,
            };
            entries.push(DirEntry { name: String::from_utf8_lossy(name).into_owned(), kind: kind as i32, ino });
        }
    }
}

fn kind_at(dir: &OwnedFd, name: &[u8]) -> FileKind {
    let Ok(cname) = CString::new(name) else { return FileKind::Other };
    // SAFETY: one path component relative to a directory we hold; no symlink is followed.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dir.as_raw_fd(), cname.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return FileKind::Unspecified;
    }
    kind_of(st.st_mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn temp_root(tag: &str) -> (std::path::PathBuf, Root) {
        let dir = std::env::temp_dir().join(format!("tether-agent-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        let fd = File::open(&dir).unwrap();
        (dir, Root::new(fd.into(), std::process::id() as i32))
    }

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside() {
        let (dir, root) = temp_root("escape");
        std::fs::write(dir.join("etc/passwd"), "inside\n").unwrap();
        symlink("/etc/passwd", dir.join("abs")).unwrap();
        symlink("../../../../../etc/passwd", dir.join("etc/rel")).unwrap();
        assert_eq!(root.read_small("/abs", 100).unwrap(), b"inside\n");
        assert_eq!(root.read_small("/etc/rel", 100).unwrap(), b"inside\n");
        assert_eq!(root.read_small("/../../../etc/passwd", 100).unwrap(), b"inside\n");
        assert_eq!(root.read_link("/abs").target, "/etc/passwd");
        assert_eq!(root.read_link("/etc/passwd").errno, libc::EINVAL);
        let st = root.stat("/abs", false);
        assert_eq!(st.stat.unwrap().kind, FileKind::Symlink as i32);
        let st = root.stat("/abs", true);
        assert_eq!(st.stat.unwrap().size, 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_are_errnos() {
        let (dir, root) = temp_root("errors");
        assert_eq!(root.stat("/missing", true).errno, libc::ENOENT);
        assert_eq!(root.stat("", true).errno, libc::ENOENT);
        assert_eq!(root.stat("/a\0b", true).errno, libc::EINVAL);
        assert_eq!(root.read_dir("/missing").errno, libc::ENOENT);
        assert!(matches!(root.open_read("/etc"), Opened::Failed(libc::EISDIR, Some(_))));
        std::fs::write(dir.join("f"), "x").unwrap();
        assert_eq!(root.read_dir("/f").errno, libc::ENOTDIR);
        assert_eq!(root.stat("/f/x", true).errno, libc::ENOTDIR);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directories_list_their_entries_with_kinds() {
        let (dir, root) = temp_root("dir");
        std::fs::write(dir.join("etc/file"), "x").unwrap();
        std::fs::create_dir(dir.join("etc/sub")).unwrap();
        symlink("file", dir.join("etc/link")).unwrap();
        let reply = root.read_dir("/etc");
        assert_eq!(reply.errno, 0);
        let mut got: Vec<(String, i32)> = reply.entries.iter().map(|e| (e.name.clone(), e.kind)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("file".into(), FileKind::Regular as i32),
                ("link".into(), FileKind::Symlink as i32),
                ("sub".into(), FileKind::Directory as i32),
            ]
        );
        assert_eq!(reply.stat.unwrap().kind, FileKind::Directory as i32);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_create_overwrite_and_truncate() {
        let (dir, root) = temp_root("write");
        let w = |path: &str, offset, data: &[u8], truncate, create| {
            root.write_file(&WriteFileRequest {
                path: path.into(),
                offset,
                data: data.to_vec(),
                truncate,
                create,
                mode: 0o600,
            })
        };
        assert_eq!(w("/new", 0, b"hello", false, false).errno, libc::ENOENT);
        assert_eq!(w("/new", 0, b"hello world", false, true).written, 11);
        assert_eq!(std::fs::read(dir.join("new")).unwrap(), b"hello world");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("new")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(w("/new", 6, b"there", false, true).errno, 0);
        assert_eq!(std::fs::read(dir.join("new")).unwrap(), b"hello there");
        assert_eq!(w("/new", 0, b"bye", true, false).errno, 0);
        assert_eq!(std::fs::read(dir.join("new")).unwrap(), b"bye");
        assert_eq!(w("/etc", 0, b"x", false, false).errno, libc::EISDIR);
        // Through an absolute symlink: still inside the root.
        symlink("/target", dir.join("via")).unwrap();
        assert_eq!(w("/via", 0, b"t", false, true).errno, 0);
        assert!(Path::new(&dir.join("target")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
