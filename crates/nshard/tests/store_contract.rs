//! One contract every remote `Store` backend passes (`nshard_remote::testing`): the directory
//! remote, the HTTP remote against a real `nshard serve` process (with a small batch limit, so that
//! the client has to split), S3 against a real SeaweedFS, and `nshard serve` backed by that S3.

mod common;

use common::s3::S3Env;
use common::serve::Served;
use nshard_core::ObjectId;
use nshard_core::RemoteError;
use nshard_core::RemoteUrl;
use nshard_remote::testing::{admin_contract, contract, s3_delta_paths, s3_missing_paths};
use nshard_remote::{OpenOptions, S3Options, S3Store};

fn s3_options(env: &S3Env) -> OpenOptions {
    OpenOptions {
        token: None,
        s3: S3Options {
            settings: env.vars(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_remote_passes_the_contract() {
    let d = tempfile::tempdir().expect("tmp");
    let url = RemoteUrl::parse(d.path().to_str().expect("utf8"), d.path()).expect("url");
    let store = nshard_remote::open(&url, &OpenOptions::default())
        .await
        .expect("open");
    assert!(store.stores_deltas(), "a directory keeps delta encodings");
    contract(store.clone(), 1).await;
    admin_contract(store, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_remote_passes_the_contract() {
    const TOKEN: &str = "contract-write-token-0123456789";
    // The delta part of the contract lists and deletes deltas, as gc does: admin routes.
    const ADMIN: &str = "contract-admin-token-0123456789";
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(
        &d.path().join("store"),
        &["--max-batch", "300"],
        &[(
            "NSHARD_SERVE_TOKENS",
            &format!("write:{TOKEN},admin:{ADMIN}"),
        )],
    );
    let url = RemoteUrl::parse(&server.url, d.path()).expect("url");
    let opts = OpenOptions {
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    let store = nshard_remote::open(&url, &opts).await.expect("open");
    assert_eq!(store.display_url(), server.url);
    assert!(!format!("{opts:?}").contains(TOKEN));
    assert!(
        store.stores_deltas(),
        "a server over a directory keeps delta encodings"
    );
    let admin_opts = OpenOptions {
        token: Some(ADMIN.into()),
        ..Default::default()
    };
    let admin = nshard_remote::open(&url, &admin_opts).await.expect("open");
    contract(admin, 2).await;
    // A write token may upload deltas and ask for them, but not list or delete them.
    let err = store.list_deltas().await.expect_err("admin only");
    assert!(
        matches!(
            err,
            nshard_core::Error::Remote(RemoteError::Failed {
                kind: nshard_core::RemoteFailure::Forbidden,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("admin"), "{err}");
    assert!(
        store.admin().is_none(),
        "the HTTP protocol has no listing or deleting"
    );
    // Without the token the same store refuses, permanently, saying what to do.
    let anon = nshard_remote::open(&url, &OpenOptions::default())
        .await
        .expect("open");
    let err = anon.missing(&[ObjectId::of(b"x")]).await.expect_err("401");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("NSHARD_TOKEN"), "{err}");
    // A caller can branch on what went wrong without reading the message.
    assert!(
        matches!(
            err,
            nshard_core::Error::Remote(RemoteError::Failed {
                kind: nshard_core::RemoteFailure::Unauthorized,
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_remote_is_a_typed_not_found() {
    let d = tempfile::tempdir().expect("tmp");
    let gone = d.path().join("no-such-remote");
    let url = RemoteUrl::parse(gone.to_str().expect("utf8"), d.path()).expect("url");
    let err = match nshard_remote::open(&url, &OpenOptions::default()).await {
        Ok(_) => panic!("a missing directory opened as a remote"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            nshard_core::Error::Remote(RemoteError::Failed {
                kind: nshard_core::RemoteFailure::NotFound,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(!gone.exists(), "opening a remote must not create it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_remote_passes_the_contract() {
    let Some(env) = S3Env::get() else { return };
    let url = RemoteUrl::parse(&env.fresh_url("contract"), std::path::Path::new("/")).expect("url");
    let store = nshard_remote::open(&url, &s3_options(&env))
        .await
        .expect("open");
    assert_eq!(store.display_url(), url.to_string());
    assert!(store.stores_deltas(), "an S3 remote keeps delta encodings");
    contract(store.clone(), 3).await;
    admin_contract(store, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_missing_heads_or_lists_by_the_batch() {
    let Some(env) = S3Env::get() else { return };
    let prefix = common::s3::unique("missing-paths");
    let store = S3Store::open(&env.bucket, &prefix, &s3_options(&env).s3).expect("open");
    s3_missing_paths(std::sync::Arc::new(store), 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_deltas_of_lists_or_asks_by_the_batch() {
    let Some(env) = S3Env::get() else { return };
    let prefix = common::s3::unique("delta-paths");
    let store = S3Store::open(&env.bucket, &prefix, &s3_options(&env).s3).expect("open");
    s3_delta_paths(std::sync::Arc::new(store), 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_backed_by_s3_passes_the_contract() {
    let Some(env) = S3Env::get() else { return };
    let d = tempfile::tempdir().expect("tmp");
    let bucket_url = env.fresh_url("serve-contract");
    let vars = env.vars();
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The delta part of the contract lists and deletes deltas, as gc does: admin routes.
    const ADMIN: &str = "contract-admin-token-0123456789";
    let tokens = format!("admin:{ADMIN}");
    let mut envs = envs;
    envs.push(("NSHARD_SERVE_TOKENS", &tokens));
    let server = Served::start_store(&d.path().join("server"), &bucket_url, &[], &envs);
    let url = RemoteUrl::parse(&server.url, d.path()).expect("url");
    let opts = OpenOptions {
        token: Some(ADMIN.into()),
        ..Default::default()
    };
    let store = nshard_remote::open(&url, &opts).await.expect("open");
    let direct = nshard_remote::open(
        &RemoteUrl::parse(&bucket_url, d.path()).expect("url"),
        &s3_options(&env),
    )
    .await
    .expect("open bucket");
    assert!(
        store.stores_deltas(),
        "a server over a bucket keeps delta encodings"
    );
    contract(store.clone(), 4).await;
    // What the server stored is in the bucket, under the same layout an s3:// remote uses.
    let listed = direct
        .admin()
        .expect("S3 lists")
        .list()
        .await
        .expect("list");
    assert_eq!(
        listed.len(),
        5,
        "the contract's four objects and the base of its deltas: {listed:?}"
    );
}
