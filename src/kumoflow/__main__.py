"""``python -m kumoflow``: the same as the ``kumoflow`` command."""

import sys

from kumoflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
