//! A tiny ELF64 program-header reader: is an executable static (no `PT_INTERP`)?

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

const PT_INTERP: u32 = 3;

/// The program interpreter (`PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`) of an ELF64 file,
/// or `None` for a statically linked one.
pub fn interpreter(path: impl AsRef<Path>) -> Result<Option<String>> {
    let path = path.as_ref();
    let ctx = || format!("reading ELF headers of {}", path.display());
    let mut f = File::open(path).with_context(ctx)?;
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).with_context(ctx)?;
    ensure!(
        &eh[..4] == b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    ensure!(eh[4] == 2, "{} is not a 64-bit ELF file", path.display());
    let le = match eh[5] {
        1 => true,
        2 => false,
        _ => bail!("{}: bad ELF data encoding", path.display()),
    };
    let u16_at = |b: &[u8], o: usize| {
        let a = [b[o], b[o + 1]];
        if le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let u64_at = |b: &[u8], o: usize| {
        let a: [u8; 8] = b[o..o + 8].try_into().unwrap();
        if le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    };
    let phoff = u64_at(&eh, 0x20);
    let phentsize = u16_at(&eh, 0x36) as usize;
    let phnum = u16_at(&eh, 0x38) as usize;
    ensure!(
        phentsize >= 56,
        "{}: bad e_phentsize {phentsize}",
        path.display()
    );
    let mut ph = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff)).with_context(ctx)?;
    f.read_exact(&mut ph).with_context(ctx)?;
    for i in 0..phnum {
        let p = &ph[i * phentsize..(i + 1) * phentsize];
        if u32_at(p, 0) == PT_INTERP {
            let off = u64_at(p, 0x08);
            let size = u64_at(p, 0x20) as usize;
            ensure!(size <= 4096, "{}: PT_INTERP too large", path.display());
            let mut s = vec![0u8; size];
            f.seek(SeekFrom::Start(off)).with_context(ctx)?;
            f.read_exact(&mut s).with_context(ctx)?;
            while s.last() == Some(&0) {
                s.pop();
            }
            return Ok(Some(String::from_utf8_lossy(&s).into_owned()));
        }
    }
    Ok(None)
}

/// True when the ELF64 executable has no program interpreter (statically linked, including
/// static-pie). Panics when the file cannot be read or is not ELF64 — use [`interpreter`] to
/// handle that case.
pub fn is_static(path: impl AsRef<Path>) -> bool {
    match interpreter(path.as_ref()) {
        Ok(i) => i.is_none(),
        Err(e) => panic!("elf::is_static: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_test_binary_is_dynamic() {
        let exe = std::env::current_exe().unwrap();
        let interp = interpreter(&exe).unwrap();
        assert!(
            interp.as_deref().unwrap_or("").contains("ld-linux"),
            "{interp:?}"
        );
        assert!(!is_static(&exe));
    }

    #[test]
    fn non_elf_is_an_error() {
        let p = std::env::temp_dir().join(format!("testkit-notelf-{}", std::process::id()));
        std::fs::write(&p, b"#!/bin/sh\necho hi\n".repeat(8)).unwrap();
        let e = interpreter(&p).unwrap_err();
        std::fs::remove_file(&p).unwrap();
        assert!(format!("{e}").contains("not an ELF"), "{e}");
    }
}
