//! `nshard diff --stats`, `log --stats` and their HTML reports (issue 25), on model files written
//! by the formats' own writers (bf16, fp16, fp32 safetensors; a PyTorch zip; GGUF with a
//! quantized tensor): every figure is checked against numpy's own computation in the writer
//! script, and the report is opened in a real headless browser that must make no request.

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::python::python;
use common::TestRepo;
use serde_json::Value;

const FILES: [&str; 5] = [
    "bf16.safetensors",
    "f16.safetensors",
    "f32.safetensors",
    "model.pth",
    "model.gguf",
];

/// Writes version `v` of every file into `dir`; returns numpy's figures against version v - 1.
fn write_version(dir: &Path, v: u32, names: Option<&Path>) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model_formats/write_stats_pair.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(dir).arg(v.to_string());
    if let Some(n) = names {
        cmd.arg("--names").arg(n);
    }
    let out = cmd.output().expect("running the writer");
    assert!(
        out.status.success(),
        "write_stats_pair.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("writer prints JSON")
}

fn close(what: &str, got: f64, want: f64) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        err <= 1e-6 || got == want,
        "{what}: nshard says {got}, numpy {want} (relative error {err:e})"
    );
}

/// Checks the `--json` entries of one file's diff against numpy's figures.
fn check_figures(file: &str, diff: &Value, want: &Value) {
    let entries = diff["tensors"]["entries"].as_array().expect("entries");
    let by_name: BTreeMap<&str, &Value> = entries
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    let want = want.as_object().expect("figures");
    assert!(!want.is_empty(), "{file}: numpy saw no change");
    for (name, w) in want {
        let e = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{file}: {name} is not in the diff: {entries:#?}"));
        let what = format!("{file} {name}");
        assert_eq!(e["change"], "changed", "{what}");
        if let Some(blocks) = w.get("changed_blocks") {
            assert_eq!(&e["changed_blocks"], blocks, "{what}");
            assert_eq!(e["blocks"], w["blocks"], "{what}");
            assert!(
                e.get("rel_l2").is_none(),
                "{what}: a quantized tensor has no rel_l2"
            );
            continue;
        }
        for k in ["changed_elements", "elements", "non_finite"] {
            assert_eq!(e[k], w[k], "{what}: {k}");
        }
        for k in ["l2", "max_abs"] {
            close(
                &format!("{what} {k}"),
                e[k].as_f64().expect(k),
                w[k].as_f64().expect(k),
            );
        }
        match w["rel_l2"].as_f64() {
            Some(r) => close(
                &format!("{what} rel_l2"),
                e["rel_l2"].as_f64().expect("rel_l2"),
                r,
            ),
            None => assert!(e["rel_l2"].is_null(), "{what}: rel_l2 must be null: {e}"),
        }
    }
    // Every changed tensor of a float dtype has figures, and numpy knows of it.
    for e in entries {
        let name = e["name"].as_str().expect("name");
        if e["change"] == "changed" && e.get("stats_note").is_none() {
            assert!(
                want.contains_key(name),
                "{file}: nshard has figures for {name}, numpy saw no change"
            );
        }
    }
}

fn repo_with(v: u32) -> (TestRepo, Value) {
    let repo = TestRepo::new();
    write_version(repo.path(), 1, None);
    for f in FILES {
        repo.ok(&["track", f]);
    }
    repo.ok(&["commit", "-m", "step 1"]);
    let mut want = Value::Null;
    for step in 2..=v {
        want = write_version(repo.path(), step, None);
        if step < v {
            repo.ok(&["commit", "-m", &format!("step {step}")]);
        }
    }
    (repo, want)
}

#[test]
fn stats_match_numpy_for_every_float_dtype_and_format() {
    let (repo, want) = repo_with(2);
    // The working files against the committed versions.
    for f in FILES {
        let d = repo.json(&["diff", "--stats", f]);
        check_figures(f, &d, &want[f]);
    }
    // The same, between two stored versions (read from the store).
    repo.ok(&["commit", "-m", "step 2"]);
    for f in FILES {
        let d = repo.json(&["diff", "--stats", "--to", &version_of(&repo, f), f]);
        check_figures(f, &d, &want[f]);
    }
    // What numpy found notable is what a user sees: the NaN/Inf, the zero-initialised tensor,
    // the integer tensor without figures, the added tensor listed without figures.
    let d = repo.json(&[
        "diff",
        "--stats",
        "--to",
        &version_of(&repo, FILES[0]),
        FILES[0],
    ]);
    let entry = |name: &str| -> Value {
        d["tensors"]["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    assert_eq!(entry("model.layers.1.mlp.up_proj.weight")["non_finite"], 2);
    assert!(entry("lora_B.weight")["rel_l2"].is_null());
    assert!(entry("lora_B.weight")["l2"].as_f64().expect("l2") > 0.0);
    let ids = entry("token_ids");
    assert!(ids.get("changed_elements").is_none(), "{ids}");
    assert!(ids["stats_note"].as_str().expect("note").contains("I32"));
    let added = entry("model.layers.3.new_adapter.weight");
    assert_eq!(added["change"], "added");
    assert!(added.get("rel_l2").is_none(), "{added}");

    // Text: most changed first, the NaN/Inf flagged, the quantized tensor said plainly.
    let text = repo.ok(&[
        "diff",
        "--stats",
        "bf16.safetensors",
        "--to",
        &version_of(&repo, FILES[0]),
    ]);
    assert!(text.contains("NaN/Inf"), "{text}");
    let first_row = text
        .lines()
        .skip_while(|l| !l.contains("rel_l2"))
        .nth(1)
        .expect("a row");
    assert!(
        first_row.contains("model.layers.1.mlp.up_proj.weight"),
        "{text}"
    );
    let text = repo.ok(&[
        "diff",
        "--stats",
        "model.gguf",
        "--to",
        &version_of(&repo, "model.gguf"),
    ]);
    assert!(
        text.contains("quantized: 2 of 512 blocks changed"),
        "{text}"
    );

    // --tensor restricts the entries.
    let d = repo.json(&[
        "diff",
        "--stats",
        "--tensor",
        "*.q_proj.*",
        "f32.safetensors",
        "--to",
        &version_of(&repo, "f32.safetensors"),
    ]);
    let names: Vec<&str> = d["tensors"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().all(|n| n.contains("q_proj")), "{names:?}");
}

fn version_of(repo: &TestRepo, file: &str) -> String {
    let log = repo.json(&["log", file]);
    log[0]["version"].as_str().expect("version").to_string()
}

#[test]
fn stats_need_the_old_data_and_say_how_to_get_it() {
    let (repo, _) = repo_with(2);
    let f = "f32.safetensors";
    let old = repo.chunk_ids(f);
    repo.ok(&["commit", "-m", "step 2"]);
    let new = repo.chunk_ids(f);
    // The older version's own chunks are gone (as in a clone that pulled only the newest
    // version's data): no figures, a clear error naming the command that fetches them, and
    // nothing half-printed as figures.
    let mut removed = 0;
    for id in old.iter().filter(|id| !new.contains(id)) {
        std::fs::remove_file(repo.object_path(id)).expect("remove chunk");
        removed += 1;
    }
    assert!(removed > 0);
    let err = repo.fails(&["diff", "--stats", f, "--to", &version_of(&repo, f)]);
    assert!(err.contains("not in the local store"), "{err}");
    assert!(err.contains("pull --all-versions"), "{err}");
    // The diff without figures needs only the manifests, and still works.
    repo.ok(&["diff", f, "--to", &version_of(&repo, f)]);
    let log = repo.ok(&["log", "--stats", f]);
    assert!(log.contains("not in the local store"), "{log}");
}

#[test]
fn log_stats_follow_the_run_and_match_numpy() {
    let (repo, _) = repo_with(2);
    repo.ok(&["commit", "-m", "step 2"]);
    let want3 = write_version(repo.path(), 3, None);
    repo.ok(&["commit", "-m", "step 3"]);
    let log = repo.json(&["log", "--stats", "f32.safetensors"]);
    let versions = log.as_array().expect("versions");
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[2]["unavailable"], "first version");
    // The newest version's figures are the diff's, tensor by tensor.
    let newest: BTreeMap<String, Value> = versions[0]["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .filter(|t| t["change"] == "changed")
        .map(|t| (t["name"].as_str().expect("name").to_string(), t.clone()))
        .collect();
    let mut entries = Value::Array(newest.values().cloned().collect());
    let wrapped = serde_json::json!({"tensors": {"entries": entries.take()}});
    check_figures("f32.safetensors (log)", &wrapped, &want3["f32.safetensors"]);
    // The whole-model figure: ‖Δ‖ over the changed tensors, ‖old‖ over every tensor.
    let total_diff: f64 = want3["f32.safetensors"]
        .as_object()
        .expect("figures")
        .values()
        .map(|f| f["l2"].as_f64().expect("l2").powi(2))
        .sum();
    let rel = versions[0]["rel_l2"].as_f64().expect("rel_l2");
    let old_norm = total_diff.sqrt() / rel;
    assert!(old_norm > 10.0, "{old_norm}");
    let most = &versions[0]["most_changed"]["name"];
    let want_most = want3["f32.safetensors"]
        .as_object()
        .expect("figures")
        .iter()
        .filter(|(_, f)| f["rel_l2"].is_f64())
        .max_by(|a, b| {
            a.1["rel_l2"]
                .as_f64()
                .expect("r")
                .total_cmp(&b.1["rel_l2"].as_f64().expect("r"))
        })
        .map(|(n, _)| n.clone())
        .expect("a tensor");
    assert_eq!(most, &Value::String(want_most));
    let text = repo.ok(&["log", "--stats", "f32.safetensors"]);
    assert!(
        text.contains("step 3") && text.contains("first version"),
        "{text}"
    );
    // The HTML log: one row per version.
    let html = repo.join("log.html");
    repo.ok(&[
        "log",
        "--html",
        html.to_str().expect("utf-8"),
        "f32.safetensors",
    ]);
    let page = std::fs::read_to_string(&html).expect("report");
    for v in versions {
        let id = &v["version"].as_str().expect("id")[..12];
        assert!(page.contains(id), "{id} not in the log report");
    }
}

/// Counts connections to a loopback port until dropped.
struct Listener {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Listener {
    fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(300);
            while Instant::now() < end {
                match l.accept() {
                    Ok((mut s, _)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        let mut buf = [0u8; 1024];
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = s.read(&mut buf);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Listener { port, hits }
    }
}

fn chromium(args: &[&str], page: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the test run keeps the screenshot (an artifact of the run, not committed).
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

#[test]
fn html_report_in_a_headless_browser_names_every_tensor_and_requests_nothing() {
    if !common::tool_works(
        "html report",
        "chromium",
        &["--headless", "--no-sandbox", "--version"],
    ) {
        return;
    }
    let listener = Listener::start();
    let port = listener.port;
    // Hostile tensor names: markup that would load from the listener, or run script that does.
    let names = format!(
        "model.layers.0.<img src=http://127.0.0.1:{port}/img>.weight\n\
         model.layers.1.\"><script>fetch('http://127.0.0.1:{port}/script')</script>.weight\n\
         <svg onload=\"fetch('http://127.0.0.1:{port}/svg')\"></svg>\n"
    );
    let repo = TestRepo::new();
    let names_file = repo.join("names.txt");
    std::fs::write(&names_file, &names).expect("names");
    write_version(repo.path(), 1, Some(&names_file));
    repo.ok(&["track", "bf16.safetensors"]);
    repo.ok(&["commit", "-m", "step 1"]);
    write_version(repo.path(), 2, Some(&names_file));
    let html = repo.join("report.html");
    repo.ok(&[
        "diff",
        "--html",
        html.to_str().expect("utf-8"),
        "bf16.safetensors",
    ]);

    // A control page without the report's policy does reach the listener: the check can fail.
    let control = repo.join("control.html");
    std::fs::write(
        &control,
        format!("<!DOCTYPE html><img src=\"http://127.0.0.1:{port}/control\">"),
    )
    .expect("control");
    chromium(&["--dump-dom"], &control);
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener.hits.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Chromium has exited: whatever else it connected (a preconnect, a retry) is in the backlog;
    // let the listener count it before taking the figure the report is compared with.
    std::thread::sleep(Duration::from_secs(1));
    let control_hits = listener.hits.load(Ordering::SeqCst);
    assert!(
        control_hits > 0,
        "the control page made no request: the listener sees nothing"
    );

    let dom = chromium(&["--dump-dom"], &html);
    let shot = artifacts().join("diff-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--hide-scrollbars",
            "--window-size=1200,1600",
            &format!("--screenshot={}", shot.display()),
        ],
        &html,
    );
    // As above: any connection the report made is counted within the listener's polling interval.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        listener.hits.load(Ordering::SeqCst),
        control_hits,
        "the report made a request"
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        shot.display()
    );
    // The page's own script ran (the policy allows it by hash), the heat map is there, and every
    // tensor is named, escaped: no element came from a name.
    assert!(
        dom.contains("data-sortable=\"ready\""),
        "the sort script did not run"
    );
    assert!(dom.contains("id=\"heatmap\""), "no heat map");
    let manifest = repo.manifest("bf16.safetensors");
    for t in manifest["tensors"].as_array().expect("tensors") {
        let name = t["name"].as_str().expect("name");
        let escaped = name
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            dom.contains(&escaped) || dom.contains(name),
            "{name} is not in the report"
        );
    }
    assert!(!dom.contains("<img"), "a name became an element");
    assert!(!dom.contains("<script>fetch"), "a name became a script");
    // The policy itself.
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(page.contains("default-src 'none'"), "no CSP");
}

#[test]
fn html_reports_refuse_what_they_cannot_draw() {
    let repo = TestRepo::new();
    repo.write("data.bin", &[7u8; 4096]);
    repo.ok(&["track", "data.bin"]);
    repo.ok(&["commit", "-m", "one"]);
    repo.write("data.bin", &[8u8; 4096]);
    let html = repo.join("r.html");
    let err = repo.fails(&["diff", "--html", html.to_str().expect("utf-8"), "data.bin"]);
    assert!(err.contains("no tensor-level diff"), "{err}");
    assert!(
        !html.exists(),
        "a report was written for a file without tensors"
    );
    let err = repo.fails(&["diff", "--stats", "--tensor", "[", "data.bin"]);
    assert!(err.contains("invalid tensor pattern"), "{err}");
    // A directory unit has no tensors: the flags are not silently dropped.
    repo.write("set/a.json", b"{}");
    repo.ok(&["track", "--dir", "set"]);
    repo.ok(&["commit", "-m", "set"]);
    repo.write("set/a.json", b"{\"k\": 1}");
    let out = repo.ok(&["diff", "--stats", "set"]);
    assert!(out.contains("modified  set/a.json"), "{out}");
    assert!(
        out.contains("--stats and --tensor look inside model files"),
        "{out}"
    );
    let err = repo.fails(&["diff", "--html", html.to_str().expect("utf-8"), "set"]);
    assert!(err.contains("for a directory unit use --json"), "{err}");
}

/// Peak resident memory of `nshard ARGS` in `dir` (the child's `ru_maxrss`, read by Python's
/// `resource` module after it exits), in bytes.
fn peak_rss_of(dir: &Path, args: &[&str]) -> u64 {
    let code = "import resource, subprocess, sys\n\
                r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
                assert r.returncode == 0, r.returncode\n\
                print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = Command::new(python())
        .current_dir(dir)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("nshard-tests-no-user-config"),
        )
        .args(["-c", code, env!("CARGO_BIN_EXE_nshard")])
        .args(args)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "nshard {args:?} under the RSS probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ru_maxrss");
    kib * 1024
}

#[test]
fn stats_stream_both_versions_in_bounded_memory() {
    // Two versions of a 128 MiB bf16 file (16 tensors of 4 M elements), every weight moved: the
    // figures read all of both, yet hold only a window of each at a time.
    let repo = TestRepo::new();
    let write = |seed: u32| {
        let code = "import numpy as np, json, struct, sys\n\
                    rng = np.random.default_rng(1)\n\
                    n, k = 4 << 20, 16\n\
                    base = rng.integers(0x3c00, 0x3f80, size=n, dtype=np.uint16)\n\
                    h = {f'model.layers.{i}.mlp.weight': {'dtype': 'BF16', 'shape': [n], 'data_offsets': [2*n*i, 2*n*(i+1)]} for i in range(k)}\n\
                    hb = json.dumps(h).encode(); hb += b' ' * ((8 - len(hb) % 8) % 8)\n\
                    step = int(sys.argv[2])\n\
                    with open(sys.argv[1], 'wb') as f:\n\
                    \x20   f.write(struct.pack('<Q', len(hb)) + hb)\n\
                    \x20   for i in range(k):\n\
                    \x20       f.write((base + np.uint16(step * (i + 1))).tobytes())";
        let st = Command::new(python())
            .args(["-c", code])
            .arg(repo.join("big.safetensors"))
            .arg(seed.to_string())
            .status()
            .expect("python");
        assert!(st.success());
    };
    repo.config_line("delta = false");
    write(0);
    repo.ok(&["track", "big.safetensors"]);
    repo.ok(&["commit", "-m", "one"]);
    write(1);
    repo.ok(&["commit", "-m", "two"]);
    let v = version_of(&repo, "big.safetensors");
    let peak = peak_rss_of(
        repo.path(),
        &["diff", "--stats", "--json", "--to", &v, "big.safetensors"],
    );
    eprintln!(
        "diff --stats of two 128 MiB versions: peak RSS {} MiB",
        peak >> 20
    );
    assert!(
        peak < 200 << 20,
        "diff --stats of two 128 MiB versions peaked at {} MiB",
        peak >> 20
    );
    let d = repo.json(&["diff", "--stats", "--to", &v, "big.safetensors"]);
    let entries = d["tensors"]["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 16);
    assert!(
        entries
            .iter()
            .all(|e| e["changed_elements"] == 4 << 20
                && e["rel_l2"].as_f64().is_some_and(|r| r > 0.0))
    );
}
