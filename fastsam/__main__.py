import sys

from fastsam.cli import main

sys.exit(main())
