"""`python -m edge` (the bundle's ./run.sh): the command line in edge/cli.py."""
import sys

from edge.cli import main

if __name__ == "__main__":
    sys.exit(main())
