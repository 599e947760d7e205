//! Errors about remotes that say what happened and what to do (issue 23, case 7): a directory
//! remote that does not exist is refused when it is added; a server's address given as a remote
//! name gets the URL to use; a web server that is not NeuroShard is named by its page's title, not
//! its raw HTML; https:// to a plain HTTP server says so instead of "nothing answered".

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::serve::Served;
use common::TestRepo;

#[test]
fn adding_a_directory_remote_that_does_not_exist_is_refused() {
    let repo = TestRepo::new();
    repo.ok(&["init"]);
    let config = repo.read(".shard/config.toml");
    let missing = repo.join("no/such/store");
    let err = repo.fails(&["remote", "add", "origin", missing.to_str().expect("utf8")]);
    assert!(
        err.contains("does not exist") && err.contains("mkdir"),
        "{err}"
    );
    assert_eq!(repo.read(".shard/config.toml"), config, "nothing was added");
    std::fs::create_dir_all(&missing).expect("mkdir");
    repo.ok(&["remote", "add", "origin", missing.to_str().expect("utf8")]);
}

#[test]
fn a_server_address_given_as_a_remote_name_gets_its_url() {
    let (repo, _) = TestRepo::committed(10_000);
    let err = repo.fails(&["push", "--remote", "localhost:8000"]);
    assert!(err.contains("--remote http://localhost:8000"), "{err}");
    assert!(!err.contains("remote add localhost:8000"), "{err}");
}

#[test]
fn a_web_server_that_is_not_neuroshard_is_named_by_its_page_title() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        // The health check is one request (a 404 is not retried); serve at most a few.
        listener.set_nonblocking(false).expect("blocking");
        if let Ok((mut c, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let body = "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>The requested URL was not found on this server. Additionally, a 404 Not Found error was encountered while trying to use an ErrorDocument to handle the request.</p></body></html>";
            let _ = write!(
                c,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let (repo, _) = TestRepo::committed(10_000);
    let err = repo.fails(&["push", "--remote", &url]);
    assert!(err.contains("404 Not Found"), "{err}");
    assert!(err.contains("not a NeuroShard server"), "{err}");
    assert!(!err.contains("<html") && !err.contains("<title>"), "{err}");
    server.join().expect("server");
}

#[test]
fn https_to_a_plain_http_server_says_so() {
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("store"), &[], &[]);
    let https = server.url.replacen("http://", "https://", 1);
    let (repo, _) = TestRepo::committed(10_000);
    let err = repo.fails(&["push", "--remote", &https]);
    assert!(
        err.contains("without TLS") && err.contains("http://"),
        "{err}"
    );
    assert!(!err.contains("nothing answered"), "{err}");
}
