//! A checkout killed with SIGKILL at each step of its write (strace injects the signal at a chosen
//! system call): the target is the old or the new version, never a mix; what the killed run left
//! behind is ignored by status and commit and removed by the next checkout.

mod common;

use std::fs;
use std::process::Command;

use common::{random_bytes, TestRepo};
use nshard_core::ObjectId;

const MIB: usize = 1024 * 1024;

fn leftovers(repo: &TestRepo) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(repo.join("m"))
        .expect("ls m")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".nshard-tmp-"))
        .collect();
    v.sort();
    v
}

#[test]
fn checkout_killed_at_any_step_leaves_the_old_or_the_new_file() {
    if !common::strace_works("checkout_killed_at_any_step_leaves_the_old_or_the_new_file") {
        return;
    }
    // Two 12 MiB versions (checkout writes 8 MiB windows: two writes, then fsync, rename, fsync of
    // the directory).
    let repo = TestRepo::new();
    let old = random_bytes(12 * MIB, 1);
    let new = random_bytes(12 * MIB, 2);
    repo.write("m/model.bin", &old);
    repo.ok(&["track", "m"]);
    repo.ok(&["commit", "-m", "v1"]);
    let v1 = ObjectId::of(&repo.read("m/model.bin.shard.json")).to_hex();
    repo.write("m/model.bin", &new);
    repo.ok(&["commit", "-m", "v2"]);
    let bin = assert_cmd::cargo::cargo_bin("nshard");
    // (system calls, which one to kill at, whether the new file is in place by then)
    let cases = [
        ("pwrite64", 2, false),
        ("fsync", 1, false),
        ("rename,renameat,renameat2", 1, false),
        ("fsync", 2, true),
    ];
    for (calls, when, renamed) in cases {
        // The work tree holds v1; the manifest names v2: `nshard checkout` brings the file up to
        // date.
        repo.ok(&["checkout", "m/model.bin", "--version", &v1[..12]]);
        assert_eq!(repo.read("m/model.bin"), old);
        let st = Command::new("strace")
            .args(["-f", "-o", "/dev/null", "-e", &format!("trace={calls}")])
            .args(["-e", &format!("inject={calls}:signal=KILL:when={when}")])
            .arg(&bin)
            .arg("checkout")
            .current_dir(repo.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("strace runs");
        assert!(
            !st.status.success(),
            "{calls}#{when}: checkout was not killed: {}",
            String::from_utf8_lossy(&st.stdout)
        );
        let now = repo.read("m/model.bin");
        let expect = if renamed { &new } else { &old };
        assert!(
            now == *expect,
            "{calls}#{when}: the file is not the {} version",
            if renamed { "new" } else { "old" }
        );
        let left = leftovers(&repo);
        // Killed before the rename, the temporary file is still there; after it, it is the file.
        assert_eq!(
            left.len(),
            usize::from(!renamed),
            "{calls}#{when}: {left:?}"
        );
        // status and commit ignore the leftover (it sits in a tracked directory).
        let st = repo.json(&["status"]);
        assert_eq!(st.as_array().map(Vec::len), Some(1), "{st}");
        let state = if renamed { "unchanged" } else { "outdated" };
        assert_eq!(st[0]["state"], state, "{calls}#{when}: {st}");
        if !renamed {
            let err = repo.fails(&["commit", "-m", "nothing new"]);
            assert!(err.contains("nshard checkout"), "{err}");
        } else {
            let r = repo.json(&["commit", "-m", "nothing new"]);
            assert_eq!(r.as_array().map(Vec::len), Some(1), "{r}");
            assert_eq!(r[0]["result"], "unchanged", "{r}");
        }
        // The next checkout finishes the job and removes the leftovers.
        let out = repo.ok(&["checkout"]);
        assert!(
            out.contains(if renamed { "up to date" } else { "checked out" }),
            "{out}"
        );
        assert!(repo.read("m/model.bin") == new, "{calls}#{when}: not v2");
        assert_eq!(leftovers(&repo), Vec::<String>::new(), "{calls}#{when}");
    }
}
