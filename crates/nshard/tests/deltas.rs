//! Checkpoint series stored as deltas (issue 20), end to end with the real binary: a run of
//! versions where every weight may move a little, committed one after another. The newest version
//! stays whole and older ones become deltas of the next; chains stay within `delta_depth`; every
//! version checks out byte for byte in any order; remotes receive standalone objects, so pulling
//! the newest version alone costs what it costs on its own; gc keeps the bases that kept versions
//! need; a kill -9 while deltas are written loses nothing; hostile deltas are refused.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::checkpoints::series;
use common::s3::S3Env;
use common::serve::{metric_value, Served};
use common::{git, TestRepo};

/// The stored encoding of every object in a store: `Some(base)` for a delta.
fn encodings(objects: &Path) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    for (path, _) in common::walk(objects) {
        let bytes = fs::read(&path).expect("read object");
        let p = Path::new(&path);
        let name = |q: &Path| q.file_name().expect("name").to_string_lossy().into_owned();
        let id = format!("{}{}", name(p.parent().expect("fan-out")), name(p));
        let base = (bytes.len() >= 48 && matches!(bytes[4], 2 | 3) && bytes[5] == 3)
            .then(|| hex(&bytes[16..48]));
        out.insert(id, base);
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One delta object of a store and its base.
fn some_delta(enc: &HashMap<String, Option<String>>) -> (String, String) {
    enc.iter()
        .find_map(|(id, b)| b.as_ref().map(|b| (id.clone(), b.clone())))
        .expect("a delta object")
}

/// Deltas between `id` and a standalone object.
fn depth(enc: &HashMap<String, Option<String>>, id: &str) -> usize {
    let mut d = 0;
    let mut cur = id.to_string();
    while let Some(Some(base)) = enc.get(&cur) {
        d += 1;
        assert!(d <= 64, "chain too long at {id}");
        cur = base.clone();
    }
    d
}

/// The chunk ids of a manifest.
fn chunks(manifest: &serde_json::Value) -> Vec<String> {
    manifest["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

/// Commits every version of `files` to `repo` (tracked as `model.safetensors`), then runs
/// `nshard repack` (which waits for the background re-encoding); returns the version ids and
/// each commit's JSON.
fn commit_all(repo: &TestRepo, files: &[Vec<u8>]) -> (Vec<String>, Vec<serde_json::Value>) {
    let (mut versions, mut outs) = (Vec::new(), Vec::new());
    for (k, f) in files.iter().enumerate() {
        let v = commit_step(repo, k, f);
        versions.push(v["version"].as_str().expect("version").to_string());
        outs.push(v);
    }
    repo.ok(&["repack"]);
    (versions, outs)
}

/// Writes step `k` of a series as `model.safetensors` (tracked at step 0) and commits it;
/// returns the commit's JSON row.
fn commit_step(repo: &TestRepo, k: usize, f: &[u8]) -> serde_json::Value {
    repo.write("model.safetensors", f);
    if k == 0 {
        repo.ok(&["track", "model.safetensors"]);
    }
    repo.json(&["commit", "-m", &format!("step {k}")])[0].clone()
}

/// Copies `from`'s manifest of `model.safetensors` into `to` (what git would bring).
fn copy_manifest(from: &TestRepo, to: &TestRepo) {
    fs::copy(
        from.join("model.safetensors.shard.json"),
        to.join("model.safetensors.shard.json"),
    )
    .expect("copy manifest");
}

/// Checks out `order`'s versions one after another (each must come back byte for byte), then
/// verifies every version.
fn check_out(repo: &TestRepo, versions: &[String], files: &[Vec<u8>], order: &[usize]) {
    for &k in order {
        repo.ok(&[
            "checkout",
            "model.safetensors",
            "--version",
            &versions[k],
            "--force",
        ]);
        assert!(repo.read("model.safetensors") == files[k], "version {k}");
    }
    repo.ok(&["verify", "--all-versions"]);
}

#[test]
fn twenty_versions_are_deltas_within_the_bound_and_check_out_in_any_order() {
    let files = series(22);
    let repo = TestRepo::new();
    // Re-encoded by commit itself, so each commit's JSON says what it did; a bound of 8 (the
    // default is 16) so that 22 versions reach it.
    repo.config_line("delta_background = false");
    repo.config_line("delta_depth = 8");
    let (versions, outs) = commit_all(&repo, &files);
    assert!(outs.iter().all(|o| o["delta_pending"] == false), "{outs:?}");
    // From the second commit on, the previous version went in as deltas, and the store grew by
    // far less than a version stored whole; except where the chain from version to version
    // reached its bound (6 with depth 8): that version stays whole (a keyframe, v6,
    // at the commit of v7), and the next chain starts after it. At the next keyframe (v13, at
    // the commit of v14) the keyframe before it becomes a delta of it; so does v13 of v20 at the
    // commit of v21, which brings the longest chain to the bound: v0 … v6 → v13 → v20.
    let keyframes: Vec<usize> = (1..outs.len())
        .filter(|&k| outs[k]["delta_chunks"] == 0)
        .collect();
    assert_eq!(keyframes, vec![7]);
    for (k, o) in outs.iter().enumerate().skip(1) {
        if keyframes.contains(&k) {
            continue;
        }
        // Every chunk but the header (unchanged), the one holding several small tensors too.
        let total = o["chunks_total"].as_u64().expect("chunks_total");
        assert_eq!(o["delta_chunks"].as_u64(), Some(total - 1), "{o}");
        let before = o["delta_bytes_before"].as_u64().expect("before");
        let after = o["delta_bytes_after"].as_u64().expect("after");
        assert!(after * 3 < before, "{o}");
    }
    // The newest version is stored whole; no chain is longer than the bound (8), and
    // the bound is reached: some versions stay whole as keyframes.
    let enc = encodings(&repo.join(".shard/objects"));
    let newest = repo.manifest("model.safetensors");
    let tensor_chunks: Vec<String> = chunks(&newest)
        .into_iter()
        .filter(|c| fs::metadata(repo.object_path(c)).expect("object").len() > 100_000)
        .collect();
    assert_eq!(tensor_chunks.len(), 2, "{newest}");
    for c in &tensor_chunks {
        assert_eq!(depth(&enc, c), 0);
    }
    let depths: Vec<usize> = enc.keys().map(|id| depth(&enc, id)).collect();
    assert_eq!(depths.iter().max(), Some(&8), "{depths:?}");
    // log shows what each version costs in the store, not raw bytes (newest first): a delta a
    // fraction of the newest version (whole); the last keyframe (step 20) whole until the next
    // keyframe comes; the keyframes before it (steps 13 and 6) deltas of the next keyframe.
    let log = repo.json(&["log", "model.safetensors"]);
    let entries = log.as_array().expect("log");
    let cost = |k: usize| entries[k]["stored_bytes"].as_u64().expect("stored_bytes");
    assert_eq!(entries[1]["message"], "step 20");
    assert!(cost(2) * 3 < cost(0), "{log}");
    assert!(cost(1) * 10 > cost(0) * 9, "{log}");
    for (k, step) in [(8, "step 13"), (15, "step 6")] {
        assert_eq!(entries[k]["message"], step);
        assert!(cost(k) * 3 < cost(0), "{log}");
    }
    // Every version, in an order that jumps around the chains.
    let order = [
        3usize, 19, 0, 11, 8, 17, 1, 21, 9, 12, 5, 18, 2, 10, 20, 4, 16, 6, 15, 7, 14, 13,
    ];
    check_out(&repo, &versions, &files, &order);
}

/// The default: commit returns with the previous version queued, a background `nshard repack`
/// re-encodes it, and `nshard repack` waits for that and finishes the queue. The store ends up
/// exactly as when commit re-encodes before returning (same deltas, same bases, same bound),
/// however the background runs interleave with the commits.
#[test]
fn background_repack_ends_where_commit_time_deltas_end() {
    let files = series(12);
    let sync = TestRepo::new();
    sync.config_line("delta_background = false");
    commit_all(&sync, &files);
    let repo = TestRepo::new();
    let (versions, outs) = commit_all(&repo, &files);
    for o in outs.iter().skip(1) {
        assert_eq!(o["delta_pending"], true, "{o}");
        assert_eq!(o["delta_chunks"], 0, "{o}");
    }
    // commit_all ran `repack`, which waited for the background runs and emptied the queue.
    let again = repo.json(&["repack"]);
    assert_eq!(again["versions"], 0, "{again}");
    let queue = repo.join(".shard/cache/deltas/queue");
    assert_eq!(fs::read_dir(&queue).expect("queue").count(), 0);
    // The chunks' encodings match (manifest objects differ: they hold commit times).
    let (want, got) = (
        encodings(&sync.join(".shard/objects")),
        encodings(&repo.join(".shard/objects")),
    );
    let common = |m: &HashMap<String, Option<String>>, other: &HashMap<String, Option<String>>| {
        m.iter()
            .filter(|(k, _)| other.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>()
    };
    assert_eq!(common(&got, &want), common(&want, &got));
    let deltas = |m: &HashMap<String, Option<String>>| m.values().filter(|b| b.is_some()).count();
    assert_eq!(deltas(&common(&got, &want)), deltas(&got));
    assert!(deltas(&got) > 10, "{got:?}");
    check_out(&repo, &versions, &files, &[0, 5, 11, 3]);
}

/// A model whose first tensor is too small for deltas (it stays whole in every version): the
/// keyframes are still found by the large chunks, and the keyframe before a new one becomes a
/// delta of it.
#[test]
fn keyframes_are_found_past_a_small_first_tensor() {
    let files = common::checkpoints::series_of(
        15,
        &[
            ("a.scale", 64),
            ("layers.0.weight", 700_000),
            ("layers.1.weight", 500_000),
        ],
    );
    let repo = TestRepo::new();
    repo.config_line("delta_depth = 8");
    let (versions, _) = commit_all(&repo, &files);
    let log = repo.json(&["log", "model.safetensors"]);
    let entries = log.as_array().expect("log");
    let cost = |k: usize| entries[k]["stored_bytes"].as_u64().expect("stored_bytes");
    // With depth 8, newest first: step 14 whole, step 13 the newest keyframe (whole), step 6 the keyframe
    // before it, now a delta of step 13: a longer step than step 5's (a delta of step 6), so
    // it costs more (a chain merely extended to the bound would make them alike).
    assert_eq!(entries[8]["message"], "step 6");
    assert!(cost(1) * 10 > cost(0) * 9, "{log}");
    assert!(cost(8) * 3 < cost(0), "{log}");
    assert!(cost(8) * 2 > cost(9) * 3, "{log}");
    check_out(&repo, &versions, &files, &[6, 13, 0]);
}

#[test]
fn delta_false_stores_every_version_whole() {
    let files = series(3);
    let repo = TestRepo::new();
    repo.ok(&["init"]);
    repo.config_line("delta = false");
    let (_, outs) = commit_all(&repo, &files);
    assert_eq!(outs[2]["delta_chunks"], 0, "{}", outs[2]);
    assert!(encodings(&repo.join(".shard/objects"))
        .values()
        .all(Option::is_none));
    // A depth out of range is refused with the setting named.
    repo.config_line("delta_depth = 0");
    let err = repo.fails(&["status"]);
    assert!(err.contains("delta_depth"), "{err}");
}

/// A fresh repository holding `origin`'s manifest of `model.safetensors` and no objects (what a
/// git clone of it has before `nshard pull`).
fn clone_of(origin: &TestRepo) -> TestRepo {
    let c = TestRepo::new();
    c.ok(&["init"]);
    copy_manifest(origin, &c);
    c
}

/// `nshard ARGS --json` in `repo` with `envs` set; its output, parsed (it must succeed).
fn run_with(repo: &TestRepo, envs: &[(String, String)], args: &[&str]) -> serde_json::Value {
    let mut c = common::nshard(repo.path());
    c.args(args).arg("--json");
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("runs");
    assert!(
        out.status.success(),
        "nshard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Pushes a series to `url`, then pulls into fresh clones: the newest version alone (costing
/// what it costs stored on its own), then every version.
fn remote_round_trip(url: &str, envs: &[(String, String)]) {
    let run = |repo: &TestRepo, args: &[&str]| run_with(repo, envs, args);
    let files = series(6);
    let origin = TestRepo::new();
    let (versions, _) = commit_all(&origin, &files);
    let pushed = run(&origin, &["push", "--remote", url, "--all-versions"]);
    assert!(pushed["deltas"].as_u64().expect("deltas") > 0, "{pushed}");
    assert!(
        pushed["bytes"].as_u64().expect("bytes") as f64
            <= 1.05 * store_bytes(&origin.path().join(".shard/objects")) as f64,
        "the older versions go as deltas, as stored locally: {pushed}"
    );
    let newest = origin.manifest("model.safetensors");
    // What the newest version takes stored on its own (it is standalone in the origin).
    let alone: u64 = chunks(&newest)
        .iter()
        .map(|c| fs::metadata(origin.object_path(c)).expect("object").len())
        .sum();
    let clone = || clone_of(&origin);
    let fresh = clone();
    let pulled = run(&fresh, &["pull", "--remote", url]);
    let bytes = pulled["bytes"].as_u64().expect("bytes");
    assert!(
        bytes as f64 <= 1.3 * alone as f64,
        "pulling the newest version took {bytes} bytes, alone it takes {alone}: {pulled}"
    );
    fresh.ok(&["checkout"]);
    assert!(fresh.read("model.safetensors") == files[5]);
    let all = clone();
    let pulled = run(&all, &["pull", "--remote", url, "--all-versions"]);
    assert!(pulled["deltas"].as_u64().expect("deltas") > 0, "{pulled}");
    check_out(&all, &versions, &files, &[0, 4, 2, 5, 1, 3]);
    // Every version at the cost of what changed, on the remote and in the clone alike.
    let origin_bytes = store_bytes(&origin.path().join(".shard/objects"));
    let all_bytes = store_bytes(&all.path().join(".shard/objects"));
    assert!(
        all_bytes as f64 <= 1.05 * origin_bytes as f64,
        "{all_bytes} vs {origin_bytes}"
    );
    // One older version alone comes through the newer ones it is a delta of.
    let one = clone();
    one.ok(&["pull", "--remote", url, "--version", &versions[2]]);
    one.ok(&["checkout", "model.safetensors", "--version", &versions[2]]);
    assert!(one.read("model.safetensors") == files[2]);
    one.ok(&["verify"]);
}

/// The training loop against `url` (`envs` carry a token that may run gc): a push after each
/// commit (every version whole), then `remote gc` uploads the deltas of the older versions and
/// lets them stand for the whole copies; a fresh clone gets every version through them.
fn gc_round_trip(url: &str, envs: &[(String, String)]) {
    let run = |repo: &TestRepo, args: &[&str]| run_with(repo, envs, args);
    let files = series(4);
    let (trainer, versions) = train_and_push_with(&files, url, envs);
    let gc = run(&trainer, &["remote", "gc", url, "--grace", "0"]);
    assert!(gc["uploaded_deltas"].as_u64() > Some(0), "{gc}");
    assert!(gc["superseded_objects"].as_u64() > Some(0), "{gc}");
    assert_eq!(gc["bad_deltas"], serde_json::json!([]), "{gc}");
    let again = run(&trainer, &["remote", "gc", url, "--grace", "0"]);
    assert_eq!(again["uploaded_deltas"], 0, "{again}");
    assert_eq!(again["superseded_objects"], 0, "{again}");
    let all = clone_of(&trainer);
    let pulled = run(&all, &["pull", "--remote", url, "--all-versions"]);
    assert!(pulled["deltas"].as_u64() > Some(0), "{pulled}");
    check_out(&all, &versions, &files, &[0, 3, 1, 2]);
    run(&all, &["verify", "--remote", url]);
}

#[test]
fn directory_remote_gets_standalone_objects_and_fresh_clones_pay_for_one_version() {
    let remote = tempfile::tempdir().expect("tmp");
    remote_round_trip(remote.path().to_str().expect("utf8"), &[]);
    assert!(encodings(&remote.path().join("objects"))
        .values()
        .all(Option::is_none));
    assert!(!common::walk(&remote.path().join("deltas")).is_empty());
    let trained = tempfile::tempdir().expect("tmp");
    gc_round_trip(trained.path().to_str().expect("utf8"), &[]);
}

/// Bytes of every file under `dir`.
fn store_bytes(dir: &Path) -> u64 {
    common::walk(dir).iter().map(|(_, len)| *len).sum()
}

/// A colleague who pulls each new version as it is pushed, and one who pulls the whole history
/// at once, end with a store the size of the committer's: the versions before those received
/// become deltas of them, as after a commit. Every version still checks out; pulling again
/// queues nothing; with `delta = false` nothing is re-encoded, until `repack --all-versions`.
#[test]
fn pulled_versions_make_the_versions_before_them_deltas_as_commits_do() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(6);
    let origin = TestRepo::new();
    let colleague = TestRepo::new();
    colleague.ok(&["init"]);
    let plain = TestRepo::new();
    plain.ok(&["init"]);
    plain.write(".shard/config.toml", b"delta = false\n");
    let mut versions = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let c = commit_step(&origin, k, f);
        versions.push(c["version"].as_str().expect("version").to_string());
        origin.ok(&["push", "--remote", url]);
        for repo in [&colleague, &plain] {
            copy_manifest(&origin, repo);
        }
        let pulled = colleague.json(&["pull", "--remote", url]);
        assert_eq!(
            pulled["deltas_queued"],
            u64::from(k > 0),
            "pull {k}: {pulled}"
        );
        colleague.ok(&["repack"]);
        let again = colleague.json(&["pull", "--remote", url]);
        assert_eq!(again["deltas_queued"], 0, "pull {k} again: {again}");
        let pulled = plain.json(&["pull", "--remote", url]);
        assert_eq!(pulled["deltas_queued"], 0, "delta = false: {pulled}");
    }
    origin.ok(&["repack"]);
    let size = |r: &TestRepo| store_bytes(&r.join(".shard/objects"));
    let (mine, theirs, whole) = (size(&origin), size(&colleague), size(&plain));
    assert!(
        theirs as f64 <= 1.02 * mine as f64,
        "pulled one by one the store takes {theirs} bytes, the committer's {mine}"
    );
    assert!(
        (theirs as f64) < 0.5 * whole as f64,
        "deltas: {theirs} bytes; every version whole: {whole}"
    );
    let deltas = encodings(&colleague.join(".shard/objects"));
    assert!(
        deltas.values().any(Option::is_some),
        "the colleague has deltas"
    );
    check_out(&colleague, &versions, &files, &[0, 3, 5, 1, 4, 2]);
    // The whole history at once: every version but the newest is queued, oldest first.
    let all = clone_of(&origin);
    let pulled = all.json(&["pull", "--remote", url, "--all-versions"]);
    assert_eq!(pulled["deltas_queued"], 5, "{pulled}");
    all.ok(&["repack"]);
    let at_once = size(&all);
    assert!(
        at_once as f64 <= 1.02 * mine as f64,
        "pulled at once the store takes {at_once} bytes, the committer's {mine}"
    );
    check_out(&all, &versions, &files, &[5, 0, 2, 4, 1, 3]);
    // Older versions pulled one at a time into a clone that has the newest: each becomes deltas
    // of the version after it, which is here (its parent is not).
    let back = clone_of(&origin);
    let pulled = back.json(&["pull", "--remote", url]);
    assert_eq!(pulled["deltas_queued"], 0, "{pulled}");
    let newest_only = size(&back);
    for k in [4, 3] {
        let pulled = back.json(&["pull", "--remote", url, "--version", &versions[k]]);
        assert_eq!(
            pulled["deltas_queued"], 1,
            "pull --version of step {k}: {pulled}"
        );
        back.ok(&["repack"]);
        let again = back.json(&["pull", "--remote", url, "--version", &versions[k]]);
        assert_eq!(again["deltas_queued"], 0, "step {k} again: {again}");
    }
    let grown = size(&back) - newest_only;
    assert!(
        (grown as f64) < 0.5 * newest_only as f64,
        "two older versions added {grown} bytes to a store of {newest_only} (the newest alone)"
    );
    check_out(&back, &versions, &files, &[3, 5, 4]);
    // The rest of the history in a later pull queues `queued` pairs, and the store ends as the
    // committer's.
    let history_later = |repo: &TestRepo, queued: u64, what: &str| {
        let pulled = repo.json(&["pull", "--remote", url, "--all-versions"]);
        assert_eq!(pulled["deltas_queued"], queued, "{what}: {pulled}");
        repo.ok(&["repack"]);
        let got = size(repo);
        assert!(
            got as f64 <= 1.02 * mine as f64,
            "{what}: {got} bytes, the committer's {mine}"
        );
    };
    // The versions pulled before pair with the parents that come now (step 3 with step 2).
    history_later(&back, 3, "newest, two older versions, then the rest");
    // The newest first, the whole history later: the newest pairs with its parent too.
    let late = clone_of(&origin);
    late.ok(&["pull", "--remote", url]);
    history_later(&late, 5, "newest first, history later");
    check_out(&late, &versions, &files, &[0, 5, 2]);
    // A store filled while deltas were off (or by an nshard whose pulls did not re-encode):
    // `repack --all-versions` catches up, and a second run finds nothing more to re-encode.
    plain.write(".shard/config.toml", b"");
    let r = plain.json(&["repack", "--all-versions"]);
    assert_eq!(r["versions"], 5, "{r}");
    let caught_up = size(&plain);
    assert!(
        caught_up as f64 <= 1.02 * mine as f64,
        "after repack --all-versions the store takes {caught_up} bytes, the committer's {mine}"
    );
    let again = plain.json(&["repack", "--all-versions"]);
    assert_eq!(again["delta_chunks"], 0, "{again}");
    check_out(&plain, &versions, &files, &[1, 5, 0, 3]);
}

/// Older versions pulled one at a time go below the chain already here (a version pulled with
/// `--version` becomes deltas of the one after it); a later commit that re-encodes the newest
/// version counts those chains, so none outgrows `delta_depth`.
#[test]
fn versions_pulled_below_a_chain_keep_later_chains_within_the_depth() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(5);
    let origin = TestRepo::new();
    let mut versions = Vec::new();
    for (k, f) in files[..4].iter().enumerate() {
        versions.push(
            commit_step(&origin, k, f)["version"]
                .as_str()
                .expect("v")
                .to_string(),
        );
        origin.ok(&["push", "--remote", url]);
    }
    let back = clone_of(&origin);
    back.write(
        ".shard/config.toml",
        b"delta_depth = 2\ndelta_background = false\n",
    );
    back.ok(&["pull", "--remote", url]);
    for k in [2, 1] {
        let pulled = back.json(&["pull", "--remote", url, "--version", &versions[k]]);
        assert_eq!(pulled["deltas_queued"], 1, "step {k}: {pulled}");
    }
    let depth_of = |enc: &HashMap<String, Option<String>>, id: &String| {
        let (mut d, mut cur) = (0, id.clone());
        while let Some(Some(base)) = enc.get(&cur) {
            d += 1;
            cur = base.clone();
            assert!(d <= 64, "a cycle through {id}");
        }
        d
    };
    let deepest = |r: &TestRepo| {
        let enc = encodings(&r.join(".shard/objects"));
        enc.keys().map(|id| depth_of(&enc, id)).max().unwrap_or(0)
    };
    assert_eq!(deepest(&back), 2, "steps 1 and 2 are deltas below step 3");
    back.write("model.safetensors", &files[4]);
    back.ok(&["track", "model.safetensors"]);
    let c = commit_step(&back, 4, &files[4]);
    versions.push(c["version"].as_str().expect("committed").to_string());
    back.ok(&["repack"]);
    assert_eq!(
        deepest(&back),
        2,
        "step 3 stays whole: as a delta of step 4 it would make step 1's chain 3 deep"
    );
    check_out(&back, &versions, &files, &[1, 4, 2, 3]);
}

/// The same through git: a colleague whose `git pull` brings each new manifest gets the data from
/// the post-merge hook, and the hook re-encodes the version before it as deltas too (here before
/// it returns: the colleague set `delta_background = false`).
#[test]
fn git_pull_hooks_make_the_version_before_deltas() {
    let d = tempfile::tempdir().expect("tmp");
    let store = d.path().join("store");
    fs::create_dir_all(&store).expect("mkdir");
    let owner = d.path().join("owner");
    fs::create_dir_all(&owner).expect("mkdir");
    git(&owner, &["init", "-q"]);
    common::ok(&owner, &["init"]);
    common::ok(&owner, &["git-init"]);
    common::ok(
        &owner,
        &["remote", "add", "origin", store.to_str().expect("utf8")],
    );
    let clone = d.path().join("clone");
    let files = series(4);
    for (k, f) in files.iter().enumerate() {
        fs::write(owner.join("model.safetensors"), f).expect("write");
        if k == 0 {
            common::ok(&owner, &["track", "model.safetensors"]);
        }
        common::ok(&owner, &["commit", "-m", &format!("step {k}")]);
        common::ok(&owner, &["push"]);
        git(&owner, &["add", "-A"]);
        git(&owner, &["commit", "-qm", &format!("step {k}")]);
        if k == 0 {
            git(
                d.path(),
                &["clone", "-q", owner.to_str().expect("utf8"), "clone"],
            );
            common::ok(&clone, &["git-init"]);
            common::ok(&clone, &["pull", "--checkout"]);
            let config = clone.join(".shard/config.toml");
            let shared = fs::read_to_string(&config).expect("config");
            fs::write(&config, format!("delta_background = false\n{shared}")).expect("write");
        } else {
            let before = deltas_in(&clone);
            git(&clone, &["pull", "-q", "--no-rebase", "origin", "HEAD"]);
            assert!(
                deltas_in(&clone) > before,
                "the hook re-encoded step {} as deltas",
                k - 1
            );
        }
        assert!(
            fs::read(clone.join("model.safetensors")).expect("model") == *f,
            "step {k} checked out by the hook"
        );
    }
    common::ok(&owner, &["repack"]);
    common::ok(&clone, &["repack"]);
    let size = |r: &Path| store_bytes(&r.join(".shard/objects"));
    let (mine, theirs) = (size(&owner), size(&clone));
    assert!(
        theirs as f64 <= 1.02 * mine as f64,
        "after git pulls the store takes {theirs} bytes, the committer's {mine}"
    );
    common::ok(&clone, &["verify", "--all-versions"]);
}

/// How many objects of the repository at `dir` are deltas.
fn deltas_in(dir: &Path) -> usize {
    encodings(&dir.join(".shard/objects"))
        .values()
        .filter(|b| b.is_some())
        .count()
}

#[test]
fn nshard_serve_round_trip() {
    let d = tempfile::tempdir().expect("tmp");
    let server = Served::start(&d.path().join("store"), &[], &[]);
    remote_round_trip(&server.url, &[]);
    let tokens = "admin:gc-round-trip-admin-token";
    let guarded = Served::start(
        &d.path().join("guarded"),
        &[],
        &[("NSHARD_SERVE_TOKENS", tokens)],
    );
    let admin = [(
        "NSHARD_TOKEN".to_string(),
        "gc-round-trip-admin-token".to_string(),
    )];
    gc_round_trip(&guarded.url, &admin);
}

/// A server restarted with `--max-object-format 1` over a store where gc let deltas stand for
/// older versions still serves those deltas (it lists `deltas-frozen` beside `deltas`): clients
/// pull every version through them, its gc keeps them and their bases and uploads and frees
/// nothing, and a push sends a new version whole in format 1.
#[test]
fn a_server_pinned_below_the_delta_format_keeps_serving_the_deltas_it_holds() {
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("store");
    let token = "pinned-admin-token";
    let tokens = format!("admin:{token}");
    let admin = [("NSHARD_TOKEN".to_string(), token.to_string())];
    let files = series(4);
    let (trainer, mut versions) = {
        let server = Served::start(&root, &[], &[("NSHARD_SERVE_TOKENS", &tokens)]);
        let (trainer, versions) = train_and_push_with(&files[..3], &server.url, &admin);
        let gc = run_with(
            &trainer,
            &admin,
            &["remote", "gc", &server.url, "--grace", "0"],
        );
        assert!(gc["superseded_objects"].as_u64() > Some(0), "{gc}");
        (trainer, versions)
    };
    let pinned = Served::start(
        &root,
        &["--max-object-format", "1"],
        &[("NSHARD_SERVE_TOKENS", &tokens)],
    );
    let url = pinned.url.as_str();
    let remote_deltas = || common::walk(&root.join("deltas")).len();
    let held = remote_deltas();
    assert!(held > 0);
    let gc = run_with(&trainer, &admin, &["remote", "gc", url, "--grace", "0"]);
    assert_eq!(gc["uploaded_deltas"], 0, "{gc}");
    assert_eq!(gc["superseded_objects"], 0, "{gc}");
    assert_eq!(gc["freed_objects"], 0, "{gc}");
    assert!(gc["live_deltas"].as_u64() > Some(0), "{gc}");
    assert_eq!(remote_deltas(), held);

    let m = commit_step(&trainer, 3, &files[3]);
    versions.push(m["version"].as_str().expect("version").to_string());
    trainer.ok(&["repack"]);
    let pushed = run_with(&trainer, &admin, &["push", "--remote", url]);
    assert_eq!(pushed["deltas"], 0, "{pushed}");
    assert!(pushed["older_format"].as_u64() > Some(0), "{pushed}");
    let later = run_with(&trainer, &admin, &["remote", "gc", url, "--grace", "0"]);
    assert_eq!(later["uploaded_deltas"], 0, "{later}");
    assert_eq!(later["superseded_objects"], 0, "{later}");

    let all = clone_of(&trainer);
    let pulled = run_with(&all, &admin, &["pull", "--remote", url, "--all-versions"]);
    assert!(pulled["deltas"].as_u64() > Some(0), "{pulled}");
    check_out(&all, &versions, &files, &[0, 3, 1, 2]);
}

/// A client from before remote deltas reads `objects/` only and sends no `x-nshard-deltas`
/// header. After gc has replaced whole copies of older versions by deltas, `nshard serve` still
/// answers it as before: the objects count as present, and a GET resolves the chain and sends the
/// object encoded on its own (it decodes and hashes to its id). This nshard, which sends the
/// header, is answered by what the store holds and pulls the deltas.
#[test]
fn nshard_serve_gives_clients_from_before_remote_deltas_whole_objects() {
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("store");
    let token = "old-client-admin-token";
    let server = Served::start(
        &root,
        &[],
        &[("NSHARD_SERVE_TOKENS", &format!("admin:{token}"))],
    );
    let admin = [("NSHARD_TOKEN".to_string(), token.to_string())];
    let files = series(3);
    let (trainer, versions) = train_and_push_with(&files, &server.url, &admin);
    let gc = run_with(
        &trainer,
        &admin,
        &["remote", "gc", &server.url, "--grace", "0"],
    );
    assert!(gc["superseded_objects"].as_u64() > Some(0), "{gc}");
    let whole = nshard_core::backend::LocalStore::at(root.join("objects"), root.join("tmp"));
    let mut only_deltas: Vec<String> = common::walk(&root.join("deltas"))
        .iter()
        .filter_map(|(p, _)| {
            Path::new(p)
                .file_name()?
                .to_str()?
                .split('.')
                .next()
                .map(String::from)
        })
        .filter(|id| !whole.has(&nshard_core::ObjectId::parse(id).expect("id")))
        .collect();
    only_deltas.sort();
    only_deltas.dedup();
    assert!(!only_deltas.is_empty(), "gc left every object whole");

    nshard_remote::install_tls_provider();
    let client = reqwest::blocking::Client::new();
    let missing = |knows: bool| -> Vec<String> {
        let mut req = client
            .post(format!("{}/v1/objects/missing", server.url))
            .bearer_auth(token)
            .json(&serde_json::json!({ "ids": only_deltas }));
        if knows {
            req = req.header("x-nshard-deltas", "1");
        }
        let v: serde_json::Value = req.send().expect("missing").json().expect("json");
        let mut ids: Vec<String> = v["missing"]
            .as_array()
            .expect("missing")
            .iter()
            .map(|x| x.as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    };
    assert!(
        missing(false).is_empty(),
        "an older client sees them present"
    );
    assert_eq!(
        missing(true),
        only_deltas,
        "this nshard sees what is stored whole"
    );
    for id in &only_deltas {
        let url = format!("{}/v1/objects/{id}", server.url);
        let old = client.get(&url).bearer_auth(token).send().expect("get");
        assert_eq!(old.status(), reqwest::StatusCode::OK, "{id}");
        let enc = old.bytes().expect("body");
        let oid = nshard_core::ObjectId::parse(id).expect("id");
        nshard_core::format::decode_verified(&oid, &enc, 1 << 30).expect("a whole object");
        let new = client
            .get(&url)
            .bearer_auth(token)
            .header("x-nshard-deltas", "1")
            .send()
            .expect("get");
        assert_eq!(new.status(), reqwest::StatusCode::NOT_FOUND, "{id}");
    }
    let all = clone_of(&trainer);
    let pulled = run_with(
        &all,
        &admin,
        &["pull", "--remote", &server.url, "--all-versions"],
    );
    assert!(pulled["deltas"].as_u64() > Some(0), "{pulled}");
    check_out(&all, &versions, &files, &[0, 2, 1]);
}

/// How many objects of each format version a store holds.
fn formats(objects: &Path) -> HashMap<u8, usize> {
    let mut out = HashMap::new();
    for (path, _) in common::walk(objects) {
        let bytes = fs::read(&path).expect("read object");
        *out.entry(bytes[4]).or_insert(0) += 1;
    }
    out
}

/// Chunks of float tensors stored on their own are float objects (format 4) locally and on a
/// default server; a server started with `--max-object-format 1` does not announce them, so it
/// gets the same chunks in format 1 without refusing any upload, push says so, clones pull and
/// check out every version from it, and a damaged copy there is repaired in format 1.
#[test]
fn float_objects_go_to_servers_that_store_them_and_format_1_to_those_that_do_not() {
    let files = series(3);
    let origin = TestRepo::new();
    let (versions, _) = commit_all(&origin, &files);
    let local = formats(&origin.join(".shard/objects"));
    assert!(local.get(&4).copied().unwrap_or(0) > 0, "{local:?}");
    // bf16 weights: the folded-field form of float objects (codec 5).
    let folded = common::walk(&origin.join(".shard/objects"))
        .into_iter()
        .filter(|(path, _)| fs::read(path).expect("read object")[4..6] == [4, 5])
        .count();
    assert!(folded > 0, "no float object with folded fields: {local:?}");

    let d = tempfile::tempdir().expect("tmp");
    let pinned = Served::start(&d.path().join("old"), &["--max-object-format", "1"], &[]);
    let out = origin.ok(&["push", "--remote", &pinned.url, "--all-versions"]);
    assert!(out.contains("in object format 1"), "{out}");
    let old = formats(&d.path().join("old/objects"));
    assert!(
        !old.contains_key(&4) && old.get(&1).copied().unwrap_or(0) > 0,
        "{old:?}"
    );
    let refused = metric_value(&pinned.metrics(), "nshard_objects_rejected_total");
    assert_eq!(refused, Some(0), "uploads refused by the pinned server");
    let clone = clone_of(&origin);
    clone.ok(&["pull", "--remote", &pinned.url, "--all-versions"]);
    check_out(&clone, &versions, &files, &[2, 0, 1]);
    clone.ok(&["verify", "--remote", &pinned.url]);
    // A damaged copy on that server is repaired from a local float object: in format 1 too.
    let path = chunks(&origin.manifest("model.safetensors"))
        .iter()
        .map(|c| d.path().join("old/objects").join(&c[..2]).join(&c[2..]))
        .find(|p| fs::read(p).expect("read")[4..6] == [1, 2])
        .expect("a byte-grouped chunk of the newest version on the server");
    let mut bytes = fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fs::write(&path, &bytes).expect("damage");
    let v = origin.json(&["verify", "--remote", &pinned.url]);
    assert_eq!(v["repaired"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(fs::read(&path).expect("repaired")[4..6], [1, 2]);
    origin.ok(&["verify", "--remote", &pinned.url]);

    let open = Served::start(&d.path().join("new"), &[], &[]);
    let out = origin.ok(&["push", "--remote", &open.url, "--all-versions"]);
    assert!(!out.contains("object format 1"), "{out}");
    // Deltas (format 3) travel as deltas to a server that keeps them (`deltas/`, never among
    // its objects), or re-encoded on their own as float objects: one or the other for each.
    let new = formats(&d.path().join("new/objects"));
    let sent_as_deltas = common::walk(&d.path().join("new/deltas")).len();
    let n = |m: &HashMap<u8, usize>, v: u8| m.get(&v).copied().unwrap_or(0);
    assert!(sent_as_deltas > 0, "{new:?} vs {local:?}");
    assert_eq!(n(&new, 3), 0, "{new:?}");
    assert_eq!(
        n(&new, 4) + sent_as_deltas,
        n(&local, 4) + n(&local, 3),
        "{new:?} and {sent_as_deltas} deltas vs {local:?}"
    );
    assert_eq!(n(&new, 1), n(&local, 1), "{new:?} vs {local:?}");
}

/// A server that announced float objects and then refuses one (restarted with
/// `--max-object-format 1` after the client connected) gets that chunk again in format 1, and the
/// rest of the push in format 1 straight away: one refusal, and the push succeeds.
#[test]
fn a_float_object_refused_after_all_is_sent_again_in_format_1() {
    let files = series(2);
    let origin = TestRepo::new();
    let (versions, _) = commit_all(&origin, &files);
    let d = tempfile::tempdir().expect("tmp");
    let pinned = Served::start(&d.path().join("store"), &["--max-object-format", "1"], &[]);
    let proxy = common::proxy::FaultProxy::start(&pinned.addr, &[]);
    proxy.answer_health_with(
        r#"{"status":"ok","protocol":1,"server":"nshard/test","features":["verify","float-objects"]}"#,
    );
    let out = origin.ok(&[
        "push",
        "--remote",
        &proxy.url,
        "--all-versions",
        "--jobs",
        "1",
    ]);
    assert!(out.contains("in object format 1"), "{out}");
    let refused = metric_value(&pinned.metrics(), "nshard_objects_rejected_total");
    assert_eq!(refused, Some(1), "{out}");
    let stored = formats(&d.path().join("store/objects"));
    assert!(!stored.contains_key(&4), "{stored:?}");
    let clone = clone_of(&origin);
    clone.ok(&["pull", "--remote", &pinned.url, "--all-versions"]);
    check_out(&clone, &versions, &files, &[1, 0]);
}

#[test]
fn s3_round_trip() {
    let Some(env) = S3Env::get() else { return };
    remote_round_trip(&env.fresh_url("deltas"), &env.vars());
    gc_round_trip(&env.fresh_url("deltas-gc"), &env.vars());
}

#[test]
fn gc_keeps_the_bases_that_kept_versions_need() {
    let files = series(6);
    let repo = TestRepo::new();
    git(repo.path(), &["init", "-q"]);
    let mut ids = Vec::new();
    for (k, f) in files.iter().enumerate() {
        repo.write("model.safetensors", f);
        if k == 0 {
            repo.ok(&["track", "model.safetensors"]);
        }
        repo.ok(&["commit", "-m", &format!("v{k}")]);
        ids.push(chunks(&repo.manifest("model.safetensors")));
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "-qm", &format!("v{k}")]);
    }
    repo.ok(&["repack"]);
    // Keep v2 on a branch, make the main line hold only v5: v3 and v4 leave git's history, but
    // v2's chunks are deltas of v3's, which are deltas of v4's.
    git(repo.path(), &["branch", "old", "HEAD~3"]);
    git(repo.path(), &["checkout", "-q", "--orphan", "fresh"]);
    git(repo.path(), &["commit", "-qm", "only v5"]);
    for b in ["master", "main"] {
        let _ = std::process::Command::new("git")
            .args(["branch", "-D", b])
            .current_dir(repo.path())
            .output();
    }
    git(repo.path(), &["reflog", "expire", "--expire=now", "--all"]);
    let objects = repo.join(".shard/objects");
    let before = encodings(&objects);
    let gc = ["gc", "--only-current", "--include-unpushed", "--grace", "0"];
    let dry = repo.json(&[&gc[..], &["--dry-run"]].concat());
    assert!(
        dry["objects_restored_whole"].as_u64().expect("restored") > 0,
        "v2's chunks are deltas of v3's: {dry}"
    );
    assert_eq!(encodings(&objects), before, "a dry run changes nothing");
    let report = repo.json(&gc);
    assert!(
        report["objects_deleted"].as_u64().expect("deleted") > 0,
        "{report}"
    );
    assert_eq!(
        report["objects_restored_whole"], dry["objects_restored_whole"],
        "{report}"
    );
    // v2's chunks are whole again, so v3's and v4's go (those not in v2 or v5): nothing of a
    // deleted version stays as a base, and a second gc has nothing left to free.
    let after = encodings(&objects);
    for id in &ids[2] {
        assert_eq!(
            after.get(id),
            Some(&None),
            "v2's chunk {id} is stored whole"
        );
    }
    for id in ids[3].iter().chain(&ids[4]) {
        if !ids[2].contains(id) && !ids[5].contains(id) {
            assert!(
                !after.contains_key(id),
                "chunk {id} of a deleted version stayed"
            );
        }
    }
    let again = repo.json(&gc);
    assert_eq!(again["objects_deleted"], 0, "{again}");
    assert_eq!(again["objects_restored_whole"], 0, "{again}");
    repo.ok(&["verify"]);
    git(repo.path(), &["checkout", "-q", "old"]);
    repo.ok(&["checkout", "model.safetensors", "--force"]);
    assert!(repo.read("model.safetensors") == files[2]);
}

#[test]
fn a_missing_or_corrupt_base_is_named_and_the_old_file_stays() {
    let files = series(3);
    let repo = TestRepo::new();
    let (versions, _) = commit_all(&repo, &files);
    let enc = encodings(&repo.join(".shard/objects"));
    let (delta, base) = some_delta(&enc);
    let base_path = repo.object_path(&base);
    let saved = fs::read(&base_path).expect("base");
    // Corrupt base: checkout of the old version names the base, not the delta, and the work tree
    // keeps the newest version.
    let mut bad = saved.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x5A;
    fs::write(&base_path, &bad).expect("corrupt");
    let v0 = &versions[0];
    let err = repo.fails(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(err.contains(&base[..12]) || err.contains(&base), "{err}");
    assert!(repo.read("model.safetensors") == files[2]);
    // The delta itself was not quarantined.
    assert!(repo.object_path(&delta).exists());
    // Missing base: the error names it and says how to get it back.
    let _ = fs::remove_file(&base_path);
    let err = repo.fails(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(err.contains(&base[..12]) || err.contains(&base), "{err}");
    assert!(err.contains("nshard pull"), "{err}");
    assert!(repo.read("model.safetensors") == files[2]);
    fs::write(&base_path, &saved).expect("restore");
    repo.ok(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(repo.read("model.safetensors") == files[0]);
}

#[test]
fn hostile_delta_objects_are_refused() {
    let files = series(2);
    let repo = TestRepo::new();
    let (versions, _) = commit_all(&repo, &files);
    let enc = encodings(&repo.join(".shard/objects"));
    let (delta, _) = some_delta(&enc);
    let p = repo.object_path(&delta);
    let good = fs::read(&p).expect("delta");
    let v0 = &versions[0];
    // Its own base.
    let mut own = good.clone();
    own[16..48].copy_from_slice(&nshard_core::ObjectId::parse(&delta).expect("id").as_bytes()[..]);
    fs::write(&p, &own).expect("plant");
    let err = repo.fails(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(err.contains("against itself"), "{err}");
    assert!(repo.read("model.safetensors") == files[1]);
    // A format from a newer nshard: "upgrade", never "corrupt", and never moved aside.
    let mut newer = good.clone();
    newer[4] = 7;
    fs::write(&p, &newer).expect("plant");
    let err = repo.fails(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(
        err.contains("unsupported object format") && err.contains("upgrade nshard"),
        "{err}"
    );
    assert!(!err.contains("corrupt"), "{err}");
    assert!(p.exists());
    // A payload that decodes to other bytes: refused by the hash check.
    let mut wrong = good.clone();
    let mid = 48 + (wrong.len() - 48) / 2;
    wrong[mid] ^= 0xFF;
    fs::write(&p, &wrong).expect("plant");
    repo.fails(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(repo.read("model.safetensors") == files[1]);
    fs::write(&p, &good).expect("restore");
    repo.ok(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(repo.read("model.safetensors") == files[0]);
}

/// Flips a byte in the payload of the stored object `id` (past the header and base id).
fn damage(repo: &TestRepo, id: &str) {
    let p = repo.object_path(id);
    let mut bytes = fs::read(&p).expect("read object");
    let at = bytes.len() - 7;
    bytes[at] ^= 0x5A;
    fs::write(&p, &bytes).expect("write object");
}

/// `verify` tells a lost base from damaged deltas: the base is the corrupt object (moved aside)
/// and the intact deltas built on it are "missing delta base" problems that point at `nshard
/// pull`, never corrupt ones; a chunk of an older version moved aside stays a problem in the
/// next `verify` (it was lost here, not never fetched) until the pull its hint names brings it
/// back.
#[test]
fn verify_tells_a_lost_base_from_damaged_deltas_and_keeps_reporting_lost_chunks() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(4);
    let repo = TestRepo::new();
    let (versions, _) = commit_all(&repo, &files);
    repo.ok(&["push", "--remote", url, "--all-versions"]);
    let objects = repo.join(".shard/objects");
    let enc = encodings(&objects);
    // A chunk of the newest version that older deltas are built on.
    let newest = chunks(&repo.manifest("model.safetensors"));
    let base = newest
        .iter()
        .find(|id| enc.values().any(|b| b.as_deref() == Some(id.as_str())))
        .expect("a chunk of the newest version is a delta base")
        .clone();
    let on_base: Vec<&String> = enc
        .iter()
        .filter(|(_, b)| b.as_deref() == Some(base.as_str()))
        .map(|(id, _)| id)
        .collect();
    damage(&repo, &base);
    for round in 0..2 {
        let v = repo.json_exit(&["verify"], 1);
        let problems = v["problems"].as_array().expect("problems");
        for p in problems {
            let (kind, obj) = (p["kind"].as_str(), p["object"].as_str().unwrap_or(""));
            let detail = p["detail"].as_str().unwrap_or("");
            if kind == Some("corrupt-object") {
                assert!(
                    obj == base || detail.contains(&base),
                    "round {round}: only the base is corrupt: {p}"
                );
            }
            if on_base.iter().any(|d| d.as_str() == obj) {
                assert!(
                    kind == Some("missing-base")
                        && detail.contains(&base)
                        && detail.contains("nshard pull"),
                    "round {round}: an intact delta on the lost base: {p}"
                );
            }
        }
        assert!(
            problems.iter().any(|p| p["kind"] == "missing-base"),
            "round {round}: {v}"
        );
    }
    repo.ok(&["pull", "--remote", url]);
    repo.ok(&["verify"]);
    // A delta of an older version damaged: moved aside by the first verify, still a problem in
    // the second, back after the pull the hint names.
    let enc = encodings(&objects);
    // A delta nothing is built on (a chunk of the oldest version), so the first verify meets it
    // itself rather than through a delta above it.
    let lost = enc
        .iter()
        .filter(|(id, b)| b.is_some() && !enc.values().any(|x| x.as_deref() == Some(id.as_str())))
        .map(|(id, _)| id.clone())
        .min()
        .expect("a delta nothing is built on");
    damage(&repo, &lost);
    let first = repo.json_exit(&["verify"], 1);
    assert!(
        first["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["kind"] == "corrupt-object" && p["object"] == lost.as_str()),
        "{first}"
    );
    let second = repo.json_exit(&["verify"], 1);
    let p = &second["problems"][0];
    assert_eq!(p["kind"], "missing-object", "{second}");
    assert_eq!(p["object"], lost.as_str(), "{second}");
    let version = p["version"].as_str().expect("version");
    assert!(versions[..3].iter().any(|v| v == version), "{second}");
    let hint = format!("nshard pull --version {}", &version[..12]);
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains(&hint)),
        "{second}"
    );
    repo.ok(&["pull", "--remote", url, "--version", &version[..12]]);
    repo.ok(&["verify"]);
    check_out(&repo, &versions, &files, &[0, 3, 1]);
}

/// The training loop: commit and push after each checkpoint. The remote first holds every
/// version whole and no delta (each push sends the newest whole: a remote where gc never runs
/// costs what it cost before deltas); `remote gc` uploads this clone's deltas of the older versions
/// and lets them stand for the whole copies, and the remote costs what the local store costs. A
/// fresh clone still pays for one version, gets every version through the deltas, and a second gc
/// uploads and frees nothing.
#[test]
fn remote_gc_uploads_deltas_and_the_remote_costs_what_the_local_store_costs() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(6);
    let (origin, versions) = train_and_push(&files, url);
    let local = store_bytes(&origin.path().join(".shard/objects"));
    let before = store_bytes(remote.path());
    assert!(
        before as f64 > 2.0 * local as f64,
        "every version went whole: {before} vs {local}"
    );
    let deltas_dir = remote.path().join("deltas");
    assert!(
        !deltas_dir.exists() || store_bytes(&deltas_dir) == 0,
        "no delta yet"
    );
    let dry = origin.json(&["remote", "gc", url, "--grace", "0", "--dry-run"]);
    assert!(dry["superseded_objects"].as_u64().expect("n") > 0, "{dry}");
    assert!(dry["uploaded_deltas"].as_u64().expect("n") > 0, "{dry}");
    assert_eq!(
        store_bytes(remote.path()),
        before,
        "a dry run changes nothing"
    );
    let gc = origin.json(&["remote", "gc", url, "--grace", "0"]);
    assert_eq!(gc["freed_objects"], 0, "{gc}");
    assert_eq!(gc["uploaded_deltas"], dry["uploaded_deltas"], "{gc}");
    assert_eq!(gc["superseded_objects"], dry["superseded_objects"], "{gc}");
    let after = store_bytes(remote.path());
    assert!(
        after as f64 <= 1.1 * local as f64,
        "after gc the remote takes {after} bytes, the local store {local}: {gc}"
    );
    let again = origin.json(&["remote", "gc", url, "--grace", "0"]);
    assert_eq!(again["superseded_objects"], 0, "{again}");
    assert_eq!(again["uploaded_deltas"], 0, "{again}");
    assert_eq!(store_bytes(remote.path()), after);
    // The newest version alone costs what it costs stored on its own.
    let newest = origin.manifest("model.safetensors");
    let alone: u64 = chunks(&newest)
        .iter()
        .map(|c| fs::metadata(origin.object_path(c)).expect("object").len())
        .sum();
    let fresh = clone_of(&origin);
    let pulled = fresh.json(&["pull", "--remote", url]);
    assert!(
        pulled["bytes"].as_u64().expect("bytes") as f64 <= 1.3 * alone as f64,
        "{pulled} vs {alone}"
    );
    let all = clone_of(&origin);
    all.ok(&["pull", "--remote", url, "--all-versions"]);
    check_out(&all, &versions, &files, &[0, 5, 1, 4, 2, 3]);
    all.ok(&["verify", "--remote", url]);
}

/// gc uploads the deltas of older versions from a clone that has them; with a grace period they
/// stand for the whole copies only in a later run. A clone that pulled the newest version alone
/// has no delta to offer: its gc uploads and supersedes nothing, and loses nothing.
#[test]
fn remote_gc_uploads_deltas_that_stand_for_whole_copies_after_the_grace_period() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(3);
    let (origin, versions) = train_and_push(&files, url);
    let newest_only = clone_of(&origin);
    newest_only.ok(&["pull", "--remote", url]);
    let gc = newest_only.json(&["remote", "gc", url, "--grace", "0"]);
    assert_eq!(gc["uploaded_deltas"], 0, "{gc}");
    assert_eq!(gc["superseded_objects"], 0, "{gc}");

    // A push of the whole history sends no delta beside the whole copies the remote has.
    let objects = store_bytes(&remote.path().join("objects"));
    let again = origin.json(&["push", "--remote", url, "--all-versions"]);
    assert_eq!(again["deltas"], 0, "{again}");
    assert_eq!(again["objects"], 0, "{again}");
    assert_eq!(store_bytes(&remote.path().join("objects")), objects);
    assert!(
        !remote.path().join("deltas").exists() || store_bytes(&remote.path().join("deltas")) == 0
    );
    let before = store_bytes(remote.path());
    let text = origin.ok(&["remote", "gc", url, "--grace", "1h"]);
    assert!(
        text.contains("of older versions the remote held only whole: a run after the grace period (1h) lets them stand for those whole copies"),
        "{text}"
    );
    assert!(!text.contains("make redundant"), "{text}");
    assert!(store_bytes(remote.path()) > before, "the deltas went up");
    let later = origin.json(&["remote", "gc", url, "--grace", "0"]);
    assert_eq!(later["uploaded_deltas"], 0, "{later}");
    assert!(later["superseded_objects"].as_u64() > Some(0), "{later}");
    assert!(store_bytes(remote.path()) < before, "the whole copies went");
    let fresh = clone_of(&origin);
    fresh.ok(&["pull", "--remote", url, "--all-versions"]);
    check_out(&fresh, &versions, &files, &[0, 2, 1]);
}

/// A delta the remote refuses (here: its base is damaged there, so it does not decode to its id
/// against it) does not stop `remote gc`: the others go up and stand for their whole copies, the
/// refused one is named (JSON `refused_deltas`, a warning in text) and the whole copy it was to
/// stand for stays.
#[test]
fn remote_gc_goes_on_past_a_delta_the_remote_refuses() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(3);
    let (origin, _) = train_and_push(&files, url);
    // A local delta whose base is whole here (a chunk of the newest version): damage that base
    // on the remote.
    let local = encodings(&origin.path().join(".shard/objects"));
    let (id, base) = local
        .iter()
        .find_map(|(id, b)| match b {
            Some(b) if local.get(b) == Some(&None) => Some((id.clone(), b.clone())),
            _ => None,
        })
        .expect("a delta of a whole object");
    let on_remote = remote
        .path()
        .join(format!("objects/{}/{}", &base[..2], &base[2..]));
    damage_file(&on_remote, 5);

    let gc = origin.json(&["remote", "gc", url, "--grace", "0"]);
    let refused: Vec<String> = gc["refused_deltas"]
        .as_array()
        .expect("refused_deltas")
        .iter()
        .map(|r| r.as_str().expect("text").to_string())
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with(&format!("{id}.{base}"))),
        "{gc}"
    );
    assert!(gc["uploaded_deltas"].as_u64() > Some(0), "{gc}");
    assert!(gc["superseded_objects"].as_u64() > Some(0), "{gc}");
    assert!(
        remote
            .path()
            .join(format!("objects/{}/{}", &id[..2], &id[2..]))
            .exists(),
        "the whole copy the refused delta was to stand for stays"
    );
    assert!(!remote
        .path()
        .join(format!("deltas/{}/{id}.{base}", &id[..2]))
        .exists());
    // In text, a warning names it (offered again: the base is still damaged).
    let out = common::nshard(origin.path())
        .args(["remote", "gc", url, "--grace", "0"])
        .output()
        .expect("run nshard");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not upload a delta, so the whole copy it was to stand for stays")
            && err.contains(&id),
        "{err}"
    );
}

/// Flips bits of the byte `from_end` bytes before the end of the file at `p` (a store's object
/// or delta, read-only as stores leave them).
fn damage_file(p: &Path, from_end: usize) {
    let mut bytes = fs::read(p).expect("read the file to damage");
    let at = bytes.len() - from_end;
    bytes[at] ^= 0x55;
    let mut perm = fs::metadata(p).expect("md").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(p, perm).expect("chmod");
    fs::write(p, &bytes).expect("damage");
}

/// Commits `files` one by one into a fresh repository, pushing each to `url` after the version
/// before it is re-encoded (the training loop); returns the repository and the version ids.
fn train_and_push(files: &[Vec<u8>], url: &str) -> (TestRepo, Vec<String>) {
    train_and_push_with(files, url, &[])
}

/// [`train_and_push`] with `envs` set for the pushes (a token); each push sends its version
/// whole and no delta.
fn train_and_push_with(
    files: &[Vec<u8>],
    url: &str,
    envs: &[(String, String)],
) -> (TestRepo, Vec<String>) {
    let origin = TestRepo::new();
    let mut versions = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let m = commit_step(&origin, k, f);
        versions.push(m["version"].as_str().expect("version").to_string());
        origin.ok(&["repack"]);
        let pushed = run_with(&origin, envs, &["push", "--remote", url]);
        assert_eq!(pushed["deltas"], 0, "{pushed}");
    }
    (origin, versions)
}

/// A delta damaged on the remote (after gc made it the only copy of an older version's chunk):
/// pull refuses it with nothing stored and a hint that does not send the user back to pull,
/// `verify --remote --all-versions` finds it and stores a whole copy beside it, and the next gc
/// keeps that whole copy (the delta fails the check gc makes before it deletes a whole copy)
/// and deletes the damaged delta, so later runs are clean.
#[test]
fn a_bad_delta_on_a_remote_is_refused_found_by_verify_and_never_stands_for_a_whole_copy() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(3);
    let (origin, versions) = train_and_push(&files, url);
    origin.ok(&["remote", "gc", url, "--grace", "0"]);
    let list = common::walk(&remote.path().join("deltas"));
    assert!(!list.is_empty());
    let (bad, _) = &list[0];
    damage_file(Path::new(bad), 3);

    let fresh = clone_of(&origin);
    let err = fresh.fails(&["pull", "--remote", url, "--all-versions"]);
    assert!(err.contains("corrupt"), "{err}");
    assert!(
        err.contains("hint: the remote's copy is damaged") && err.contains("verify --remote"),
        "{err}"
    );
    let v = origin.json(&["verify", "--remote", url, "--all-versions"]);
    let corrupt = v["corrupt"].as_array().expect("corrupt").len();
    assert!(corrupt >= 1, "{v}");
    assert_eq!(
        v["repaired"].as_array().expect("repaired").len(),
        corrupt,
        "{v}"
    );
    origin.ok(&["verify", "--remote", url, "--all-versions"]);
    fresh.ok(&["pull", "--remote", url, "--all-versions"]);
    check_out(&fresh, &versions, &files, &[0, 2, 1]);
    let gc = origin.json(&["remote", "gc", url, "--grace", "0"]);
    assert!(
        !gc["bad_deltas"].as_array().expect("bad").is_empty(),
        "{gc}"
    );
    assert!(gc["removed_bad_deltas"].as_u64() >= Some(1), "{gc}");
    assert!(!Path::new(bad).exists(), "the damaged delta was deleted");
    origin.ok(&["verify", "--remote", url, "--all-versions"]);
    let again = origin.json(&["remote", "gc", url, "--grace", "0"]);
    assert_eq!(again["bad_deltas"], serde_json::json!([]), "{again}");
    assert_eq!(again["removed_bad_deltas"], 0, "{again}");
    let fresh = clone_of(&origin);
    fresh.ok(&["pull", "--remote", url, "--all-versions"]);
    check_out(&fresh, &versions, &files, &[2, 0, 1]);
}

/// A revert (`checkout --version OLD`, then `commit --force`) makes a new version out of chunks
/// stored as deltas of the version it replaces: repack stores them whole again, so the newest
/// version reads no deltas, and the version it replaces becomes deltas of it, with no cycle.
#[test]
fn a_reverted_version_is_stored_whole_and_the_one_it_replaces_becomes_deltas_of_it() {
    let files = series(4);
    let repo = TestRepo::new();
    let (versions, _) = commit_all(&repo, &files);
    let objects = repo.join(".shard/objects");
    let replaced = chunks(&repo.manifest("model.safetensors"));
    repo.ok(&[
        "checkout",
        "model.safetensors",
        "--version",
        &versions[1],
        "--force",
    ]);
    let before = encodings(&objects);
    repo.ok(&["commit", "--force", "-m", "revert to step 1"]);
    let reverted = chunks(&repo.manifest("model.safetensors"));
    assert!(
        reverted.iter().any(|c| depth(&before, c) > 0),
        "step 1's chunks were deltas before the revert"
    );
    repo.ok(&["repack"]);
    let after = encodings(&objects);
    for c in &reverted {
        assert_eq!(
            depth(&after, c),
            0,
            "chunk {c} of the newest version is whole"
        );
    }
    // The version it replaced (step 3) went to deltas of it where that pays.
    assert!(
        replaced.iter().any(|c| depth(&after, c) > 0),
        "step 3 became deltas of the reverted version"
    );
    check_out(&repo, &versions, &files, &[3, 0, 2, 1]);
}

/// A tensor that a step leaves unchanged (frozen for a step, as in training), and a version that
/// changes only the file's mode, keep the same chunk in two versions in a row. Chains must be
/// counted through that chunk (and through the keyframes' jumps that end below later deltas),
/// or they outgrow `delta_depth` and, once past 64 deltas, no reader follows them.
#[cfg(unix)]
#[test]
fn chains_stay_within_the_depth_when_chunks_repeat_between_versions() {
    use std::os::unix::fs::PermissionsExt;
    let mut files = series(30);
    // Step k keeps layers.0.weight (the first tensor, 1.4 MB) of step k - 1 every third step.
    let hlen = u64::from_le_bytes(files[0][..8].try_into().expect("8 bytes")) as usize;
    let first = 8 + hlen..8 + hlen + 1_400_000;
    for k in 1..files.len() {
        if k % 3 == 0 {
            let kept = files[k - 1][first.clone()].to_vec();
            files[k][first.clone()].copy_from_slice(&kept);
        }
    }
    let repo = TestRepo::new();
    repo.config_line("delta_depth = 4");
    repo.config_line("delta_background = false");
    let mut versions = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let v = commit_step(&repo, k, f);
        versions.push(v["version"].as_str().expect("version").to_string());
        if k == 14 {
            // A version that changes only the mode: every chunk repeats.
            let p = repo.join("model.safetensors");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
            let v = repo.json(&["commit", "-m", "mode"])[0].clone();
            assert_eq!(v["result"], "committed", "{v}");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    repo.ok(&["repack"]);
    let enc = encodings(&repo.join(".shard/objects"));
    let deepest = enc.keys().map(|id| depth(&enc, id)).max().unwrap_or(0);
    assert!(
        enc.values().filter(|b| b.is_some()).count() > 20,
        "the series is stored as deltas"
    );
    assert!(
        deepest <= 4,
        "a chain of {deepest} deltas with delta_depth = 4"
    );
    let order: Vec<usize> = (0..files.len()).rev().collect();
    check_out(&repo, &versions, &files, &order);
}

/// A damaged delta object found by push (the remote checks a delta against its base and refuses
/// it) is moved aside, as a damaged whole object is: `pull` then fetches a good copy, and the
/// next push goes through. Before, every push (and so every `git push`) failed on it for good.
#[test]
fn push_moves_a_damaged_delta_aside_so_pull_can_repair_it() {
    let files = series(3);
    let repo = TestRepo::new();
    repo.config_line("delta_background = false");
    commit_all(&repo, &files);
    let good = tempfile::tempdir().expect("tmp");
    let good_url = good.path().to_str().expect("utf8");
    repo.ok(&["push", "--remote", good_url, "--all-versions"]);
    let (delta, _) = some_delta(&encodings(&repo.join(".shard/objects")));
    damage(&repo, &delta);

    let fresh = tempfile::tempdir().expect("tmp");
    let fresh_url = fresh.path().to_str().expect("utf8");
    let err = repo.fails(&["push", "--remote", fresh_url, "--all-versions"]);
    assert!(
        err.contains(&delta[..12]) && err.contains("moved to .shard/corrupt/"),
        "{err}"
    );
    assert!(repo.join(".shard/corrupt").join(&delta).exists());
    repo.ok(&["pull", "--remote", good_url, "--all-versions"]);
    repo.ok(&["push", "--remote", fresh_url, "--all-versions"]);
    repo.ok(&["verify", "--all-versions"]);
}

/// A delta whose base id was damaged on disk names a base no version has, so no pull would fetch
/// it; likewise two deltas planted as each other's base. `pull --all-versions` (what the
/// checkout's hint names) or `pull --version` fetches such chunks again from the remote, keeping the local copies in
/// `.shard/corrupt/`; from a remote that lacks them it puts the copies back where they were.
#[test]
fn a_pull_fetches_again_chunks_whose_chain_cannot_be_read() {
    let remote = tempfile::tempdir().expect("tmp");
    let url = remote.path().to_str().expect("utf8");
    let files = series(3);
    let repo = TestRepo::new();
    let (versions, _) = commit_all(&repo, &files);
    repo.ok(&["push", "--remote", url, "--all-versions"]);
    let enc = encodings(&repo.join(".shard/objects"));
    let (delta, _) = some_delta(&enc);
    let p = repo.object_path(&delta);
    let good = fs::read(&p).expect("delta");
    let mut bad = good.clone();
    bad[20] ^= 0x01;
    fs::write(&p, &bad).expect("plant");
    let v0 = &versions[0];
    let err = repo.fails(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(
        err.contains("missing from the store") && err.contains("--all-versions"),
        "{err}"
    );
    assert!(repo.read("model.safetensors") == files[2]);

    // From a remote that lacks it: an error naming it, and the local copy stays in place.
    let empty = tempfile::tempdir().expect("tmp");
    let other = empty.path().to_str().expect("utf8");
    let err = repo.fails(&["pull", "--all-versions", "--remote", other]);
    assert!(err.contains(&delta[..12]), "{err}");
    assert_eq!(fs::read(&p).expect("put back"), bad);
    assert!(!repo.join(".shard/corrupt").join(&delta).exists());

    // `pull --version` of the version that needs it does it too.
    let out = pull_stderr(
        &repo,
        &["model.safetensors", "--version", v0, "--remote", url],
    );
    assert!(
        out.contains("chain cannot be read") && out.contains(&delta[..12]),
        "{out}"
    );
    assert_eq!(
        fs::read(repo.join(".shard/corrupt").join(&delta)).expect("kept"),
        bad
    );
    repo.ok(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(repo.read("model.safetensors") == files[0]);
    repo.ok(&["verify"]);

    // Two deltas planted as each other's base.
    repo.ok(&["checkout", "model.safetensors", "--force"]);
    let enc = encodings(&repo.join(".shard/objects"));
    let (a, b) = some_delta(&enc);
    let (pa, pb) = (repo.object_path(&a), repo.object_path(&b));
    let a_id = nshard_core::ObjectId::parse(&a).expect("id");
    let mut b_as_delta = fs::read(&pa).expect("a");
    b_as_delta[16..48].copy_from_slice(&a_id.as_bytes()[..]);
    fs::write(&pb, &b_as_delta).expect("plant");
    let err = repo.fails(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(err.contains("cycle"), "{err}");
    let out = pull_stderr(&repo, &["--all-versions", "--remote", url]);
    assert!(out.contains("chain cannot be read"), "{out}");
    repo.ok(&["checkout", "model.safetensors", "--version", v0, "--force"]);
    assert!(repo.read("model.safetensors") == files[0]);
    repo.ok(&["verify"]);
}

/// `nshard pull ARGS…`, asserting success; its stderr (notes go there).
fn pull_stderr(repo: &TestRepo, args: &[&str]) -> String {
    let out = common::nshard(repo.path())
        .arg("pull")
        .args(args)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}
