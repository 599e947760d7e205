//! Bearer tokens with a `read`, `write` or `admin` scope, and the access policy built from them.
//!
//! Tokens come from a token file and/or an environment variable (the binary reads both and hands the
//! text to [`Tokens::parse`]). Only the SHA-256 digest of each token is kept: a presented token is
//! hashed and compared against every stored digest in constant time (no early exit, equal lengths),
//! so response timing says nothing about how much of a guess was right. Token text never appears in
//! an error, a `Debug` output or a log line.
//!
//! A request that passes gets an [`Access`]: its scope, and the writer name its records are stored
//! under (`admin` for an admin token, `w` and 16 hex digits of the SHA-256 of a write token's
//! digest, `anonymous` without a token), so that gc can tell writers apart without the server
//! keeping or revealing anything about the tokens.

use std::fmt;

use nshard_core::backend::{ADMIN_WRITER, ANONYMOUS_WRITER};
use nshard_core::ObjectId;
use subtle::ConstantTimeEq;

/// What a token may do. `Admin` includes `Write`, which includes `Read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET`/`HEAD` objects, `missing` queries, reading records, metrics.
    Read,
    /// Everything `Read` may do, `PUT` objects and records (records outside gc's own spaces).
    Write,
    /// Everything `Write` may do, listing and deleting objects, deleting records, and writing
    /// records into gc's own spaces (what `nshard remote gc` needs).
    Admin,
}

impl Scope {
    /// The scope's name in token files and in the health answer.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// A token file or variable that cannot be used. Never contains token text.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}, entry {entry}: {reason}")]
pub struct TokenError {
    /// Where the tokens came from (a file path or a variable name).
    pub source_name: String,
    /// 1-based entry number.
    pub entry: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A set of tokens (kept as digests).
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Scope)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tokens {{ read: {}, write: {}, admin: {} }}",
            self.count(Scope::Read),
            self.count(Scope::Write),
            self.count(Scope::Admin)
        )
    }
}

impl Tokens {
    /// No tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses token text: entries `SCOPE:TOKEN` separated by newlines or commas, where `SCOPE` is
    /// `read`, `write` or `admin` and `TOKEN` is at least [`MIN_TOKEN_LEN`] characters of
    /// `A-Z a-z 0-9 - . _ ~ + /` (the RFC 6750 token alphabet, `=` padding allowed at the end).
    /// Blank entries and lines starting with `#` are ignored. `source_name` names the file or
    /// variable in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Tokens, TokenError> {
        let mut out = Tokens::new();
        let entries = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let err = |reason| TokenError {
                source_name: source_name.to_string(),
                entry: i + 1,
                reason,
            };
            let (scope, token) = entry
                .split_once(':')
                .ok_or_else(|| err("expected SCOPE:TOKEN (e.g. write:<token>)"))?;
            let scope = Scope::parse(scope.trim())
                .ok_or_else(|| err("scope must be `read`, `write` or `admin`"))?;
            let token = token.trim();
            if token.len() < MIN_TOKEN_LEN {
                return Err(err("token is shorter than 16 characters"));
            }
            if !is_token_syntax(token) {
                return Err(err(
                    "token may only contain A-Z a-z 0-9 - . _ ~ + / and trailing =",
                ));
            }
            out.entries
                .push((*ObjectId::of(token.as_bytes()).as_bytes(), scope));
        }
        Ok(out)
    }

    /// Adds the tokens of `other`.
    pub fn extend(&mut self, other: Tokens) {
        self.entries.extend(other.entries);
    }

    /// Whether there are no tokens at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many tokens have exactly this scope.
    pub fn count(&self, scope: Scope) -> usize {
        self.entries.iter().filter(|(_, s)| *s == scope).count()
    }

    /// The scope of `presented`, if it is one of the tokens. Compares against every token in
    /// constant time.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        self.access_of(presented).map(|a| a.scope)
    }

    /// What `presented` may do and whom it writes as, if it is one of the tokens (the widest
    /// scope when the same token is listed more than once). Compares against every token in
    /// constant time.
    pub fn access_of(&self, presented: &str) -> Option<Access> {
        let digest = ObjectId::of(presented.as_bytes());
        let mut found: Option<Scope> = None;
        for (d, scope) in &self.entries {
            let hit: bool = d.ct_eq(digest.as_bytes()).into();
            if hit {
                found = found.max(Some(*scope));
            }
        }
        found.map(|scope| Access::token(scope, digest.as_bytes()))
    }
}

/// A request the policy let through: what it may do, and the writer name of the records it stores
/// (which reveals nothing about the token: it may be logged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The caller's scope (a token's, or what anonymous requests may do).
    pub scope: Scope,
    writer: String,
}

impl Access {
    /// A token with `scope` whose SHA-256 digest is `digest`.
    fn token(scope: Scope, digest: &[u8; 32]) -> Access {
        let writer = if scope == Scope::Admin {
            ADMIN_WRITER.to_string()
        } else {
            // A digest of the digest: names the token in record names (so gc can tell writers
            // apart) without revealing the digest the server compares tokens against.
            format!("w{}", &ObjectId::of(digest).to_hex()[..16])
        };
        Access { scope, writer }
    }

    /// A request without a token, allowed `scope`.
    fn anonymous(scope: Scope) -> Access {
        Access {
            scope,
            writer: ANONYMOUS_WRITER.to_string(),
        }
    }

    /// The writer name of records this caller stores: `admin`, `w` and 16 hex digits, or
    /// `anonymous` (a valid [`RecordName`](nshard_core::backend::RecordName) writer).
    pub fn writer(&self) -> &str {
        &self.writer
    }
}

fn is_token_syntax(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Who may do what: the tokens, and what a request without a token may do.
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    /// Known tokens.
    pub tokens: Tokens,
    /// The scope granted to requests without an `Authorization` header (`None`: they get 401).
    pub anonymous: Option<Scope>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No valid credentials (401).
    Unauthenticated(&'static str),
    /// Valid token without the needed scope (403).
    Forbidden {
        /// The token's scope.
        have: Scope,
        /// The scope the request needs.
        need: Scope,
    },
}

impl AccessPolicy {
    /// Checks the `Authorization` header value (if any) against the scope `need`.
    pub fn check(&self, authorization: Option<&[u8]>, need: Scope) -> Result<(), Denied> {
        self.access(authorization, need).map(|_| ())
    }

    /// Checks the `Authorization` header value (if any) against the scope `need`, and says who
    /// the caller is.
    pub fn access(&self, authorization: Option<&[u8]>, need: Scope) -> Result<Access, Denied> {
        let Some(value) = authorization else {
            return match self.anonymous {
                Some(s) if s >= need => Ok(Access::anonymous(s)),
                _ if need == Scope::Admin => Err(Denied::Unauthenticated(
                    "this request needs a bearer token with the admin scope (Authorization: Bearer <token>; the server's token file: admin:<token>)",
                )),
                _ => Err(Denied::Unauthenticated(
                    "this request needs a bearer token (Authorization: Bearer <token>)",
                )),
            };
        };
        let value = std::str::from_utf8(value)
            .map_err(|_| Denied::Unauthenticated("malformed Authorization header"))?;
        let token = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => {
                return Err(Denied::Unauthenticated(
                    "Authorization must use the Bearer scheme",
                ))
            }
        };
        match self.tokens.access_of(token) {
            Some(a) if a.scope >= need => Ok(a),
            Some(a) => Err(Denied::Forbidden {
                have: a.scope,
                need,
            }),
            None => Err(Denied::Unauthenticated("invalid token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "write-token-0123456789";
    const R: &str = "read-token-0123456789";
    const A: &str = "admin-token-0123456789";

    fn tokens() -> Tokens {
        Tokens::parse(
            &format!("# comment\nwrite:{W}\n\nread:{R}, read:another-token-xyz0123\nadmin:{A}\n"),
            "t",
        )
        .expect("valid")
    }

    #[test]
    fn parses_and_scopes() {
        let t = tokens();
        assert_eq!(t.count(Scope::Write), 1);
        assert_eq!(t.count(Scope::Read), 2);
        assert_eq!(t.count(Scope::Admin), 1);
        assert_eq!(t.scope_of(W), Some(Scope::Write));
        assert_eq!(t.scope_of(R), Some(Scope::Read));
        assert_eq!(t.scope_of(A), Some(Scope::Admin));
        assert_eq!(t.scope_of("write-token-012345678"), None);
        let shown = format!("{t:?}");
        assert_eq!(shown, "Tokens { read: 2, write: 1, admin: 1 }");
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
    }

    #[test]
    fn writers_name_tokens_without_revealing_them() {
        let t = tokens();
        let w = t.access_of(W).expect("write token");
        let digest = ObjectId::of(W.as_bytes());
        let expected = format!("w{}", &ObjectId::of(digest.as_bytes()).to_hex()[..16]);
        assert_eq!(w.writer(), expected);
        assert!(!digest.to_hex().contains(&w.writer()[1..]));
        assert_ne!(t.access_of(R).expect("read").writer(), w.writer());
        assert_eq!(t.access_of(A).expect("admin").writer(), ADMIN_WRITER);
        let rn = nshard_core::backend::RecordName::new("_gc", "0000000000000000");
        assert!(rn.with_writer(w.writer()).is_some(), "a valid writer name");
        let p = AccessPolicy {
            tokens: t,
            anonymous: Some(Scope::Write),
        };
        let anon = p.access(None, Scope::Write).expect("anonymous write");
        assert_eq!(anon.writer(), ANONYMOUS_WRITER);
        assert_eq!(anon.scope, Scope::Write);
    }

    #[test]
    fn refuses_bad_entries_without_echoing_them() {
        for (text, why) in [
            ("owner:abcdefghijklmnopqrstuvwxyz", "scope"),
            ("write:short", "shorter"),
            ("writeabcdefghijklmnopqrstuvwxyz", "SCOPE:TOKEN"),
            ("write:abcdefghijklmnop qrstuvwxyz", "only contain"),
            ("write:abcdefghijklmnopq\"rstuvwxyz", "only contain"),
        ] {
            let e = Tokens::parse(text, "tokens.txt").expect_err(text);
            let msg = e.to_string();
            assert!(msg.contains(why), "{msg}");
            assert!(msg.contains("tokens.txt, entry 1"), "{msg}");
            assert!(!msg.contains("abcdefghijklmnop"), "token leaked: {msg}");
        }
    }

    #[test]
    fn policy() {
        let p = AccessPolicy {
            tokens: tokens(),
            anonymous: Some(Scope::Read),
        };
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        assert_eq!(p.check(None, Scope::Read), Ok(()));
        assert!(matches!(
            p.check(None, Scope::Write),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(p.check(Some(&bearer(W)), Scope::Write), Ok(()));
        assert_eq!(p.check(Some(&bearer(R)), Scope::Read), Ok(()));
        assert_eq!(
            p.check(Some(&bearer(R)), Scope::Write),
            Err(Denied::Forbidden {
                have: Scope::Read,
                need: Scope::Write
            })
        );
        assert_eq!(
            p.check(Some(&bearer(W)), Scope::Admin),
            Err(Denied::Forbidden {
                have: Scope::Write,
                need: Scope::Admin
            })
        );
        assert_eq!(p.check(Some(&bearer(A)), Scope::Admin), Ok(()));
        assert_eq!(p.check(Some(&bearer(A)), Scope::Read), Ok(()));
        assert!(matches!(
            p.check(None, Scope::Admin),
            Err(Denied::Unauthenticated(_))
        ));
        // A wrong token is refused even where anonymous access would be allowed.
        assert!(matches!(
            p.check(Some(&bearer("nope-nope-nope-nope")), Scope::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            p.check(Some(format!("Basic {W}").as_bytes()), Scope::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(
            p.check(Some(format!("bearer {W}").as_bytes()), Scope::Write),
            Ok(())
        );
    }
}
