"""End-to-end tests of the installed NeuroShard package (standard library only).

Run from the repository root, after installing the wheel into the active environment:

    python -m unittest discover tests

They drive the installed `nshard` and `neuroshard` commands, `python -m neuroshard` and
`python -m shard.server.app` in temporary directories, with the server on a loopback port.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request
from pathlib import Path

# Generous bounds for a busy 2-core machine: they only stop a hung test, they time nothing.
COMMAND_TIMEOUT = 300
SERVER_START_TIMEOUT = 120
SEED_PORT = 8000


def installed(name: str) -> str:
    """The path of an installed command; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"`{name}` is not on PATH: install the package first (e.g. `pip install neuroshard`, "
            "or the wheel built by `.ci/run`) in the environment that runs these tests"
        )
    return path


def clean_env(home: Path) -> dict:
    """The environment for the commands: no tokens or user configuration from the caller, a fixed
    git identity, no pager or colours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NSHARD_", "GIT_", "XDG_")) and k != "RUST_LOG"
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_AUTHOR_NAME="Quickstart",
        GIT_AUTHOR_EMAIL="quickstart@example.invalid",
        GIT_COMMITTER_NAME="Quickstart",
        GIT_COMMITTER_EMAIL="quickstart@example.invalid",
        GIT_CONFIG_NOSYSTEM="1",
        NO_COLOR="1",
    )
    return env


def model_bytes(size: int, seed: int) -> bytes:
    """Deterministic test data: pseudo-random blocks with some repeats (so chunks deduplicate)."""
    rng = random.Random(seed)
    block = 256 * 1024
    pool = [bytes(rng.getrandbits(8) for _ in range(64)) * (block // 64) for _ in range(4)]
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.25:
            out += pool[rng.randrange(len(pool))]
        else:
            out += rng.getrandbits(block * 8).to_bytes(block, "little")
    return bytes(out[:size])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Server:
    """`python -m shard.server.app [OPTIONS]` in the background, in `workdir` (its default store
    goes there). Without options: the seed's port 8000 when it is free, else a free port picked by
    the server."""

    def __init__(self, workdir: Path, env: dict, options: "list | None" = None):
        base = [sys.executable, "-m", "shard.server.app"]
        if options is not None:
            line = self._start(base + options, workdir, env)
        elif port_is_free(SEED_PORT):
            line = self._start(base, workdir, env)
            if not line and self.proc.poll() is not None:
                # Port 8000 was taken between the check and the start: any free port will do.
                self.stop()
                line = self._start(base + ["--listen", "127.0.0.1:0"], workdir, env)
        else:
            line = self._start(base + ["--listen", "127.0.0.1:0"], workdir, env)
        if not line.startswith("listening on http://"):
            self.stop()
            raise AssertionError(
                f"the server did not start (first stdout line {line!r}); stderr:\n"
                + "".join(self.stderr_lines)
            )
        self.port = int(line.strip().rsplit(":", 1)[1])
        # As the seed writes it: the server is reached as localhost.
        self.url = f"http://localhost:{self.port}"

    def _start(self, args: list, workdir: Path, env: dict) -> str:
        """Starts the server; returns its first stdout line ("" if it printed none in time)."""
        self.proc = subprocess.Popen(
            args,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list = []
        self._drain_stderr = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain_stderr.start()
        first_line: list = []
        reader = threading.Thread(target=lambda: first_line.append(self.proc.stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(SERVER_START_TIMEOUT)
        return first_line[0] if first_line else ""

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self._drain_stderr.join(10)
        self.proc.stderr.close()


class Session(unittest.TestCase):
    """A temporary directory with its own HOME and helpers to run commands in it."""

    def setUp(self) -> None:
        self.nshard = installed("nshard")
        tmp = tempfile.TemporaryDirectory(prefix="nshard-pytest-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        (self.root / "home").mkdir()
        self.env = clean_env(self.root / "home")

    def run_cmd(self, cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            list(args),
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if ok and r.returncode != 0:
            self.fail(
                f"`{' '.join(args)}` exited {r.returncode} in {cwd}\n"
                f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
            )
        return r

    def start_server(self) -> Server:
        workdir = self.root / "server"
        workdir.mkdir()
        server = Server(workdir, self.env)
        self.addCleanup(server.stop)
        return server


class SeedQuickstart(Session):
    """The seed's quickstart, command for command."""

    def alice_commits_and_pushes(self) -> tuple:
        """init → git-init → track → commit → git commit → server → push. Returns alice's
        directory, the model bytes and the server."""
        alice = self.root / "alice"
        alice.mkdir()
        self.run_cmd(alice, "git", "init", "-q")
        self.run_cmd(alice, "nshard", "init")
        self.run_cmd(alice, "nshard", "git-init")
        data = model_bytes(12 * 1024 * 1024 + 12345, seed=1)
        (alice / "models").mkdir()
        (alice / "models" / "resnet50.pth").write_bytes(data)
        self.run_cmd(alice, "nshard", "track", "models/resnet50.pth")
        commit = self.run_cmd(alice, "nshard", "commit", "-m", "Initial checkpoint")
        self.assertIn("committed version", commit.stdout)
        self.run_cmd(alice, "git", "add", "models/resnet50.pth.shard.json")
        self.run_cmd(alice, "git", "commit", "-m", "Add model")
        server = self.start_server()
        push = self.run_cmd(alice, "nshard", "push", "--remote", server.url)
        self.assertIn(f"push to {server.url}", push.stdout)
        self.assertRegex(push.stdout, r"sent [1-9][0-9]* objects")
        return alice, data, server

    def test_push_then_pull_into_a_clone_with_nshard_init(self) -> None:
        alice, data, server = self.alice_commits_and_pushes()
        bob = self.root / "bob"
        self.run_cmd(self.root, "git", "clone", "-q", str(alice), str(bob))
        self.assertFalse((bob / "models" / "resnet50.pth").exists())
        self.run_cmd(bob, "nshard", "init")
        self.run_cmd(
            bob, "nshard", "pull", "models/resnet50.pth.shard.json", "--remote", server.url
        )
        self.run_cmd(bob, "nshard", "checkout", "models/resnet50.pth.shard.json")
        self.assertEqual((bob / "models" / "resnet50.pth").read_bytes(), data)

    # The seed's colleague flow: the clone has only the committed manifest, no `.shard/` (the
    # seed never commits .shard/config.toml); pull and checkout create the local store.
    def test_seed_quickstart_word_for_word(self) -> None:
        alice, data, server = self.alice_commits_and_pushes()
        # "on another machine, after git pull": a second clone of alice's repository.
        bob = self.root / "bob"
        self.run_cmd(self.root, "git", "clone", "-q", str(alice), str(bob))
        self.assertFalse((bob / "models" / "resnet50.pth").exists())
        self.run_cmd(
            bob, "nshard", "pull", "models/resnet50.pth.shard.json", "--remote", server.url
        )
        self.run_cmd(bob, "nshard", "checkout", "models/resnet50.pth.shard.json")
        self.assertEqual((bob / "models" / "resnet50.pth").read_bytes(), data)


class Commands(Session):
    """`neuroshard`, `python -m neuroshard` and `python -m shard.server.app` are `nshard`."""

    def test_neuroshard_and_python_m_neuroshard_run_nshard(self) -> None:
        installed("neuroshard")
        version = self.run_cmd(self.root, "nshard", "--version").stdout
        self.assertRegex(version, r"^nshard \d+\.\d+\.\d+")
        self.assertEqual(self.run_cmd(self.root, "neuroshard", "--version").stdout, version)
        self.assertEqual(
            self.run_cmd(self.root, sys.executable, "-m", "neuroshard", "--version").stdout,
            version,
        )
        for cmd in (["neuroshard"], [sys.executable, "-m", "neuroshard"]):
            help_text = self.run_cmd(self.root, *cmd, "help").stdout
            for word in ("init", "track", "commit", "push", "pull", "checkout", "serve"):
                self.assertIn(word, help_text)

    def test_arguments_and_exit_status_pass_through(self) -> None:
        want = self.run_cmd(self.root, "nshard", "status", ok=False)
        self.assertNotEqual(want.returncode, 0)
        for cmd in (["neuroshard"], [sys.executable, "-m", "neuroshard"]):
            got = self.run_cmd(self.root, *cmd, "status", ok=False)
            self.assertEqual(got.returncode, want.returncode)
            self.assertEqual(got.stderr, want.stderr)
        repo = self.root / "repo"
        repo.mkdir()
        self.run_cmd(repo, "neuroshard", "init")
        self.run_cmd(repo, sys.executable, "-m", "neuroshard", "-C", str(repo), "status")
        self.assertTrue((repo / ".shard" / "config.toml").is_file())

    def test_server_app_help_names_nshard_serve(self) -> None:
        r = self.run_cmd(self.root, sys.executable, "-m", "shard.server.app", "--help")
        self.assertIn("nshard serve", r.stdout)
        self.assertIn("--listen", r.stdout)
        self.assertIn("--store", r.stdout)

    def test_server_app_passes_options_on(self) -> None:
        store = self.root / "elsewhere"
        workdir = self.root / "server"
        workdir.mkdir()
        server = Server(workdir, self.env, ["--listen", "127.0.0.1:0", "--store", str(store)])
        self.addCleanup(server.stop)
        self.assertNotEqual(server.port, 0)
        port = server.port
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/health", timeout=COMMAND_TIMEOUT
        ) as resp:
            self.assertEqual(resp.status, 200)
            self.assertIn(b'"protocol":1', resp.read())
        # The store given on the command line is used, not the default ./nshard-store.
        self.assertTrue(store.is_dir())
        self.assertFalse((workdir / "nshard-store").exists())


if __name__ == "__main__":
    unittest.main()
