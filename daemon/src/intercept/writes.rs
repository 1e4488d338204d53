//! Write-through for remote files opened for writing (`feature.fs.mode: write`, `read_write`).
//!
//! Such a file is a memfd holding the remote content, like a file opened for reading, so that
//! reads and `mmap` stay local. Writes must never be lost, so in sessions that can write
//! remotely the write family is trapped: a write to one of our memfds is first sent to the agent,
//! and only when the target has it does the kernel perform the same write on the memfd
//! (`CONTINUE`), which keeps the file position and the local copy right. A failed remote write
//! fails the call. Writes to every other descriptor continue at once; a session that holds no
//! such file pays no lookup, otherwise one `stat` of the descriptor tells (by inode, so `dup2`,
//! inherited descriptors and reused numbers are all handled).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use tether_bootstrap::syscalls as sys;

use super::{Answer, Call, memory};

/// The calls trapped in sessions that can write remote files.
pub const TRAPPED: [u32; 6] =
    [sys::SYS_write, sys::SYS_pwrite64, sys::SYS_writev, sys::SYS_pwritev, sys::SYS_pwritev2, sys::SYS_ftruncate];

/// The largest single write sent through; larger writes fail with EFBIG rather than stall.
const MAX_WRITE: usize = 64 << 20;

pub struct WriteThrough {
    pub enabled: bool,
    /// (device, inode) of our memfds -> the remote path, and our own descriptor of the memfd,
    /// kept open so that its inode cannot be reused by another file while the session lives.
    files: Mutex<HashMap<(u64, u64), (String, std::fs::File)>>,
}

impl WriteThrough {
    pub fn new(enabled: bool) -> WriteThrough {
        WriteThrough { enabled, files: Mutex::default() }
    }

    /// Remembers that the memfd `file` stands for the remote `path`.
    pub fn track(&self, file: &std::fs::File, path: &str) {
        if let (Ok(meta), Ok(copy)) = (file.metadata(), file.try_clone()) {
            self.files.lock().unwrap().insert((meta.dev(), meta.ino()), (path.to_string(), copy));
        }
    }

    /// The remote path behind descriptor `fd` of thread `tid`, if it is one of ours.
    fn lookup(&self, tid: u32, fd: i32) -> Option<String> {
        if self.files.lock().unwrap().is_empty() {
            return None;
        }
        let meta = std::fs::metadata(format!("/proc/{tid}/fd/{fd}")).ok()?;
        self.files.lock().unwrap().get(&(meta.dev(), meta.ino())).map(|(path, _)| path.clone())
    }
}

/// The file position and flags of a descriptor, from /proc.
fn position(tid: u32, fd: i32) -> io::Result<(u64, bool)> {
    let info = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}"))?;
    let mut pos = 0;
    let mut append = false;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("flags:") {
            append = u32::from_str_radix(v.trim(), 8).map(|f| f & libc::O_APPEND as u32 != 0).unwrap_or(false);
        }
    }
    if append {
        pos = std::fs::metadata(format!("/proc/{tid}/fd/{fd}"))?.len();
    }
    Ok((pos, append))
}

/// Reads the buffers of an iovec array.
fn gather(tid: u32, iov: u64, count: u64) -> io::Result<Vec<u8>> {
    let count = count.min(1024) as usize;
    let raw = memory::read(tid, iov, count * 16)?;
    let mut out = Vec::new();
    for i in 0..count {
        let base = u64::from_ne_bytes(raw[i * 16..i * 16 + 8].try_into().unwrap());
        let len = u64::from_ne_bytes(raw[i * 16 + 8..i * 16 + 16].try_into().unwrap()) as usize;
        if out.len() + len > MAX_WRITE {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        if len > 0 {
            out.extend(memory::read(tid, base, len)?);
        }
    }
    Ok(out)
}

impl Call {
    pub(super) fn write_through(self) {
        let a = self.n.args;
        let fd = a[0] as i32;
        let tid = self.n.tid;
        let Some(path) = self.scope.writes.lookup(tid, fd) else { return self.answer(Answer::Continue) };
        let nr = self.n.nr as u32;
        // What to send: (offset, data, truncate).
        let plan = (|| -> io::Result<(u64, Vec<u8>, bool)> {
            if nr == sys::SYS_ftruncate {
                return Ok((a[1], Vec::new(), true));
            }
            let data = if nr == sys::SYS_write || nr == sys::SYS_pwrite64 {
                let len = a[2] as usize;
                if len > MAX_WRITE {
                    return Err(io::Error::from_raw_os_error(libc::EFBIG));
                }
                memory::read(tid, a[1], len)?
            } else {
                gather(tid, a[1], a[2])?
            };
            let (pos, append) = position(tid, fd)?;
            let offset = match nr {
                _ if append => pos,
                _ if nr == sys::SYS_pwrite64 || nr == sys::SYS_pwritev => a[3],
                _ if nr == sys::SYS_pwritev2 && a[3] as i64 != -1 => a[3],
                _ => pos,
            };
            Ok((offset, data, false))
        })();
        let (offset, data, truncate) = match plan {
            Ok(p) => p,
            Err(e) => return self.answer(Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO))),
        };
        self.spawn(move |call| async move {
            match call.scope.agent.write_file(&path, offset, data, truncate, false, 0).await {
                Ok(_) => Some(Answer::Continue),
                Err(errno) => {
                    call.scope.stats.error(format!(
                        "{path}: the write did not reach the target ({})",
                        io::Error::from_raw_os_error(errno)
                    ));
                    Some(Answer::Errno(errno))
                }
            }
        })
    }
}
