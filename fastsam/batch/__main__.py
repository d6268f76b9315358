import sys

from fastsam.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
