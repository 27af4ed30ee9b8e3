"""`python -m azr ...`: the `azr` command (azr/cli.py), for when the console script is not on PATH."""
import sys

from .cli import main

sys.exit(main())
