//! What an archive is, decided from its first bytes (and, where the bytes alone are not enough,
//! its name): the formats read ([`Format`]) and the compressed formats recognised but not read
//! ([`Unsupported`]), which are counted rather than scanned as text.

/// A container this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A POSIX/GNU tar stream (`.tar`).
    Tar,
    /// A gzip stream (`.gz`, `.tgz`): a compressed tar or one compressed file.
    Gzip,
    /// A zip archive (`.zip`, `.jar`, `.war`, `.ear`, …).
    Zip,
}

/// A compressed or archive format recognised by its magic bytes but not read by this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// bzip2 (`.bz2`, `.tbz2`).
    Bzip2,
    /// xz (`.xz`, `.txz`).
    Xz,
    /// Zstandard (`.zst`).
    Zstd,
    /// 7-Zip (`.7z`).
    SevenZip,
    /// RAR (`.rar`).
    Rar,
}

/// What the bytes of a file are, as far as archives go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A format this module reads.
    Archive(Format),
    /// A compressed format it does not read.
    Unsupported(Unsupported),
}

/// Offset of the `ustar` magic in a tar header.
const USTAR_MAGIC_AT: usize = 257;
/// Size of one tar block (a header).
pub(crate) const TAR_BLOCK: usize = 512;

/// Whether `name` (a file name or path) ends with one of `exts` (ASCII case-insensitive).
fn has_extension(name: &str, exts: &[&str]) -> bool {
    let lower = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    exts.iter().any(|e| lower.ends_with(e))
}

/// Whether `block` is a tar header whose checksum is right (the only test an old, pre-POSIX
/// tar header passes: it has no magic).
fn tar_checksum_ok(block: &[u8]) -> bool {
    let Some(block) = block.get(..TAR_BLOCK) else {
        return false;
    };
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() || digits.len() > 7 {
        return false;
    }
    let stored = digits
        .iter()
        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == sum && block[0] != 0
}

/// Whether `head` starts a tar stream: the `ustar` magic, or (for a name ending `.tar`) a
/// header with a valid checksum.
pub(crate) fn is_tar(name: &str, head: &[u8]) -> bool {
    if head.len() >= USTAR_MAGIC_AT + 5 && &head[USTAR_MAGIC_AT..USTAR_MAGIC_AT + 5] == b"ustar" {
        return tar_checksum_ok(head);
    }
    has_extension(name, &[".tar"]) && tar_checksum_ok(head)
}

/// What `data` (whose file is called `name`) is: an archive to read, a compressed format not
/// read, or `None` for anything else (scanned as a file).
pub fn detect(name: &str, data: &[u8]) -> Option<Detected> {
    use Detected::{Archive, Unsupported as U};
    let starts = |magic: &[u8]| data.starts_with(magic);
    if starts(b"PK\x03\x04") || (starts(b"PK\x05\x06") && data.len() == 22) {
        return Some(Archive(Format::Zip));
    }
    if starts(&[0x1f, 0x8b, 0x08]) {
        return Some(Archive(Format::Gzip));
    }
    if is_tar(name, data) {
        return Some(Archive(Format::Tar));
    }
    if data.len() >= 10 && starts(b"BZh") && data[3].is_ascii_digit() && data[3] != b'0' {
        // The block magic (π's digits) right after the header.
        if data[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || data[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90]
        {
            return Some(U(Unsupported::Bzip2));
        }
    }
    if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Some(U(Unsupported::Xz));
    }
    if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some(U(Unsupported::Zstd));
    }
    if starts(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
        return Some(U(Unsupported::SevenZip));
    }
    if starts(b"Rar!\x1a\x07") {
        return Some(U(Unsupported::Rar));
    }
    None
}

/// The name of what a gzip file `name` holds: `x.tgz` → `x.tar`, `x.conf.gz` → `x.conf`,
/// anything else unchanged.
pub(crate) fn gunzipped_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tgz") {
        format!("{}.tar", &name[..name.len() - 4])
    } else if lower.ends_with(".gz") && name.len() > 3 {
        name[..name.len() - 3].to_owned()
    } else if lower.ends_with(".z") && name.len() > 2 {
        name[..name.len() - 2].to_owned()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(
            detect("x", b"PK\x03\x04rest"),
            Some(Detected::Archive(Format::Zip))
        );
        assert_eq!(
            detect("x", &[0x1f, 0x8b, 0x08, 0]),
            Some(Detected::Archive(Format::Gzip))
        );
        assert_eq!(
            detect("x.xz", &[0xfd, b'7', b'z', b'X', b'Z', 0, 1]),
            Some(Detected::Unsupported(Unsupported::Xz))
        );
        assert_eq!(detect("notes.txt", b"BZh is not bzip2 here"), None);
        assert_eq!(detect("a.tar", &[0u8; 1024]), None);
        assert_eq!(detect("plain.conf", b"password=x\n"), None);
    }

    #[test]
    fn gzip_names() {
        assert_eq!(gunzipped_name("backup.tgz"), "backup.tar");
        assert_eq!(gunzipped_name("app.conf.gz"), "app.conf");
        assert_eq!(gunzipped_name(".gz"), ".gz");
    }
}
