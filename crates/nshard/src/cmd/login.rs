//! `nshard login URL` and `nshard logout URL`: tokens bound to a server's origin, kept in the
//! user's own config file (mode 0600).

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use nshard_core::config::{Origin, UserConfig};
use nshard_core::RemoteUrl;
use nshard_core::Repo;

use crate::out;
use crate::output::Ctx;
use nshard_core::RemoteError;

/// Store a token for a NeuroShard server in your user config file.
///
/// The token is bound to the server's origin (scheme, host and port) and is sent only there,
/// including to a remote named in a repository's committed config. It is read from a prompt that
/// does not echo (on a terminal) or from standard input with `--token-stdin`; never from the
/// command line, where it would land in the shell history. The user file
/// (`~/.config/nshard/config.toml`, or under `$XDG_CONFIG_HOME`) is written with mode 0600.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The server: `http(s)://host[:port]`, or the name of a configured remote.
    pub url: String,
    /// Read the token from standard input (e.g. `echo "$TOKEN" | nshard login URL --token-stdin`).
    #[arg(long)]
    pub token_stdin: bool,
    /// Store the token without asking the server whether it accepts it (a server that cannot be
    /// reached now). By default a token the server refuses, or a server that does not answer,
    /// stores nothing and keeps the token stored before.
    #[arg(long)]
    pub no_check: bool,
}

/// Remove the token stored for a server.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The server: `http(s)://host[:port]`, or the name of a configured remote.
    pub url: String,
}

/// The origin of a URL, or of the configured remote named `arg`.
fn origin(ctx: &Ctx, arg: &str) -> Result<Origin> {
    if RemoteUrl::looks_like_location(arg) {
        return Ok(Origin::parse(arg)?);
    }
    let repo = Repo::discover(&ctx.cwd)
        .and_then(|r| r.with_user_config(ctx.user_config.clone()))
        .with_context(|| {
            format!(
                "{arg:?} is not a URL, and there is no repository to look up a remote of that name"
            )
        })?;
    let r = repo.resolve_remote(Some(arg), &ctx.cwd)?;
    Origin::of(&r.url).with_context(|| {
        format!(
            "remote {arg} is {}: tokens are for http:// and https:// remotes",
            r.url
        )
    })
}

fn user_config(ctx: &Ctx) -> Result<UserConfig> {
    let path = ctx
        .user_config
        .as_deref()
        .ok_or(nshard_core::Error::Remote(RemoteError::NoUserConfig))?;
    Ok(UserConfig::load(path)?)
}

fn read_token(origin: &Origin, from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut buf)
            .context("reading the token from standard input")?;
        return Ok(buf);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the token on; pipe it in with `--token-stdin`");
    }
    rpassword::prompt_password(format!("Token for {origin}: "))
        .context("reading the token from the terminal")
}

pub fn run_login(ctx: &Ctx, a: LoginArgs) -> Result<ExitCode> {
    let origin = origin(ctx, &a.url)?;
    let mut user = user_config(ctx)?;
    let token = nshard_core::config::validate_token(&read_token(&origin, a.token_stdin)?)?;
    if !a.no_check {
        check_token(&origin, &where_(ctx, &a.url)?, &token)?;
    }
    let replaced = user.login(&origin, &token)?;
    if origin.is_cleartext() {
        eprintln!(
            "warning: {origin} is plain http: the token crosses the network unencrypted; prefer https:// (e.g. nshard serve behind a TLS reverse proxy)"
        );
    }
    let verb = if replaced { "replaced" } else { "stored" };
    out!("{verb} the token for {origin} in {}", user.path().display());
    Ok(ExitCode::SUCCESS)
}

/// The server's URL as given (with its path: a server mounted under one), or the configured
/// remote's of that name.
fn where_(ctx: &Ctx, arg: &str) -> Result<RemoteUrl> {
    if RemoteUrl::looks_like_location(arg) {
        return Ok(RemoteUrl::parse(arg, &ctx.cwd)?);
    }
    let repo =
        Repo::discover(&ctx.cwd).and_then(|r| r.with_user_config(ctx.user_config.clone()))?;
    Ok(repo.resolve_remote(Some(arg), &ctx.cwd)?.url)
}

/// Asks the server at `url` (of `origin`) one question that needs a token (which objects of one
/// it lacks): an error when it refuses `token` or does not answer within 10 s.
fn check_token(origin: &Origin, url: &RemoteUrl, token: &str) -> Result<()> {
    let opts = nshard_remote::OpenOptions {
        token: Some(token.to_string()),
        s3: super::awsenv::s3_options(),
    };
    let asked = super::remote::runtime()?.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let store = nshard_remote::open(url, &opts).await?;
            store
                .missing(&[nshard_core::ObjectId::of(b"nshard login")])
                .await?;
            Ok::<_, nshard_core::Error>(())
        })
        .await
    });
    let refused = |e: &nshard_core::Error| {
        matches!(
            e,
            nshard_core::Error::Remote(RemoteError::Failed {
                kind: nshard_core::RemoteFailure::Unauthorized
                    | nshard_core::RemoteFailure::Forbidden,
                ..
            })
        )
    };
    match asked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if refused(&e) => {
            // The remote's own hint is about a stored token; this one came from the user.
            let text = e.to_string();
            let why = text.split("\nhint:").next().unwrap_or(&text);
            bail!(
                "{origin} did not accept the token, so nothing was stored (a token stored before \
                 stays; `--no-check` stores it without asking): {why}"
            )
        }
        Ok(Err(e)) => bail!(
            "could not ask {origin} whether it accepts the token, so nothing was stored (a token \
             stored before stays; `--no-check` stores it without asking): {e}"
        ),
        Err(_) => bail!(
            "{origin} did not answer within 10 s: nothing was stored; `--no-check` stores the token without asking"
        ),
    }
}

pub fn run_logout(ctx: &Ctx, a: LogoutArgs) -> Result<ExitCode> {
    let origin = origin(ctx, &a.url)?;
    let mut user = user_config(ctx)?;
    if user.logout(&origin)? {
        out!("removed the token for {origin}");
    } else {
        out!("no token was stored for {origin}");
    }
    Ok(ExitCode::SUCCESS)
}
