import sys

from pipeline.cli import main

if __name__ == "__main__":  # a multiprocessing child imports this module again (as __mp_main__): it must not run
    sys.exit(main())
