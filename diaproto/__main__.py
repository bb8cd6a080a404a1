"""``python -m diaproto``: the same command line as the ``diaproto`` console script."""

from __future__ import annotations

import sys

from diaproto.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
