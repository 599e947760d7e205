//! Text and tabular data (CSV, JSON Lines) are cut with the small text chunk parameters, so rows
//! inserted into a dataset re-store about those rows, not megabytes around them.

mod common;

use common::TestRepo;

/// `rows` CSV rows (with a header), row `i` made from `i` and a seed.
fn csv_rows(range: std::ops::Range<u64>, seed: u64) -> String {
    range
        .map(|i| {
            let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
            format!(
                "{i},{},user{},{}.{:02},\"{} {}\"\n",
                1_700_000_000 + i * 13,
                x % 100_000,
                x % 1000,
                x % 100,
                ["view", "click", "buy", "share"][(x % 4) as usize],
                x % 7919
            )
        })
        .collect()
}

#[test]
fn rows_inserted_in_a_csv_restore_little() {
    let repo = TestRepo::new();
    let rows = 120_000u64;
    let v1 = format!("id,ts,user,amount,comment\n{}", csv_rows(0..rows, 1));
    repo.write("data.csv", v1.as_bytes());
    repo.ok(&["track", "data.csv"]);
    repo.ok(&["commit", "-m", "v1"]);
    let m: serde_json::Value =
        serde_json::from_slice(&repo.read("data.csv.shard.json")).expect("manifest");
    assert_eq!(m["chunking"]["avg_size"], 65536, "{}", m["chunking"]);

    // 1 % of the rows inserted as one block in the middle.
    let mid = v1[v1.len() / 2..].find('\n').expect("line") + v1.len() / 2 + 1;
    let block = csv_rows(rows..rows + rows / 100, 2);
    let v2 = format!("{}{}{}", &v1[..mid], block, &v1[mid..]);
    repo.write("data.csv", v2.as_bytes());
    let c = &repo.json(&["commit", "-m", "v2"])[0];
    let new = c["new_bytes"].as_u64().expect("new bytes");
    // The block and at most the two small chunks it lands between (maximum 256 KiB each).
    assert!(new >= block.len() as u64, "{c}");
    assert!(
        new <= block.len() as u64 + 512 * 1024,
        "{c}: file {}",
        v2.len()
    );

    // Binary data keeps the configured 1/4/16 MiB parameters.
    repo.write("blob.bin", &common::random_bytes(3 << 20, 5));
    repo.ok(&["track", "blob.bin"]);
    repo.ok(&["commit", "-m", "blob"]);
    let m: serde_json::Value =
        serde_json::from_slice(&repo.read("blob.bin.shard.json")).expect("manifest");
    assert_eq!(m["chunking"]["avg_size"], 4 << 20, "{}", m["chunking"]);
}
