"""``python -m neuroshard ARGS…`` and the ``neuroshard`` command: run ``nshard ARGS…``."""

import sys

from neuroshard import run


def main() -> None:
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
