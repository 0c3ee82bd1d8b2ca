"""`python -m neuralab` runs the command-line interface."""

import sys

from neuralab.cli import main

if __name__ == "__main__":
    sys.exit(main())
