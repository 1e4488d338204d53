//! Just enough ELF to tell whether a program can load the layer.
//!
//! The layer reaches an editor-launched program through `LD_PRELOAD`, which only the dynamic
//! linker reads: a program without a `PT_INTERP` segment (statically linked, static-pie too)
//! never loads it. Go binaries are recognised (a `.go.buildinfo` section, or a `Go` build-ID
//! note) because their fix differs. Both classes (ELF32, ELF64) and both byte orders are read;
//! every offset is bounds-checked, so a truncated or hostile file is "not an ELF" or a partial
//! answer, never a panic.

use crate::facts::ReadAt;

/// The largest table or string section read (program headers, section headers, names, notes).
const MAX_TABLE: u64 = 4 << 20;

const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
/// `NT_GO_BUILDID` in a note named `Go`.
const NT_GO_BUILD_ID: u32 = 4;

/// What the doctor needs to know about an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// 32 or 64.
    pub bits: u8,
    /// `e_type`: 2 executable, 3 shared object / PIE.
    pub kind: u16,
    /// The requested program interpreter (`/lib64/ld-linux-x86-64.so.2`), `None` when static.
    pub interpreter: Option<String>,
    /// Built by the Go toolchain.
    pub go: bool,
}

impl ElfInfo {
    /// No dynamic linker runs for this program, so `LD_PRELOAD` is ignored.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none()
    }
}

/// Byte order and class of the file being read.
#[derive(Clone, Copy)]
struct Layout {
    big: bool,
    wide: bool,
}

impl Layout {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.big { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
    /// An address-sized field: u64 in ELF64, u32 in ELF32.
    fn word(self, b: &[u8], at64: usize, at32: usize) -> Option<u64> {
        if self.wide { self.u64(b, at64) } else { self.u32(b, at32).map(u64::from) }
    }
}

/// Whether the bytes start like an ELF file.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// Reads the ELF file in `r`; `None` when it is not an ELF file or its header is unreadable.
pub fn inspect(r: &dyn ReadAt) -> Option<ElfInfo> {
    let h = r.read_exact_at(0, 52)?;
    if !is_elf(&h) {
        return None;
    }
    let wide = match h[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = match h[5] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let l = Layout { big, wide };
    let h = if wide { r.read_exact_at(0, 64)? } else { h };
    let kind = l.u16(&h, 16)?;
    let phoff = l.word(&h, 32, 28)?;
    let shoff = l.word(&h, 40, 32)?;
    let (phentsize, phnum) = if wide { (l.u16(&h, 54)?, l.u16(&h, 56)?) } else { (l.u16(&h, 42)?, l.u16(&h, 44)?) };
    let (shentsize, shnum, shstrndx) = if wide {
        (l.u16(&h, 58)?, l.u16(&h, 60)?, l.u16(&h, 62)?)
    } else {
        (l.u16(&h, 46)?, l.u16(&h, 48)?, l.u16(&h, 50)?)
    };

    let mut info = ElfInfo { bits: if wide { 64 } else { 32 }, kind, interpreter: None, go: false };

    // Program headers: the interpreter, and Go's build-ID note in PT_NOTE segments.
    let min_ph = if wide { 56 } else { 32 };
    if phnum > 0
        && usize::from(phentsize) >= min_ph
        && let Some(table) = read_table(r, phoff, phentsize, phnum)
    {
        for e in table.chunks_exact(usize::from(phentsize)) {
            let p_type = l.u32(e, 0)?;
            let offset = l.word(e, 8, 4)?;
            let size = l.word(e, 32, 16)?;
            match p_type {
                PT_INTERP => {
                    let bytes = read_capped(r, offset, size)?;
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    info.interpreter = Some(String::from_utf8_lossy(&bytes[..end]).into());
                }
                PT_NOTE if !info.go => {
                    if let Some(notes) = read_capped(r, offset, size) {
                        info.go = has_go_note(l, &notes);
                    }
                }
                _ => {}
            }
        }
    }

    // Section headers: `.go.buildinfo` (and note sections, for files without PT_NOTE).
    let min_sh = if wide { 64 } else { 40 };
    if !info.go
        && shnum > 0
        && usize::from(shentsize) >= min_sh
        && shstrndx < shnum
        && let Some(table) = read_table(r, shoff, shentsize, shnum)
    {
        let entry = |i: usize| table.chunks_exact(usize::from(shentsize)).nth(i);
        let section = |e: &[u8]| -> Option<(u32, u32, u64, u64)> {
            Some((l.u32(e, 0)?, l.u32(e, 4)?, l.word(e, 24, 16)?, l.word(e, 32, 20)?))
        };
        let names = entry(usize::from(shstrndx))
            .and_then(section)
            .and_then(|(_, _, off, size)| read_capped(r, off, size))
            .unwrap_or_default();
        for e in table.chunks_exact(usize::from(shentsize)) {
            let Some((name, sh_type, off, size)) = section(e) else {
                continue;
            };
            let name = cstr_at(&names, name as usize);
            if name == b".go.buildinfo" {
                info.go = true;
                break;
            }
            if sh_type == SHT_NOTE && read_capped(r, off, size).is_some_and(|n| has_go_note(l, &n)) {
                info.go = true;
                break;
            }
        }
    }
    Some(info)
}

/// `count` entries of `size` bytes at `offset`, if the table is of a sane size.
fn read_table(r: &dyn ReadAt, offset: u64, size: u16, count: u16) -> Option<Vec<u8>> {
    read_capped(r, offset, u64::from(size) * u64::from(count))
}

fn read_capped(r: &dyn ReadAt, offset: u64, size: u64) -> Option<Vec<u8>> {
    if size > MAX_TABLE {
        return None;
    }
    r.read_exact_at(offset, size as usize)
}

/// The NUL-terminated string at `at` in a string table (empty when out of range).
fn cstr_at(table: &[u8], at: usize) -> &[u8] {
    let rest = table.get(at..).unwrap_or_default();
    &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
}

/// Whether a note area holds a note named `Go` of type `NT_GO_BUILDID`.
fn has_go_note(l: Layout, notes: &[u8]) -> bool {
    let mut at = 0usize;
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    while at + 12 <= notes.len() {
        let (Some(namesz), Some(descsz), Some(ty)) = (l.u32(notes, at), l.u32(notes, at + 4), l.u32(notes, at + 8))
        else {
            return false;
        };
        let name_at = at + 12;
        let Some(name_len) = pad(namesz as usize) else {
            return false;
        };
        let Some(desc_len) = pad(descsz as usize) else {
            return false;
        };
        let name = notes.get(name_at..name_at.saturating_add(namesz as usize));
        // Go writes the name as "Go\0\0" with namesz 4; others write "Go\0".
        if ty == NT_GO_BUILD_ID && name.is_some_and(|n| n.split(|&b| b == 0).next() == Some(b"Go")) {
            return true;
        }
        match name_at.checked_add(name_len).and_then(|n| n.checked_add(desc_len)) {
            Some(next) if next > at => at = next,
            _ => return false,
        }
    }
    false
}

/// Builders of small ELF files for the tests of this crate.
#[cfg(test)]
pub(crate) mod fixture {
    /// How the fixture marks itself as Go.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum GoMark {
        None,
        BuildInfoSection,
        BuildIdNote,
    }

    /// A minimal ELF: header, program headers (PT_INTERP when `interp` is given, PT_NOTE for
    /// a Go build ID), and section headers (`.shstrtab`, `.go.buildinfo` when asked).
    pub fn elf(bits: u8, big: bool, interp: Option<&str>, go: GoMark) -> Vec<u8> {
        let wide = bits == 64;
        let (ehsize, phentsize, shentsize) = if wide { (64, 56, 64) } else { (52, 32, 40) };
        let put16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
        let put32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
        let put64 = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
        let putw = |v: &mut Vec<u8>, x: u64| {
            if wide { put64(v, x) } else { put32(v, x as u32) }
        };

        // Payloads laid out after the headers.
        let mut phdrs: Vec<(u32, Vec<u8>)> = Vec::new();
        if let Some(i) = interp {
            let mut b = i.as_bytes().to_vec();
            b.push(0);
            phdrs.push((3, b));
        }
        if go == GoMark::BuildIdNote {
            let mut n = Vec::new();
            put32(&mut n, 4);
            put32(&mut n, 8);
            put32(&mut n, 4);
            n.extend_from_slice(b"Go\0\0");
            n.extend_from_slice(b"buildid!");
            phdrs.push((4, n));
        }
        let mut shstrtab = b"\0.shstrtab\0".to_vec();
        let buildinfo_name = shstrtab.len() as u32;
        shstrtab.extend_from_slice(b".go.buildinfo\0");
        let buildinfo = b"\xff Go buildinf:".to_vec();

        let phoff = ehsize as u64;
        let mut data_at = phoff + (phentsize * phdrs.len()) as u64;
        let mut payload = Vec::new();
        let mut ph_table = Vec::new();
        for (ty, bytes) in &phdrs {
            let off = data_at + payload.len() as u64;
            put32(&mut ph_table, *ty);
            if wide {
                put32(&mut ph_table, 4); // flags
            }
            putw(&mut ph_table, off);
            putw(&mut ph_table, 0); // vaddr
            putw(&mut ph_table, 0); // paddr
            putw(&mut ph_table, bytes.len() as u64);
            putw(&mut ph_table, bytes.len() as u64);
            if !wide {
                put32(&mut ph_table, 4); // flags
            }
            putw(&mut ph_table, 1);
            payload.extend_from_slice(bytes);
        }
        let shstrtab_off = data_at + payload.len() as u64;
        payload.extend_from_slice(&shstrtab);
        let buildinfo_off = data_at + payload.len() as u64;
        payload.extend_from_slice(&buildinfo);
        data_at += payload.len() as u64;
        let shoff = data_at;

        let mut sections: Vec<(u32, u32, u64, u64)> = vec![(0, 0, 0, 0), (1, 3, shstrtab_off, shstrtab.len() as u64)];
        if go == GoMark::BuildInfoSection {
            sections.push((buildinfo_name, 1, buildinfo_off, buildinfo.len() as u64));
        }
        let mut sh_table = Vec::new();
        for (name, ty, off, size) in &sections {
            put32(&mut sh_table, *name);
            put32(&mut sh_table, *ty);
            putw(&mut sh_table, 0); // flags
            putw(&mut sh_table, 0); // addr
            putw(&mut sh_table, *off);
            putw(&mut sh_table, *size);
            put32(&mut sh_table, 0); // link
            put32(&mut sh_table, 0); // info
            putw(&mut sh_table, 1); // addralign
            putw(&mut sh_table, 0); // entsize
        }

        let mut f = b"\x7fELF".to_vec();
        f.push(if wide { 2 } else { 1 });
        f.push(if big { 2 } else { 1 });
        f.push(1);
        f.resize(16, 0);
        put16(&mut f, if interp.is_some() { 3 } else { 2 });
        put16(&mut f, 62);
        put32(&mut f, 1);
        putw(&mut f, 0x1000); // entry
        putw(&mut f, phoff);
        putw(&mut f, shoff);
        put32(&mut f, 0); // flags
        put16(&mut f, ehsize as u16);
        put16(&mut f, phentsize as u16);
        put16(&mut f, phdrs.len() as u16);
        put16(&mut f, shentsize as u16);
        put16(&mut f, sections.len() as u16);
        put16(&mut f, 1); // shstrndx
        assert_eq!(f.len(), ehsize);
        f.extend_from_slice(&ph_table);
        f.extend_from_slice(&payload);
        f.extend_from_slice(&sh_table);
        f
    }

    pub const LD: &str = "/lib64/ld-linux-x86-64.so.2";

    pub fn dynamic() -> Vec<u8> {
        elf(64, false, Some(LD), GoMark::None)
    }
    pub fn static_c() -> Vec<u8> {
        elf(64, false, None, GoMark::None)
    }
    #[allow(dead_code)]
    pub fn static_go() -> Vec<u8> {
        elf(64, false, None, GoMark::BuildInfoSection)
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

    #[test]
    fn every_class_and_byte_order() {
        for bits in [32, 64] {
            for big in [false, true] {
                let dynamic = elf(bits, big, Some(LD), GoMark::None);
                let info = inspect(&dynamic.as_slice()).unwrap();
                assert_eq!(info.bits, bits);
                assert_eq!(info.interpreter.as_deref(), Some(LD), "{bits} big={big}");
                assert!(!info.is_static());
                assert!(!info.go);

                let stat = elf(bits, big, None, GoMark::None);
                let info = inspect(&stat.as_slice()).unwrap();
                assert!(info.is_static(), "{bits} big={big}");
                assert_eq!(info.kind, 2);
            }
        }
    }

    #[test]
    fn go_by_buildinfo_section_or_build_id_note() {
        for bits in [32, 64] {
            for big in [false, true] {
                let by_section = elf(bits, big, None, GoMark::BuildInfoSection);
                assert!(inspect(&by_section.as_slice()).unwrap().go, "{bits} {big}");
                let by_note = elf(bits, big, Some(LD), GoMark::BuildIdNote);
                let info = inspect(&by_note.as_slice()).unwrap();
                assert!(info.go, "{bits} {big}");
                assert!(!info.is_static());
            }
        }
    }

    #[test]
    fn not_elf() {
        assert!(inspect(&b"#!/bin/sh\necho hi\n".as_slice()).is_none());
        assert!(inspect(&b"\x7fELF".as_slice()).is_none());
        let mut bad_class = static_c();
        bad_class[4] = 9;
        assert!(inspect(&bad_class.as_slice()).is_none());
    }

    #[test]
    fn truncated_and_corrupt_files_never_panic() {
        let full = elf(64, false, Some(LD), GoMark::BuildInfoSection);
        for len in 0..full.len() {
            let _ = inspect(&&full[..len]);
        }
        // Every single-byte corruption of the header and tables.
        for i in 0..full.len().min(400) {
            for v in [0x00, 0xff, 0x80] {
                let mut f = full.clone();
                f[i] = v;
                let _ = inspect(&f.as_slice());
            }
        }
        // A truncated file keeps what it could read: the header says 64-bit.
        let head_only = &full[..64];
        let info = inspect(&head_only).unwrap();
        assert!(info.is_static() && !info.go);
    }

    #[test]
    fn go_notes_with_garbage_sizes_stop() {
        let l = Layout { big: false, wide: true };
        let mut n = Vec::new();
        n.extend_from_slice(&u32::MAX.to_le_bytes());
        n.extend_from_slice(&u32::MAX.to_le_bytes());
        n.extend_from_slice(&4u32.to_le_bytes());
        assert!(!has_go_note(l, &n));
        assert!(!has_go_note(l, &[0; 11]));
    }
}
