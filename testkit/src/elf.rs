//! Is an executable static (no `PT_INTERP`)? The ELF reading is the launch doctor's
//! (`tether_doctor::elf`); this is the path-based face the tests use.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The program interpreter (`PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`) of an ELF file,
/// or `None` for a statically linked one.
pub fn interpreter(path: impl AsRef<Path>) -> Result<Option<String>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match tether_doctor::elf::inspect(&bytes.as_slice()) {
        Some(info) => Ok(info.interpreter),
        None => bail!("{} is not an ELF file", path.display()),
    }
}

/// Whether `path` is statically linked. Panics when it is not an ELF file (a test's mistake).
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
        assert!(interp.as_deref().unwrap_or("").contains("ld-linux"), "{interp:?}");
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
