//! DNS-rebinding protection for a loopback server without tokens.
//!
//! Without tokens, a server on 127.0.0.1 lets anyone on this machine read and write. A web page
//! the user visits could reach it too: its own host name, re-pointed by DNS at 127.0.0.1, makes the
//! browser send requests there (DNS rebinding). Such requests carry the attacker's host name in
//! `Host`, so a server without tokens answers only requests whose `Host` names a loopback address
//! or `localhost`; anything else is 403 before any handler runs.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppError;

/// Whether `host` (a `Host` header value or URI authority, with an optional port) names this
/// machine: `localhost`, an IPv4 address in 127.0.0.0/8, or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || valid_port(tail) => {
                return v6
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|a| a.is_loopback());
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

fn valid_port(tail: &str) -> bool {
    tail.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Middleware: refuses a request whose `Host` (or absolute-form authority) is not a loopback name.
pub async fn loopback_hosts_only(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()));
    match host {
        Some(h) if is_loopback_host(&h) => next.run(req).await,
        other => AppError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "this server has no tokens, so it answers only requests addressed to localhost or a \
                 loopback address, not {:?} (a guard against DNS rebinding); configure tokens to \
                 serve other names",
                other.unwrap_or_default().chars().take(100).collect::<String>()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only() {
        for ok in [
            "localhost",
            "LOCALHOST:8000",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8000",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8000",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8000",
            "0.0.0.0:8000",
            "[::]:8000",
            "[::1",
            "localhost:",
            "localhost:80x",
            "[::1]x",
            "sub.localhost",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
