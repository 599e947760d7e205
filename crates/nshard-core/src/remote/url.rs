//! Remote URLs: what `--remote` and `nshard remote add` accept, validated before anything uses them.

use std::fmt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use url::{Host, Url};

use crate::error::RemoteError;
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

/// `s` as it may be shown: without the user and password of a URL (`http://alice:pw@host` →
/// `http://***@host`), which must never be printed.
pub(crate) fn redacted(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => s.to_string(),
    }
}

impl RemoteUrl {
    /// Parses `s`: `/abs/dir`, `./rel/dir` or `rel/dir` (relative to `base`), `file:///abs/dir`,
    /// `http://…`, `https://…` or `s3://bucket/prefix`.
    ///
    /// URLs are parsed by [`url::Url`]. It normalizes some things silently (drops `..` segments,
    /// an empty port, an empty user, turns `\` into `/`); a remote URL that does not mean what it
    /// says is refused instead, so those few are checked on the text as given.
    pub fn parse(s: &str, base: &Path) -> Result<RemoteUrl> {
        let bad = |reason: &str| {
            Error::Remote(RemoteError::InvalidUrl {
                url: redacted(s).chars().take(200).collect(),
                reason: reason.to_string(),
            })
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
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "file" | "http" | "https" | "s3") {
            return Err(bad(
                "unknown scheme (use a directory path, file://, http://, https:// or s3://)",
            ));
        }
        let url = Url::parse(s).map_err(|e| bad(parse_error(e)))?;
        // The authority and path as written, before `Url` normalized them.
        let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        let query = url.query().is_some() || url.fragment().is_some();
        match scheme.as_str() {
            "file" => {
                if query {
                    return Err(bad(QUERY));
                }
                if !escapes_ok(rest) {
                    return Err(bad("bad %-escape"));
                }
                // file:///path or file://localhost/path; no other hosts.
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("a file URL names an absolute path: file:///path/to/dir"))?;
                if path.to_str().is_none() {
                    return Err(bad("bad %-escape"));
                }
                Ok(RemoteUrl::Dir(absolute(&path, base)))
            }
            "s3" => {
                let bucket = url.host_str().unwrap_or_default();
                let bucket_ok = authority == bucket
                    && (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if !bucket_ok {
                    return Err(bad(
                        "S3 bucket names are 3 to 63 lowercase letters, digits, '-' or '.'",
                    ));
                }
                let encoded = url.path();
                let encoded = encoded.strip_prefix('/').unwrap_or(encoded);
                let prefix = percent_decode_str(encoded.trim_end_matches('/'))
                    .decode_utf8()
                    .map_err(|_| bad("bad key prefix"))?;
                if query
                    || has_dot_segment(path, true)
                    || prefix.split('/').any(|c| c == ".." || c == ".")
                    || prefix.contains("//")
                    || prefix.contains(['?', '#'])
                {
                    return Err(bad("bad key prefix"));
                }
                Ok(RemoteUrl::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.into_owned(),
                })
            }
            _ => check_http(&url, authority, path).map_err(bad),
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

const QUERY: &str = "query strings and fragments are not allowed in a remote URL";

/// An `http(s)` URL `Url` accepted, checked further: `authority` and `path` are the parts as
/// written.
fn check_http(
    url: &Url,
    authority: &str,
    path: &str,
) -> std::result::Result<RemoteUrl, &'static str> {
    if url.query().is_some() || url.fragment().is_some() {
        return Err(QUERY);
    }
    if authority.contains('@') || !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL (they would end up in logs and in config.toml); give the token separately");
    }
    match url.host() {
        Some(Host::Domain(host))
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') =>
        {
            return Err("bad host name")
        }
        Some(_) => {}
        None => return Err("no host"),
    }
    if authority.ends_with(':') {
        return Err("bad port");
    }
    if url.port() == Some(0) {
        return Err("port out of range");
    }
    if path.contains([' ', '\\']) || has_dot_segment(path, false) {
        return Err("bad path");
    }
    Ok(RemoteUrl::Http(
        url.as_str().trim_end_matches('/').to_string(),
    ))
}

/// A reason for what `Url` refused.
fn parse_error(e: url::ParseError) -> &'static str {
    use url::ParseError as P;
    match e {
        P::EmptyHost => "no host",
        P::InvalidPort => "bad port",
        P::InvalidIpv6Address => "bad IPv6 address",
        P::InvalidIpv4Address => "bad IPv4 address",
        P::IdnaError | P::InvalidDomainCharacter => "bad host name",
        _ => "not a URL",
    }
}

/// Whether a path as written has a `..` segment (or, with `single`, a `.` one), `%2e` counting
/// as a dot as it does for `Url`.
fn has_dot_segment(path: &str, single: bool) -> bool {
    path.split(['/', '\\']).any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == ".." || (single && seg == ".")
    })
}

/// Whether every `%` in `s` starts a two-digit hex escape (`Url` keeps a bad one as it is).
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Joins a relative path onto `base` and removes `.` and `..` lexically.
fn absolute(p: &Path, base: &Path) -> PathBuf {
    // `join` keeps `p` when it is absolute.
    crate::fsutil::normalize_lexically(&base.join(p))
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

    /// Issue 26, case 10: a URL's user and password never reach a message.
    #[test]
    fn credentials_in_a_refused_url_are_never_shown() {
        for url in [
            "http://alice:s3cr3t@host:8000/x",
            "https://alice:s3cr3t@host",
            "s3://alice:s3cr3t@bucket/x",
            "http://alice:s3cr3t@host?q#f@g",
        ] {
            let e = p(url).expect_err("refused").to_string();
            assert!(!e.contains("s3cr3t") && !e.contains("alice"), "{e}");
            assert!(e.contains("***@"), "{e}");
        }
        assert_eq!(redacted("/srv/a@b"), "/srv/a@b");
        assert_eq!(redacted("http://host/a@b"), "http://host/a@b");
    }

    /// What `Url` would normalize silently is refused, not rewritten.
    #[test]
    fn no_silent_rewrites() {
        for bad in [
            "http://@host",
            "http://a!b",
            "http://h\\x",
            "http://h/a\\b",
            "http://h/a b",
            "http://h/%2e%2e/x",
            "http://host:0",
            "http://host/a?",
            "s3://bkt:9000/x",
            "s3://u@bkt/x",
            "s3://bkt/./x",
            "s3://bkt/a/%2E%2E/x",
            "s3://bkt/a?b",
            "file:///srv/a?b",
            "file:///srv/%ff",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            p("s3://bkt/my%20models/").expect("escaped prefix"),
            RemoteUrl::S3 {
                bucket: "bkt".into(),
                prefix: "my models".into()
            }
        );
        assert_eq!(
            p("http://Host.example:8000/a/./b").expect("dot"),
            RemoteUrl::Http("http://host.example:8000/a/b".into())
        );
    }

    #[test]
    fn names_versus_locations() {
        assert!(!RemoteUrl::looks_like_location("origin"));
        for loc in ["./store", "/srv", "a/b", "http://h", "~/x", ".."] {
            assert!(RemoteUrl::looks_like_location(loc), "{loc}");
        }
    }
}
