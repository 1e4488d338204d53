//! Reading and writing the memory of a trapped thread.
//!
//! Every access goes through `process_vm_readv`/`process_vm_writev`, which fail with `EFAULT`
//! (or `ESRCH` for a thread that is gone) instead of crashing the daemon: a program may pass any
//! pointer. Callers re-check the notification id before acting on what they read, because the
//! thread may have died and its id been reused in between.

use std::io;

fn vm(tid: u32, addr: u64, buf: *mut u8, len: usize, write: bool) -> io::Result<usize> {
    let local = libc::iovec { iov_base: buf.cast(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    let n = unsafe {
        if write {
            libc::process_vm_writev(tid as i32, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(tid as i32, &local, 1, &remote, 1, 0)
        }
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Reads exactly `len` bytes at `addr`.
pub fn read(tid: u32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    if addr == 0 {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    let mut buf = vec![0u8; len];
    let n = vm(tid, addr, buf.as_mut_ptr(), len, false)?;
    if n != len {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(buf)
}

/// Reads a NUL-terminated string of at most `max` bytes (PATH_MAX for paths).
///
/// Reads page by page so that a string that ends just before an unmapped page is still read.
pub fn read_cstr(tid: u32, addr: u64, max: usize) -> io::Result<Vec<u8>> {
    if addr == 0 {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let chunk = ((PAGE - at % PAGE) as usize).min(max - out.len());
        let mut buf = vec![0u8; chunk];
        let n = vm(tid, at, buf.as_mut_ptr(), chunk, false)?;
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(out);
        }
        if n < chunk {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        out.extend_from_slice(&buf);
        at += chunk as u64;
    }
    Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}

/// Writes all of `data` at `addr`.
pub fn write(tid: u32, addr: u64, data: &[u8]) -> io::Result<()> {
    if addr == 0 {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    let n = vm(tid, addr, data.as_ptr() as *mut u8, data.len(), true)?;
    if n != data.len() {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_own_memory_and_reports_bad_pointers() {
        let tid = unsafe { libc::gettid() } as u32;
        let s = c"/app/config.txt";
        assert_eq!(read_cstr(tid, s.as_ptr() as u64, 4096).unwrap(), b"/app/config.txt");
        let mut target = [0u8; 4];
        write(tid, target.as_mut_ptr() as u64, b"abcd").unwrap();
        assert_eq!(&target, b"abcd");
        assert_eq!(read(tid, 8, 4).unwrap_err().raw_os_error(), Some(libc::EFAULT));
        assert_eq!(read_cstr(tid, 0, 10).unwrap_err().raw_os_error(), Some(libc::EFAULT));
        let long = vec![b'a'; 100];
        assert_eq!(read_cstr(tid, long.as_ptr() as u64, 50).unwrap_err().raw_os_error(), Some(libc::ENAMETOOLONG));
    }
}
