//! Bearer tokens with a `read` or `write` scope, and the access policy built from them.
//!
//! Tokens come from a token file and/or an environment variable (the binary reads both and hands the
//! text to [`Tokens::parse`]). Only the SHA-256 digest of each token is kept: a presented token is
//! hashed and compared against every stored digest in constant time (no early exit, equal lengths),
//! so response timing says nothing about how much of a guess was right. Token text never appears in
//! an error, a `Debug` output or a log line.

use std::fmt;

use nshard_core::ObjectId;
use subtle::ConstantTimeEq;

/// What a token may do. `Write` includes `Read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET`/`HEAD` objects, `missing` queries, metrics.
    Read,
    /// Everything `Read` may do, and `PUT` objects.
    Write,
}

impl Scope {
    /// The scope's name in token files and in the health answer.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
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
            "Tokens {{ read: {}, write: {} }}",
            self.count(Scope::Read),
            self.count(Scope::Write)
        )
    }
}

impl Tokens {
    /// No tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses token text: entries `SCOPE:TOKEN` separated by newlines or commas, where `SCOPE` is
    /// `read` or `write` and `TOKEN` is at least [`MIN_TOKEN_LEN`] characters of
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
            let scope =
                Scope::parse(scope.trim()).ok_or_else(|| err("scope must be `read` or `write`"))?;
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
        let digest = ObjectId::of(presented.as_bytes());
        let mut found: Option<Scope> = None;
        for (d, scope) in &self.entries {
            let hit: bool = d.ct_eq(digest.as_bytes()).into();
            if hit {
                found = found.max(Some(*scope));
            }
        }
        found
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
    Forbidden,
}

impl AccessPolicy {
    /// Checks the `Authorization` header value (if any) against the scope `need`.
    pub fn check(&self, authorization: Option<&[u8]>, need: Scope) -> Result<(), Denied> {
        let Some(value) = authorization else {
            return match self.anonymous {
                Some(s) if s >= need => Ok(()),
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
        match self.tokens.scope_of(token) {
            Some(s) if s >= need => Ok(()),
            Some(_) => Err(Denied::Forbidden),
            None => Err(Denied::Unauthenticated("invalid token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "write-token-0123456789";
    const R: &str = "read-token-0123456789";

    fn tokens() -> Tokens {
        Tokens::parse(
            &format!("# comment\nwrite:{W}\n\nread:{R}, read:another-token-xyz0123\n"),
            "t",
        )
        .expect("valid")
    }

    #[test]
    fn parses_and_scopes() {
        let t = tokens();
        assert_eq!(t.count(Scope::Write), 1);
        assert_eq!(t.count(Scope::Read), 2);
        assert_eq!(t.scope_of(W), Some(Scope::Write));
        assert_eq!(t.scope_of(R), Some(Scope::Read));
        assert_eq!(t.scope_of("write-token-012345678"), None);
        assert!(!format!("{t:?}").contains(W));
    }

    #[test]
    fn refuses_bad_entries_without_echoing_them() {
        for (text, why) in [
            ("admin:abcdefghijklmnopqrstuvwxyz", "scope"),
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
            Err(Denied::Forbidden)
        );
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
