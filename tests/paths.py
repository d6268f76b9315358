"""Where the shared fixtures and data live: ../shared beside the checkout, or $FASTSAM_SHARED."""

import os
from pathlib import Path

SHARED = Path(os.environ.get("FASTSAM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures"
DATA = SHARED / "data"
