//! The Python interpreter the model format tests run their writers in: the one named by
//! `NSHARD_TEST_PYTHON` (`.ci/run` creates it), else a virtual environment created under the
//! target directory on first use, with `gguf safetensors numpy`. A missing Python or package
//! fails the test; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A Python interpreter that imports gguf, safetensors and numpy.
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let check = |py: &Path| {
            Command::new(py)
                .args(["-c", "import gguf, safetensors, numpy"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if let Some(py) = std::env::var_os("NSHARD_TEST_PYTHON") {
            let py = PathBuf::from(py);
            assert!(
                check(&py),
                "NSHARD_TEST_PYTHON={} cannot import gguf, safetensors and numpy",
                py.display()
            );
            return py;
        }
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-formats-venv");
        let py = venv.join("bin").join("python");
        if !check(&py) {
            let run = |cmd: &mut Command| {
                let out = cmd.output().expect("running python3");
                assert!(
                    out.status.success(),
                    "{cmd:?} failed (the model format tests need python3 with venv and pip, and \
                     network access to install gguf, safetensors and numpy, or \
                     NSHARD_TEST_PYTHON set): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
            run(Command::new(&py).args([
                "-m",
                "pip",
                "install",
                "-q",
                "gguf",
                "safetensors",
                "numpy",
            ]));
            assert!(check(&py), "the new venv cannot import the writers");
        }
        py
    })
}
