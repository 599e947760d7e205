"""``python -m shard.server.app [OPTIONS]``: start a NeuroShard server.

This is a shortcut for ``nshard serve [OPTIONS]``, the real command: it listens on
127.0.0.1:8000 and keeps its objects in the directory ``nshard-store`` (created when missing, and
kept out of git by a ``.gitignore`` inside it) unless told otherwise, and every option is passed on
unchanged.
"""

import sys

from neuroshard import run

HELP_NOTE = """\
python -m shard.server.app [OPTIONS] runs `nshard serve [OPTIONS]`: the real command is
`nshard serve`, and every option below is passed on to it unchanged. Defaults: listen on
127.0.0.1:8000, store objects in the directory ./nshard-store (created when missing, with a
.gitignore inside so that git never sees it).
"""


def main() -> None:
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        sys.stdout.write(HELP_NOTE + "\n")
    run(["serve", *args])


if __name__ == "__main__":
    main()
