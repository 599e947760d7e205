//! Remote URLs: what `--remote` and `nshard remote add` accept, validated before anything uses them.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Longest remote URL accepted, in bytes.
const MAX_URL_LEN: usize = 4096;

/// A parsed, validated remote location.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteUrl {
    /// A directory store at this absolute, lexically normalized path.
    Dir(PathBuf),
    /// A NeuroShard HTTP server: `http(s)://host[:port][/path]`, lowercase scheme, no trailing
    /// slash, no credentials, query or fragment.
    Http(String),
    /// An S3 bucket and key prefix (no leading or trailing `/`).
    S3 {
        /// The bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
}

impl RemoteUrl {
    /// Parses `s`: `/abs/dir`, `./rel/dir` or `rel/dir` (relative to `base`), `file:///abs/dir`,
    /// `http://…`, `https://…` or `s3://bucket/prefix`.
    pub fn parse(s: &str, base: &Path) -> Result<RemoteUrl> {
        let bad = |reason: &str| Error::InvalidRemoteUrl {
            url: s.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_URL_LEN {
            return Err(bad("too long"));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(bad("contains control characters"));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(RemoteUrl::Dir(absolute(Path::new(s), base)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // file:///path or file://localhost/path; no other hosts.
                let path = rest
                    .strip_prefix("localhost")
                    .filter(|p| p.starts_with('/'))
                    .unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(bad(
                        "a file URL names an absolute path: file:///path/to/dir",
                    ));
                }
                let decoded = percent_decode(path).ok_or_else(|| bad("bad %-escape"))?;
                Ok(RemoteUrl::Dir(absolute(Path::new(&decoded), base)))
            }
            sch @ ("http" | "https") => parse_http(sch, rest).map_err(bad),
            "s3" => {
                let rest = rest.trim_end_matches('/');
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let bucket_ok = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if !bucket_ok {
                    return Err(bad(
                        "S3 bucket names are 3 to 63 lowercase letters, digits, '-' or '.'",
                    ));
                }
                if prefix.split('/').any(|c| c == ".." || c == ".")
                    || prefix.contains("//")
                    || prefix.contains('?')
                    || prefix.contains('#')
                {
                    return Err(bad("bad key prefix"));
                }
                Ok(RemoteUrl::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.to_string(),
                })
            }
            _ => Err(bad(
                "unknown scheme (use a directory path, file://, http://, https:// or s3://)",
            )),
        }
    }

    /// Whether `s` is written like a URL or a path rather than a bare remote name: it has a scheme,
    /// a `/`, or starts with `.` or `~`.
    pub fn looks_like_location(s: &str) -> bool {
        s.contains("://")
            || s.contains('/')
            || s.contains(std::path::MAIN_SEPARATOR)
            || s.starts_with('.')
            || s.starts_with('~')
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::Dir(p) => write!(f, "{}", p.display()),
            RemoteUrl::Http(u) => f.write_str(u),
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RemoteUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

fn parse_http(scheme: &str, rest: &str) -> std::result::Result<RemoteUrl, &'static str> {
    if rest.contains('?') || rest.contains('#') {
        return Err("query strings and fragments are not allowed in a remote URL");
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("credentials do not belong in the URL (they would end up in logs and in config.toml); give the token separately");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err("bad IPv6 address");
        }
        let port = match after {
            "" => None,
            a => Some(
                a.strip_prefix(':')
                    .ok_or("unexpected characters after the IPv6 address")?,
            ),
        };
        (h, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b':')
    {
        return Err("bad host name");
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err("bad port");
        }
        if !(1..=65535).contains(&p.parse::<u32>().map_err(|_| "bad port")?) {
            return Err("port out of range");
        }
    }
    if path.bytes().any(|b| b == b' ' || b == b'\\') || path.split('/').any(|c| c == "..") {
        return Err("bad path");
    }
    Ok(RemoteUrl::Http(format!("{scheme}://{authority}{path}")))
}

/// Joins a relative path onto `base` and removes `.` and `..` lexically.
fn absolute(p: &Path, base: &Path) -> PathBuf {
    // `join` keeps `p` when it is absolute.
    crate::fsutil::normalize_lexically(&base.join(p))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<RemoteUrl> {
        RemoteUrl::parse(s, Path::new("/home/u/repo"))
    }

    #[test]
    fn directories() {
        assert_eq!(p("/srv/m").expect("abs"), RemoteUrl::Dir("/srv/m".into()));
        assert_eq!(
            p("../store/./x").expect("rel"),
            RemoteUrl::Dir("/home/u/store/x".into())
        );
        assert_eq!(
            p("file:///srv/my%20models/").expect("file"),
            RemoteUrl::Dir("/srv/my models".into())
        );
        assert_eq!(
            p("file://localhost/srv/m").expect("file localhost"),
            RemoteUrl::Dir("/srv/m".into())
        );
        assert!(p("file://otherhost/srv").is_err());
        assert!(p("file://relative").is_err());
        assert!(p("file:///bad%zz").is_err());
    }

    #[test]
    fn http_and_s3() {
        assert_eq!(
            p("http://localhost:8000/").expect("http"),
            RemoteUrl::Http("http://localhost:8000".into())
        );
        assert_eq!(
            p("HTTPS://models.example.com/nshard").expect("https"),
            RemoteUrl::Http("https://models.example.com/nshard".into())
        );
        assert_eq!(
            p("http://[::1]:8000").expect("v6"),
            RemoteUrl::Http("http://[::1]:8000".into())
        );
        for bad in [
            "http://",
            "http://user:pw@host",
            "http://host:99999",
            "http://host:",
            "http://host:8x",
            "http://ho st",
            "http://host/a?b=c",
            "http://host/../x",
            "http://[::1",
            "http://[::1]x",
            "ftp://host",
            "",
            "a\nb",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            p("s3://my-bucket/team/models/").expect("s3"),
            RemoteUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/models".into()
            }
        );
        assert_eq!(
            p("s3://my-bucket").expect("s3").to_string(),
            "s3://my-bucket"
        );
        for bad in ["s3://", "s3://UPPER", "s3://b/../x", "s3://bk/a//b"] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_versus_locations() {
        assert!(!RemoteUrl::looks_like_location("origin"));
        for loc in ["./store", "/srv", "a/b", "http://h", "~/x", ".."] {
            assert!(RemoteUrl::looks_like_location(loc), "{loc}");
        }
    }
}
