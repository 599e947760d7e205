//! Path components every operating system can hold safely, and escaping for display.
//!
//! A manifest written on one machine is checked out on others. A name that is harmless on Linux can
//! be dangerous elsewhere: HFS+ ignores some invisible Unicode characters (so `.g\u{200c}it` *is*
//! `.git` on macOS), Windows strips trailing dots and spaces (`.git.` is `.git`), knows the 8.3 short
//! name `GIT~1` and alternate data streams (`.git::$INDEX_ALLOCATION`), and reserves device names
//! (`CON`, `nul.txt`). These are the rules of git's `verify_path` with `core.protectHFS` and
//! `core.protectNTFS` on (CVE-2014-9390 and its successors), plus the Windows file name rules, and
//! they apply on every OS so that a repository is equally safe wherever it is checked out.
//! Characters Windows merely cannot create (`< > " | ? *`) are left to fail there at checkout.
//! Control characters are refused anywhere in a path: they could rewrite a terminal that prints it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a single path component is refused, or `None` when it is acceptable. The component is one
/// `/`-separated part of a path, already known to be non-empty.
pub fn check_component(c: &str) -> Option<&'static str> {
    if c == "." {
        return Some("'.' component");
    }
    if c == ".." {
        return Some("'..' component");
    }
    if c.chars().any(is_control) {
        return Some("contains a control character");
    }
    if is_protected_dir(c, "git") {
        return Some("names the '.git' directory on some filesystem (HFS+ or NTFS)");
    }
    if is_protected_dir(c, "shard") {
        return Some("names the '.shard' directory on some filesystem (HFS+ or NTFS)");
    }
    if c.contains(':') {
        // `model.bin:x` is an alternate data stream of `model.bin` on NTFS: another file's data.
        return Some("contains ':' (a drive or an NTFS alternate data stream on Windows)");
    }
    if c.ends_with('.') || c.ends_with(' ') {
        return Some("ends with '.' or ' ' (Windows strips them, so it names another file)");
    }
    if is_reserved_device(c) {
        return Some("is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)");
    }
    None
}

/// Control characters: C0 (including DEL) and C1.
fn is_control(ch: char) -> bool {
    ch.is_control()
}

/// Code points HFS+ ignores when it compares names (git's `next_hfs_char`).
fn is_hfs_ignorable(ch: char) -> bool {
    matches!(ch as u32,
        0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff)
}

/// Whether component `c` refers to the directory `.{name}` on HFS+ or NTFS:
/// - HFS+: `.{name}` in any ASCII case with ignorable code points anywhere;
/// - NTFS: `.{name}` or the short name `{name}~1`, in any case, followed only by dots and spaces,
///   or by `:` and anything (an alternate data stream); checked with the HFS+-ignorable code
///   points removed too.
fn is_protected_dir(c: &str, name: &str) -> bool {
    // HFS+: drop the ignorable code points, then compare case-insensitively.
    let folded: String = c.chars().filter(|&ch| !is_hfs_ignorable(ch)).collect();
    if folded.len() == name.len() + 1
        && folded.starts_with('.')
        && folded[1..].eq_ignore_ascii_case(name)
    {
        return true;
    }
    // NTFS, on the HFS+-folded name: a superset of git's rules, so that a name is refused also
    // when both filesystems' rules combine (`.git.` followed by an ignorable code point).
    let b = folded.as_bytes();
    let rest = if b.first() == Some(&b'.')
        && b.len() > name.len()
        && b[1..=name.len()].eq_ignore_ascii_case(name.as_bytes())
    {
        &b[name.len() + 1..]
    } else if b.len() >= name.len() + 2
        && b[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && &b[name.len()..name.len() + 2] == b"~1"
    {
        &b[name.len() + 2..]
    } else {
        return false;
    };
    for &ch in rest {
        match ch {
            b':' => return true,
            b'.' | b' ' => {}
            _ => return false,
        }
    }
    true
}

/// Windows device names, reserved in every directory and with any extension (`nul.txt`), any
/// trailing spaces or a stream suffix (`CON:x`).
fn is_reserved_device(c: &str) -> bool {
    let end = c.find(['.', ':']).unwrap_or(c.len());
    let base = c[..end].trim_end_matches(' ');
    let upper = base.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let b = upper.as_bytes();
            b.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && (b'1'..=b'9').contains(&b[3])
        }
    }
}

/// `s` with every control character and every invisible formatting character (zero-width
/// joiners, bidirectional overrides, byte-order marks) replaced by a `\u{…}` escape, and backslashes
/// doubled, so that printing a name from a manifest can neither rewrite the terminal nor disguise
/// itself as another name.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_where(s, |ch| ch == '\\' || is_control(ch) || is_invisible(ch))
}

/// Like [`escape`] but leaves backslashes alone: for whole messages, which may already hold
/// `Debug`-escaped strings, where only what could act on a terminal must be neutralised.
pub fn neutralize(s: &str) -> Cow<'_, str> {
    escape_where(s, |ch| is_control(ch) || is_invisible(ch))
}

fn escape_where(s: &str, needs: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            ch if !needs(ch) => out.push(ch),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ch => {
                let _ = write!(out, "\\u{{{:x}}}", ch as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Invisible formatting characters: zero-width spaces and joiners, direction marks and overrides,
/// invisible operators, the byte-order mark.
fn is_invisible(ch: char) -> bool {
    is_hfs_ignorable(ch)
        || matches!(
            ch as u32,
            0x200b | 0x2060..=0x2069 | 0x061c | 0x180e | 0x00ad
        )
}

/// `s` as one word for a POSIX shell: as it is when that is safe, else in single quotes.
pub fn shell_word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_=./,:@%+".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_git_refuses() {
        for bad in [
            ".git",
            ".GIT",
            ".g\u{200c}it",
            "\u{feff}.git",
            ".gi\u{206f}t",
            "GIT~1",
            "git~1",
            ".git.",
            ".git ",
            ".git. . ",
            ".git::$INDEX_ALLOCATION",
            ".git:stream",
            ".git..\u{200e}",
            "g\u{200c}it~1",
            ".shard",
            ".sha\u{200d}rd",
            "SHARD~1",
            ".shard.",
            "CON",
            "con",
            "nul.txt",
            "Aux.tar.gz",
            "COM1",
            "lpt9.bin",
            "CONIN$",
            "CON :x",
            "a\u{1b}[2Jb",
            "tab\there",
            "new\nline",
            "del\u{7f}",
            "c1\u{85}",
            "a:b",
            "model.bin:hidden",
            "dot.",
            "space ",
            ".",
            "..",
        ] {
            assert!(check_component(bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            ".gitignore",
            ".gitattributes",
            ".github",
            ".git-foo",
            ".gitx",
            "git",
            "GIT~2",
            "git~10",
            ".sharding",
            "shard",
            "CONSOLE",
            "COM0",
            "COM10",
            "LPT",
            "nullable.txt",
            "auxiliary",
            "model.safetensors",
            "résumé.bin",
            "日本語.pth",
            "a..b",
            ".hidden",
            "with space",
            "...a",
            "[x]*.bin",
            "what?",
        ] {
            assert_eq!(check_component(ok), None, "{ok:?} refused");
        }
    }

    #[test]
    fn escape_makes_names_inert() {
        assert_eq!(escape("plain/name.bin"), "plain/name.bin");
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("x\u{200c}y"), "x\\u{200c}y");
        assert_eq!(escape("rtl\u{202e}txt.exe"), "rtl\\u{202e}txt.exe");
        assert_eq!(escape("a\\u{1b}"), "a\\\\u{1b}");
        assert_eq!(escape("l1\nl2"), "l1\\nl2");
        assert!(!escape("\u{9b}31m").chars().any(char::is_control));
        assert_eq!(neutralize("\"a\\u{1b}\" \u{1b}"), "\"a\\u{1b}\" \\u{1b}");
    }
}
