//! docs/guarantees.md names the test that checks each promise. This test reads the page and
//! fails on a name that points nowhere (a test renamed, moved or removed), so the page cannot
//! drift from the suite.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The crate a table cell names before `at` (`nshard-core` …), else the binary's.
fn crate_of(cell: &str, at: usize) -> &'static str {
    let before = &cell[..at];
    [
        "nshard-core",
        "nshard-server",
        "nshard-remote",
        "nshard-bench",
    ]
    .into_iter()
    .filter_map(|c| before.rfind(&format!("`{c}`")).map(|i| (i, c)))
    .max()
    .map_or("nshard", |(_, c)| c)
}

/// Whether `reference` (as written in a cell: `file.rs::name`, `tests/file.rs::name`,
/// `module::tests::name`, `module::tests`, `tests/file.rs`) names something that exists.
fn resolves(root: &Path, krate: &str, reference: &str) -> Result<(), String> {
    let base = root.join("crates").join(krate);
    let (file, name) = match reference.split_once(".rs") {
        Some((file, rest)) => {
            let file = if file.starts_with("tests/") || file.starts_with("src/") {
                base.join(format!("{file}.rs"))
            } else {
                base.join("tests").join(format!("{file}.rs"))
            };
            (file, rest.strip_prefix("::"))
        }
        None => {
            // A path inside the crate's source: module::…::tests[::name].
            let parts: Vec<&str> = reference.split("::").collect();
            let t = parts
                .iter()
                .position(|p| *p == "tests")
                .ok_or_else(|| format!("`{reference}` names neither a file nor a tests module"))?;
            let module = parts[..t].join("/");
            let src = base.join("src");
            let file = [
                src.join(format!("{module}.rs")),
                src.join(&module).join("mod.rs"),
                src.join(&module).join("tests.rs"),
            ]
            .into_iter()
            .find(|f| f.is_file())
            .ok_or_else(|| format!("`{reference}`: no module {module} in {krate}"))?;
            (file, parts.get(t + 1).copied())
        }
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("`{reference}`: {} ({e})", file.display()))?;
    if let Some(name) = name.filter(|n| !n.is_empty() && *n != "…") {
        if !text.contains(&format!("fn {name}(")) {
            return Err(format!(
                "`{reference}`: no test `{name}` in {}",
                file.display()
            ));
        }
    }
    Ok(())
}

#[test]
fn every_test_the_guarantees_page_names_exists() {
    let root = workspace();
    let page = std::fs::read_to_string(root.join("docs/guarantees.md")).expect("guarantees.md");
    let mut checked = 0;
    let mut broken = Vec::new();
    for line in page.lines().filter(|l| l.starts_with('|')) {
        // The last cell of a table row names the tests.
        let cells: Vec<&str> = line.trim_end_matches('|').split('|').collect();
        let Some(cell) = cells.last() else { continue };
        let mut rest = *cell;
        let mut offset = 0;
        while let Some(start) = rest.find('`') {
            let Some(len) = rest[start + 1..].find('`') else {
                break;
            };
            let token = &rest[start + 1..start + 1 + len];
            let at = offset + start;
            if token.contains(".rs") || token.contains("::tests") {
                checked += 1;
                if let Err(e) = resolves(&root, crate_of(cell, at), token) {
                    broken.push(e);
                }
            }
            offset += start + len + 2;
            rest = &rest[start + len + 2..];
        }
    }
    assert!(
        checked > 40,
        "only {checked} test names found: is the page's format the same?"
    );
    assert!(
        broken.is_empty(),
        "docs/guarantees.md names tests that do not exist:\n{}",
        broken.join("\n")
    );
}
