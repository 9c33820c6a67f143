"""``python -m fineclass``: the same command as ``fineclass`` (useful where the venv's bin folder is not on PATH)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
