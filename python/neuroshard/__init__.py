"""NeuroShard: Git for AI models.

This package ships the ``nshard`` command-line program (a native binary). ``neuroshard`` and
``python -m neuroshard`` run the same program with the same arguments.
"""

from __future__ import annotations

import os
import sys
import sysconfig

__all__ = ["find_nshard_bin"]

_EXE = "nshard" + (sysconfig.get_config_var("EXE") or "")


def find_nshard_bin() -> str:
    """Returns the path of the ``nshard`` binary installed with this package.

    Looks where pip puts scripts for this interpreter (a virtual environment's ``bin``, the user
    scheme's ``~/.local/bin``), then next to the package (``pip install --target``), then on PATH.
    """
    candidates = [os.path.join(sysconfig.get_path("scripts"), _EXE)]
    # `pip install --user`: the user scheme's scripts directory (e.g. ~/.local/bin).
    if hasattr(sysconfig, "get_preferred_scheme"):
        user_scheme = sysconfig.get_preferred_scheme("user")
    else:  # Python < 3.10
        user_scheme = "nt_user" if os.name == "nt" else "posix_user"
    try:
        candidates.append(os.path.join(sysconfig.get_path("scripts", scheme=user_scheme), _EXE))
    except KeyError:
        pass
    # `pip install --target DIR` puts the package in DIR and the binary in DIR/bin.
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates.append(os.path.join(pkg_parent, "bin", _EXE))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    from shutil import which

    found = which(_EXE)
    if found:
        return found
    raise FileNotFoundError(
        "the nshard binary was not found (looked in: " + ", ".join(candidates) + ", and PATH); "
        "reinstall the package: pip install --force-reinstall neuroshard"
    )


def run(args: "list[str]") -> None:
    """Replaces this process with ``nshard ARGS…`` (so exit status, signals and the terminal are
    the binary's own). On Windows, where exec is emulated, runs it as a child and exits with its
    status."""
    try:
        exe = find_nshard_bin()
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    argv = [exe, *args]
    if os.name == "nt":
        import subprocess

        sys.exit(subprocess.call(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, argv)
    raise AssertionError("unreachable")  # pragma: no cover
