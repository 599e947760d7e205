//! The modules of `nshard-core` form layers with a direction: a module may import (`crate::…`)
//! only modules of lower layers. This test reads every source file's `crate::` paths and fails on
//! any import that runs sideways or back up, so no cycle can come back unnoticed.
//!
//! The table below is the layer map of docs/architecture.md; a new module must be placed in it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom layer first. Modules in one layer may not import each other.
const LAYERS: &[&[&str]] = &[
    // Identities and the vocabulary every layer shares.
    &["portable", "progress", "id"],
    &["error", "protocol"],
    &["path", "retry", "blocking", "buffers"],
    // Bytes: files, objects, chunks, the local store, the remote contract, file formats.
    &["fsutil", "codec"],
    &["chunk", "store", "staged"],
    &["formats", "remote"],
    &["manifest", "outcome"],
    // The one read -> cut -> hash -> store pipeline.
    &["ingest"],
    // The repository handle: root, config, credentials, remotes, work-tree manifests, stat cache.
    &["repo"],
    // Engines over the handle: directory units; git (reachability, ignore blocks, hooks).
    &["dirunit", "git"],
    // The commands, one file each, over files and units.
    &["ops"],
    // Moving objects: push, pull, repair.
    &["transfer"],
];

/// Items defined in lib.rs itself that any module may use.
const ROOT_ITEMS: &[&str] = &["crash_point", "testing"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src/") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments and string literals blanked out (so `"http://…"` and doc links do
/// not count as code).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"'
                    && b[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '"') or a lifetime ('a): skip a literal whole.
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

/// The first path segment of every `crate::…` path in `code`, including each item of a
/// `crate::{a::x, b}` group.
fn crate_targets(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(pos) = rest.find("crate::") {
        let before = rest[..pos].chars().last();
        rest = &rest[pos + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // e.g. `nshard_core::` or `$crate::`
        }
        let rest_trim = rest.trim_start();
        if let Some(group) = rest_trim.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = vec![];
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            items.push(std::mem::take(&mut item));
                            break;
                        }
                    }
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ if depth == 1 => item.push(ch),
                    _ => {}
                }
            }
            for it in items {
                let seg = first_ident(it.trim());
                if !seg.is_empty() && seg != "self" {
                    found.insert(seg);
                }
            }
        } else {
            let seg = first_ident(rest_trim);
            if !seg.is_empty() {
                found.insert(seg);
            }
        }
    }
    found
}

fn first_ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    files.sort();
    let mut modules = BTreeSet::new();
    let mut problems = vec![];
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        if first == "lib.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        modules.insert(module.clone());
        let Some(own) = layer_of(&module) else {
            problems.push(format!("module `{module}` is in no layer of LAYERS"));
            continue;
        };
        let code = code_only(&std::fs::read_to_string(file).expect("reading a source file"));
        for target in crate_targets(&code) {
            if target == module || ROOT_ITEMS.contains(&target.as_str()) {
                continue;
            }
            match layer_of(&target) {
                Some(l) if l < own => {}
                Some(l) => problems.push(format!(
                    "{}: `{module}` (layer {own}) imports `{target}` (layer {l}): {}",
                    rel.display(),
                    if l == own { "same layer" } else { "runs back up" }
                )),
                None => problems.push(format!(
                    "{}: `crate::{target}` is neither a module nor a lib.rs item (use the module path, not a re-export)",
                    rel.display()
                )),
            }
        }
    }
    for layer in LAYERS {
        for m in *layer {
            if !modules.contains(*m) {
                problems.push(format!("LAYERS names `{m}`, which is not a module"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} import(s) break the layers:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_reader_sees_through_strings_comments_and_groups() {
    let code = code_only(
        "use crate::{a::X, b::{Y, Z}, self};\n// crate::c\nlet s = \"crate::d\"; let u = r#\"crate::e\"#;\nlet ch = '\"'; crate::f::g(); nshard_core::h; $crate::i",
    );
    let got: Vec<_> = crate_targets(&code).into_iter().collect();
    assert_eq!(got, ["a", "b", "f"]);
}
