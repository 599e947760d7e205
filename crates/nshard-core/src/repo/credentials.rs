//! Tokens and where they may go. A token is bound to an origin (scheme, host, port): `nshard
//! login URL` stores one in the user's own config file (mode 0600), and [`choose_token`] decides
//! which token, if any, a remote receives.
//!
//! The rule protects against a committed config: a remote whose URL came from
//! `.shard/config.toml` (anyone who can push a commit can change it) receives only a token the user
//! stored for that exact origin. The general `NSHARD_TOKEN` and the per-name `NSHARD_TOKEN_<NAME>`
//! go only to a URL the user typed on the command line or wrote in their own config files.

use std::fmt;
use std::path::{Path, PathBuf};

use super::config::{ConfigLevel, PersonalConfig, StoredCredential};
use super::remotes::{RemoteSource, ResolvedRemote};
use super::Repo;
use crate::error::RemoteError;
use crate::error::{Error, Result};
use crate::remote::RemoteUrl;

/// Longest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 4096;

/// The origin of an HTTP remote: lowercase scheme and host, and the port (explicit or the
/// scheme's default). Displayed as `scheme://host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `url`; `None` for directory and S3 remotes, which take no bearer token.
    pub fn of(url: &RemoteUrl) -> Option<Origin> {
        match url {
            RemoteUrl::Http(u) => Origin::parse(u).ok(),
            _ => None,
        }
    }

    /// Parses the origin of an `http(s)://` URL (any path is ignored).
    pub fn parse(s: &str) -> Result<Origin> {
        let bad = |reason: &str| {
            Error::Remote(RemoteError::InvalidUrl {
                url: crate::remote::redacted(s).chars().take(200).collect(),
                reason: reason.to_string(),
            })
        };
        let url = match RemoteUrl::parse(s, Path::new("/"))? {
            RemoteUrl::Http(u) => u,
            _ => return Err(bad("tokens are for http:// and https:// remotes")),
        };
        // `RemoteUrl` checked it with `Url` already: scheme and host come lowercased, an IPv6
        // host in brackets.
        let url = url::Url::parse(&url).map_err(|e| bad(&e.to_string()))?;
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(bad("no host"));
        };
        Ok(Origin {
            scheme: url.scheme().to_string(),
            host: host.to_string(),
            port,
        })
    }
}

impl Origin {
    /// Whether a token sent there crosses the network in clear text: plain `http://` to a host
    /// other than the loopback names `localhost`, `127.0.0.1` and `[::1]`.
    pub fn is_cleartext(&self) -> bool {
        self.scheme == "http" && !matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Checks a token typed or piped by the user: surrounding whitespace is dropped; what is left must
/// be 1 to 4096 visible ASCII characters.
pub fn validate_token(raw: &str) -> Result<String> {
    let t = raw.trim();
    let bad = |reason| Error::Remote(RemoteError::InvalidToken { reason });
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    if t.len() > MAX_TOKEN_LEN {
        return Err(bad("it is longer than 4096 characters"));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "it may only hold visible ASCII characters (no spaces or line breaks inside)",
        ));
    }
    Ok(t.to_string())
}

/// The user's own config file: its path and contents.
#[derive(Clone, Debug)]
pub struct UserConfig {
    path: PathBuf,
    config: PersonalConfig,
}

impl UserConfig {
    /// Reads the user's config at `path` (absent = empty).
    pub fn load(path: &Path) -> Result<UserConfig> {
        Ok(UserConfig {
            path: path.to_path_buf(),
            config: PersonalConfig::load(path, ConfigLevel::User)?,
        })
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its contents.
    pub fn config(&self) -> &PersonalConfig {
        &self.config
    }

    pub(super) fn replace(&mut self, config: PersonalConfig) -> Result<()> {
        config.save(&self.path, ConfigLevel::User)?;
        self.config = config;
        Ok(())
    }

    /// The token stored for exactly `origin`, if any.
    pub fn token_for(&self, origin: &Origin) -> Option<&str> {
        self.config
            .credentials
            .iter()
            .find(|c| Origin::parse(&c.origin).is_ok_and(|o| o == *origin))
            .map(|c| c.token.as_str())
    }

    /// The origins that have a stored token, as stored.
    pub fn logged_in(&self) -> Vec<&str> {
        self.config
            .credentials
            .iter()
            .map(|c| c.origin.as_str())
            .collect()
    }

    /// Stores `token` (checked with [`validate_token`]) for `origin`, replacing an earlier one.
    /// The file is re-read first and written atomically with mode 0600. Returns whether a token
    /// was replaced.
    pub fn login(&mut self, origin: &Origin, token: &str) -> Result<bool> {
        let token = validate_token(token)?;
        let mut cfg = PersonalConfig::load(&self.path, ConfigLevel::User)?;
        let before = cfg.credentials.len();
        cfg.credentials
            .retain(|c| !Origin::parse(&c.origin).is_ok_and(|o| o == *origin));
        let replaced = cfg.credentials.len() != before;
        cfg.credentials.push(StoredCredential {
            origin: origin.to_string(),
            token,
        });
        self.replace(cfg)?;
        Ok(replaced)
    }

    /// Removes the token stored for `origin`; returns whether there was one.
    pub fn logout(&mut self, origin: &Origin) -> Result<bool> {
        let mut cfg = PersonalConfig::load(&self.path, ConfigLevel::User)?;
        let before = cfg.credentials.len();
        cfg.credentials
            .retain(|c| !Origin::parse(&c.origin).is_ok_and(|o| o == *origin));
        if cfg.credentials.len() == before {
            return Ok(false);
        }
        self.replace(cfg)?;
        Ok(true)
    }
}

/// Tokens from the environment, read by the binary and handed down.
#[derive(Clone, Default)]
pub struct EnvTokens {
    /// `NSHARD_TOKEN_<NAME>` for the remote's name, when it has one.
    pub for_name: Option<String>,
    /// `NSHARD_TOKEN`.
    pub general: Option<String>,
}

impl fmt::Debug for EnvTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("EnvTokens")
            .field("for_name", &r(&self.for_name))
            .field("general", &r(&self.general))
            .finish()
    }
}

/// Which token `r` receives. A URL from the user (the command line, the user's file or
/// `config.local.toml`): `NSHARD_TOKEN_<NAME>`, else the token stored for its origin, else
/// `NSHARD_TOKEN`. A URL from the committed `.shard/config.toml`: only the token stored for its
/// exact origin, never one from the environment.
pub fn choose_token(r: &ResolvedRemote, stored: Option<&str>, env: &EnvTokens) -> Option<String> {
    let nonempty = |t: &Option<String>| {
        t.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let stored = stored.map(str::to_string);
    match r.source {
        RemoteSource::Config(ConfigLevel::Shared) => stored,
        RemoteSource::CommandLine | RemoteSource::Config(_) => nonempty(&env.for_name)
            .or(stored)
            .or_else(|| nonempty(&env.general)),
    }
}

impl Repo {
    /// The token `r` receives ([`choose_token`] with the token the user's file stores for its
    /// origin).
    pub fn token_for(&self, r: &ResolvedRemote, env: &EnvTokens) -> Option<String> {
        let stored = match (&self.user, Origin::of(&r.url)) {
            (Some(u), Some(o)) => u.token_for(&o),
            _ => None,
        };
        choose_token(r, stored, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = |s: &str| Origin::parse(s).expect(s).to_string();
        assert_eq!(o("http://LocalHost:8000/x/y"), "http://localhost:8000");
        assert_eq!(o("https://example.com"), "https://example.com:443");
        assert_eq!(o("http://example.com"), "http://example.com:80");
        assert_eq!(o("http://[::1]:9000"), "http://[::1]:9000");
        assert_eq!(
            Origin::parse("http://a:80").expect("a"),
            Origin::parse("http://A/").expect("A")
        );
        assert_ne!(
            Origin::parse("http://a:8000").expect("a"),
            Origin::parse("http://a:8001").expect("a")
        );
        assert_ne!(
            Origin::parse("http://a").expect("a"),
            Origin::parse("https://a").expect("a")
        );
        for bad in [
            "/srv/dir",
            "s3://bucket/p",
            "http://a:99999",
            "http://u:p@a",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_checked() {
        assert_eq!(validate_token("  abc-123\n").expect("ok"), "abc-123");
        for bad in ["", " \n", "a b", "a\u{7f}", "é"] {
            assert!(validate_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn which_token_goes_where() {
        let url = RemoteUrl::Http("http://127.0.0.1:9".into());
        let r = |source| ResolvedRemote {
            name: None,
            url: url.clone(),
            source,
        };
        let env = EnvTokens {
            for_name: Some("named".into()),
            general: Some("general".into()),
        };
        let general = EnvTokens {
            for_name: None,
            general: Some("general".into()),
        };
        let shared = r(RemoteSource::Config(ConfigLevel::Shared));
        assert_eq!(choose_token(&shared, None, &env), None);
        assert_eq!(
            choose_token(&shared, Some("stored"), &env).as_deref(),
            Some("stored")
        );
        for personal in [
            RemoteSource::CommandLine,
            RemoteSource::Config(ConfigLevel::User),
            RemoteSource::Config(ConfigLevel::Local),
        ] {
            let p = r(personal);
            assert_eq!(
                choose_token(&p, Some("stored"), &env).as_deref(),
                Some("named")
            );
            assert_eq!(
                choose_token(&p, Some("stored"), &general).as_deref(),
                Some("stored")
            );
            assert_eq!(choose_token(&p, None, &general).as_deref(), Some("general"));
            assert_eq!(choose_token(&p, None, &EnvTokens::default()), None);
        }
    }

    #[test]
    fn login_logout() {
        let d = tempfile::tempdir().expect("tmp");
        let path = d.path().join("nshard/config.toml");
        let mut u = UserConfig::load(&path).expect("absent is empty");
        let a = Origin::parse("http://127.0.0.1:8000").expect("a");
        let b = Origin::parse("http://127.0.0.1:8001").expect("b");
        assert!(!u.login(&a, "token-a\n").expect("login"));
        assert!(u.login(&a, "token-a2").expect("again"));
        u.login(&b, "token-b").expect("login b");
        let u = UserConfig::load(&path).expect("reload");
        assert_eq!(u.token_for(&a), Some("token-a2"));
        assert_eq!(u.token_for(&b), Some("token-b"));
        let mut u = u;
        assert!(u.login(&a, "bad token").is_err());
        assert!(u.logout(&a).expect("logout"));
        assert!(!u.logout(&a).expect("twice"));
        assert_eq!(UserConfig::load(&path).expect("reload").token_for(&a), None);
    }
}
