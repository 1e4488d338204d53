//! Just enough Mach-O to tell whether macOS will strip `DYLD_INSERT_LIBRARIES` from a program.
//!
//! dyld ignores `DYLD_*` variables for a program whose code signature carries the `restrict`
//! flag or the hardened `runtime` flag (unless it is entitled to take them). Those flags live
//! in the CodeDirectory of the signature that `LC_CODE_SIGNATURE` points at. Thin files (32/64
//! bit, either byte order) and universal ("fat") files are read; a universal file counts as
//! protected when any of its slices is. Every read is bounds-checked.

use crate::facts::{Offset, ReadAt};

/// `CS_RESTRICT`: dyld ignores `DYLD_*` variables.
pub const CS_RESTRICT: u32 = 0x800;
/// `CS_RUNTIME`: the hardened runtime.
pub const CS_RUNTIME: u32 = 0x10000;

const LC_CODE_SIGNATURE: u32 = 0x1d;
const CSMAGIC_EMBEDDED_SIGNATURE: u32 = 0xfade_0cc0;
const CSMAGIC_CODEDIRECTORY: u32 = 0xfade_0c02;
const CSMAGIC_EMBEDDED_ENTITLEMENTS: u32 = 0xfade_7171;
const CSSLOT_CODEDIRECTORY: u32 = 0;
const CSSLOT_ENTITLEMENTS: u32 = 5;
const CSSLOT_ALTERNATE_CODEDIRECTORIES: u32 = 0x1000;

const MAX_LOAD_COMMANDS: u32 = 8 << 20;
const MAX_BLOBS: u32 = 64;
const MAX_ENTITLEMENTS: u32 = 1 << 20;
const MAX_FAT_ARCHES: u32 = 32;

/// The entitlements that let a hardened program take `DYLD_INSERT_LIBRARIES` and load an
/// unsigned library.
const DYLD_ENTITLEMENTS: [&str; 2] =
    ["com.apple.security.cs.allow-dyld-environment-variables", "com.apple.security.cs.disable-library-validation"];

/// One architecture of a Mach-O file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub cputype: u32,
    /// Has an `LC_CODE_SIGNATURE`.
    pub signed: bool,
    /// The CodeDirectory flags (`0` when unsigned).
    pub cs_flags: u32,
    /// Entitled to `DYLD_*` variables and unsigned libraries.
    pub dyld_entitled: bool,
}

impl Slice {
    /// Why dyld strips `DYLD_*` variables for this slice, if it does.
    pub fn protection(&self) -> Option<&'static str> {
        if self.cs_flags & CS_RESTRICT != 0 {
            Some("its signature has the `restrict` flag")
        } else if self.cs_flags & CS_RUNTIME != 0 && !self.dyld_entitled {
            Some("its signature enables the hardened runtime")
        } else {
            None
        }
    }
}

/// A Mach-O file: one slice, or several for a universal file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachoInfo {
    pub fat: bool,
    pub slices: Vec<Slice>,
}

impl MachoInfo {
    /// Why macOS strips `DYLD_*` variables for this program, if it does.
    pub fn protection(&self) -> Option<&'static str> {
        self.slices.iter().find_map(Slice::protection)
    }
}

/// Reads the Mach-O file in `r`; `None` when it is not one.
pub fn inspect(r: &dyn ReadAt) -> Option<MachoInfo> {
    let magic = r.read_exact_at(0, 4)?;
    let be = u32::from_be_bytes(magic[..4].try_into().ok()?);
    if be == 0xcafe_babe || be == 0xcafe_babf {
        let wide = be == 0xcafe_babf;
        let head = r.read_exact_at(4, 4)?;
        let n = u32::from_be_bytes(head[..4].try_into().ok()?);
        // 0xcafebabe is also a Java class file, whose next word is a version >= 45.
        if n == 0 || n > MAX_FAT_ARCHES {
            return None;
        }
        let entry = if wide { 32 } else { 20 };
        let table = r.read_exact_at(8, entry * n as usize)?;
        let mut slices = Vec::new();
        for e in table.chunks_exact(entry) {
            let offset = if wide { be64(e, 8)? } else { u64::from(be32(e, 8)?) };
            let inner = Offset { inner: r, base: offset };
            slices.push(thin_image(&inner)?);
        }
        return Some(MachoInfo { fat: true, slices });
    }
    Some(MachoInfo { fat: false, slices: vec![thin_image(r)?] })
}

/// One thin Mach-O image starting at offset 0 of `r`.
fn thin_image(r: &dyn ReadAt) -> Option<Slice> {
    let h = r.read_exact_at(0, 28)?;
    let (big, wide) = match h[..4] {
        [0xce, 0xfa, 0xed, 0xfe] => (false, false),
        [0xcf, 0xfa, 0xed, 0xfe] => (false, true),
        [0xfe, 0xed, 0xfa, 0xce] => (true, false),
        [0xfe, 0xed, 0xfa, 0xcf] => (true, true),
        _ => return None,
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    };
    let cputype = u32_at(&h, 4)?;
    let ncmds = u32_at(&h, 16)?;
    let sizeofcmds = u32_at(&h, 20)?;
    let header_len = if wide { 32 } else { 28 };
    let mut slice = Slice { cputype, signed: false, cs_flags: 0, dyld_entitled: false };
    if sizeofcmds > MAX_LOAD_COMMANDS {
        return Some(slice);
    }
    let Some(cmds) = r.read_exact_at(header_len, sizeofcmds as usize) else {
        return Some(slice);
    };
    let mut at = 0usize;
    for _ in 0..ncmds {
        let (Some(cmd), Some(size)) = (u32_at(&cmds, at), u32_at(&cmds, at + 4)) else {
            break;
        };
        if cmd == LC_CODE_SIGNATURE {
            let (Some(dataoff), Some(datasize)) = (u32_at(&cmds, at + 8), u32_at(&cmds, at + 12)) else {
                break;
            };
            slice.signed = true;
            read_signature(r, u64::from(dataoff), datasize, &mut slice);
            break;
        }
        if size < 8 {
            break;
        }
        at = at.saturating_add(size as usize);
    }
    Some(slice)
}

/// Fills the flags and entitlements from the signature's SuperBlob (always big-endian).
fn read_signature(r: &dyn ReadAt, base: u64, size: u32, slice: &mut Slice) {
    let Some(head) = r.read_exact_at(base, 12) else {
        return;
    };
    if be32(&head, 0) != Some(CSMAGIC_EMBEDDED_SIGNATURE) {
        return;
    }
    let count = be32(&head, 8).unwrap_or(0).min(MAX_BLOBS);
    let Some(index) = r.read_exact_at(base + 12, count as usize * 8) else {
        return;
    };
    for e in index.chunks_exact(8) {
        let (Some(slot), Some(offset)) = (be32(e, 0), be32(e, 4)) else {
            continue;
        };
        if offset >= size {
            continue;
        }
        let at = base + u64::from(offset);
        let is_cd = slot == CSSLOT_CODEDIRECTORY
            || (CSSLOT_ALTERNATE_CODEDIRECTORIES..CSSLOT_ALTERNATE_CODEDIRECTORIES + 5).contains(&slot);
        if is_cd {
            if let Some(cd) = r.read_exact_at(at, 16)
                && be32(&cd, 0) == Some(CSMAGIC_CODEDIRECTORY)
            {
                slice.cs_flags |= be32(&cd, 12).unwrap_or(0);
            }
        } else if slot == CSSLOT_ENTITLEMENTS {
            let Some(h) = r.read_exact_at(at, 8) else {
                continue;
            };
            let len = be32(&h, 4).unwrap_or(0);
            if be32(&h, 0) != Some(CSMAGIC_EMBEDDED_ENTITLEMENTS) || !(8..=MAX_ENTITLEMENTS).contains(&len) {
                continue;
            }
            if let Some(xml) = r.read_exact_at(at + 8, len as usize - 8) {
                let xml = String::from_utf8_lossy(&xml);
                slice.dyld_entitled = DYLD_ENTITLEMENTS.iter().all(|k| entitled(&xml, k));
            }
        }
    }
}

/// Whether the entitlements plist sets `key` to true.
fn entitled(xml: &str, key: &str) -> bool {
    let tag = format!("<key>{key}</key>");
    xml.find(&tag).is_some_and(|i| xml[i + tag.len()..].trim_start().starts_with("<true/>"))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Builders of small Mach-O files for the tests of this crate.
#[cfg(test)]
pub(crate) mod fixture {
    pub const ARM64: u32 = 0x0100_000c;
    pub const X86_64: u32 = 0x0100_0007;

    /// A thin 64-bit little-endian Mach-O executable with one unrelated load command and, when
    /// `cs_flags` is given, an `LC_CODE_SIGNATURE` pointing at a SuperBlob with a CodeDirectory
    /// carrying those flags (and an entitlements blob when `entitlements` is given).
    pub fn thin(cputype: u32, cs_flags: Option<u32>, entitlements: Option<&str>) -> Vec<u8> {
        thin_with(cputype, cs_flags, entitlements, false, true)
    }

    pub fn thin_with(
        cputype: u32,
        cs_flags: Option<u32>,
        entitlements: Option<&str>,
        big: bool,
        wide: bool,
    ) -> Vec<u8> {
        let p32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
        let header_len = if wide { 32 } else { 28 };
        let mut cmds = Vec::new();
        // LC_UUID (0x1b), 24 bytes, to be skipped.
        p32(&mut cmds, 0x1b);
        p32(&mut cmds, 24);
        cmds.extend_from_slice(&[7u8; 16]);
        let ncmds = if cs_flags.is_some() { 2 } else { 1 };
        let sig_at = (header_len + cmds.len() + 16 + 64) as u32;
        let sig = cs_flags.map(|f| signature(f, entitlements));
        if let Some(sig) = &sig {
            p32(&mut cmds, 0x1d);
            p32(&mut cmds, 16);
            p32(&mut cmds, sig_at);
            p32(&mut cmds, sig.len() as u32);
        }
        let mut f = Vec::new();
        let magic: u32 = if wide { 0xfeed_facf } else { 0xfeed_face };
        p32(&mut f, magic);
        p32(&mut f, cputype);
        p32(&mut f, 0); // subtype
        p32(&mut f, 2); // MH_EXECUTE
        p32(&mut f, ncmds);
        p32(&mut f, cmds.len() as u32);
        p32(&mut f, 0); // flags
        if wide {
            p32(&mut f, 0);
        }
        f.extend_from_slice(&cmds);
        if let Some(sig) = sig {
            f.resize(sig_at as usize, 0); // "code"
            f.extend_from_slice(&sig);
        }
        f
    }

    /// A SuperBlob: CodeDirectory (slot 0) with `flags`, optional entitlements (slot 5), and
    /// an empty CMS blob (slot 0x10000) like real signatures have.
    pub fn signature(flags: u32, entitlements: Option<&str>) -> Vec<u8> {
        let be = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_be_bytes());
        let mut cd = Vec::new();
        be(&mut cd, 0xfade_0c02);
        be(&mut cd, 44);
        be(&mut cd, 0x20400); // version
        be(&mut cd, flags);
        cd.resize(44, 0);
        let mut blobs: Vec<(u32, Vec<u8>)> = vec![(0, cd)];
        if let Some(xml) = entitlements {
            let mut e = Vec::new();
            be(&mut e, 0xfade_7171);
            be(&mut e, 8 + xml.len() as u32);
            e.extend_from_slice(xml.as_bytes());
            blobs.push((5, e));
        }
        let mut cms = Vec::new();
        be(&mut cms, 0xfade_0b01);
        be(&mut cms, 8);
        blobs.push((0x10000, cms));
        let mut sb = Vec::new();
        let head = 12 + 8 * blobs.len();
        let total: usize = head + blobs.iter().map(|(_, b)| b.len()).sum::<usize>();
        be(&mut sb, 0xfade_0cc0);
        be(&mut sb, total as u32);
        be(&mut sb, blobs.len() as u32);
        let mut at = head;
        for (slot, b) in &blobs {
            be(&mut sb, *slot);
            be(&mut sb, at as u32);
            at += b.len();
        }
        for (_, b) in blobs {
            sb.extend_from_slice(&b);
        }
        sb
    }

    /// A universal file holding `slices` (thin files), 32- or 64-bit fat header.
    pub fn fat(slices: &[Vec<u8>], wide: bool) -> Vec<u8> {
        let be = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_be_bytes());
        let mut f = Vec::new();
        be(&mut f, if wide { 0xcafe_babf } else { 0xcafe_babe });
        be(&mut f, slices.len() as u32);
        let entry = if wide { 32 } else { 20 };
        let mut at = 8 + entry * slices.len();
        at = at.next_multiple_of(16);
        let mut offsets = Vec::new();
        for s in slices {
            offsets.push(at);
            at = (at + s.len()).next_multiple_of(16);
        }
        for (s, off) in slices.iter().zip(&offsets) {
            let cpu = u32::from_le_bytes(s[4..8].try_into().unwrap());
            be(&mut f, cpu);
            be(&mut f, 0);
            if wide {
                f.extend_from_slice(&(*off as u64).to_be_bytes());
                f.extend_from_slice(&(s.len() as u64).to_be_bytes());
                be(&mut f, 4);
                be(&mut f, 0);
            } else {
                be(&mut f, *off as u32);
                be(&mut f, s.len() as u32);
                be(&mut f, 4);
            }
        }
        for (s, off) in slices.iter().zip(&offsets) {
            f.resize(*off, 0);
            f.extend_from_slice(s);
        }
        f
    }

    pub fn entitlements(keys: &[&str]) -> String {
        let mut x = String::from("<?xml version=\"1.0\"?><plist><dict>");
        for k in keys {
            x.push_str(&format!("<key>{k}</key>\n\t<true/>"));
        }
        x.push_str("</dict></plist>");
        x
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

    #[test]
    fn unsigned_and_plain_signed_are_not_protected() {
        let unsigned = inspect(&thin(ARM64, None, None).as_slice()).unwrap();
        assert!(!unsigned.fat);
        assert_eq!(unsigned.slices[0].cputype, ARM64);
        assert!(!unsigned.slices[0].signed);
        assert_eq!(unsigned.protection(), None);

        let adhoc = inspect(&thin(ARM64, Some(0x2), None).as_slice()).unwrap();
        assert!(adhoc.slices[0].signed);
        assert_eq!(adhoc.slices[0].cs_flags, 0x2);
        assert_eq!(adhoc.protection(), None);
    }

    #[test]
    fn restrict_and_runtime_flags_protect() {
        let r = inspect(&thin(ARM64, Some(CS_RESTRICT), None).as_slice()).unwrap();
        assert!(r.protection().unwrap().contains("restrict"));
        let h = inspect(&thin(X86_64, Some(CS_RUNTIME | 0x2), None).as_slice()).unwrap();
        assert!(h.protection().unwrap().contains("hardened runtime"));
    }

    #[test]
    fn hardened_but_entitled_to_dyld_variables_is_not_protected() {
        let both = entitlements(&DYLD_ENTITLEMENTS);
        let ok = inspect(&thin(ARM64, Some(CS_RUNTIME), Some(&both)).as_slice()).unwrap();
        assert!(ok.slices[0].dyld_entitled);
        assert_eq!(ok.protection(), None);
        // One of the two is not enough: the unsigned layer would still be refused.
        let one = entitlements(&DYLD_ENTITLEMENTS[..1]);
        let half = inspect(&thin(ARM64, Some(CS_RUNTIME), Some(&one)).as_slice()).unwrap();
        assert!(half.protection().is_some());
        // `restrict` wins over any entitlement.
        let r = inspect(&thin(ARM64, Some(CS_RESTRICT), Some(&both)).as_slice()).unwrap();
        assert!(r.protection().is_some());
    }

    #[test]
    fn all_thin_layouts() {
        for big in [false, true] {
            for wide in [false, true] {
                let f = thin_with(7, Some(CS_RUNTIME), None, big, wide);
                let info = inspect(&f.as_slice()).unwrap();
                assert_eq!(info.slices[0].cputype, 7, "big={big} wide={wide}");
                assert_eq!(info.slices[0].cs_flags, CS_RUNTIME, "big={big} wide={wide}");
            }
        }
    }

    #[test]
    fn universal_files_are_protected_when_any_slice_is() {
        for wide in [false, true] {
            let plain = fat(&[thin(X86_64, Some(0), None), thin(ARM64, None, None)], wide);
            let info = inspect(&plain.as_slice()).unwrap();
            assert!(info.fat);
            assert_eq!(info.slices.len(), 2);
            assert_eq!(info.slices[1].cputype, ARM64);
            assert_eq!(info.protection(), None);

            let mixed = fat(&[thin(X86_64, None, None), thin(ARM64, Some(CS_RESTRICT), None)], wide);
            assert!(inspect(&mixed.as_slice()).unwrap().protection().is_some(), "wide={wide}");
        }
    }

    #[test]
    fn not_macho() {
        assert!(inspect(&b"#!/bin/sh\n".as_slice()).is_none());
        assert!(inspect(&crate::elf::fixture::dynamic().as_slice()).is_none());
        // A Java class file starts with 0xcafebabe too.
        assert!(inspect(&b"\xca\xfe\xba\xbe\x00\x00\x00\x34rest".as_slice()).is_none());
        assert!(inspect(&b"".as_slice()).is_none());
    }

    #[test]
    fn truncated_and_corrupt_files_never_panic() {
        let full = fat(&[thin(ARM64, Some(CS_RUNTIME), Some(&entitlements(&["x"])))], true);
        for len in 0..full.len() {
            let _ = inspect(&&full[..len]);
        }
        for i in 0..full.len() {
            for v in [0x00, 0xff, 0x7f] {
                let mut f = full.clone();
                f[i] = v;
                let _ = inspect(&f.as_slice());
            }
        }
        // A signature cut off at the end: the slice is still known, only unflagged.
        let t = thin(ARM64, Some(CS_RUNTIME), None);
        let info = inspect(&&t[..t.len() - 60]).unwrap();
        assert!(info.slices[0].signed);
        assert_eq!(info.protection(), None);
    }
}
