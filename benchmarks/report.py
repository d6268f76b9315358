"""Writing a benchmark's JSON report, the same way for every script."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_json(path: Path, document: Any, indent: int = 2) -> Path:
    """Write ``document`` as JSON to ``path`` (its folders made as needed) and say so on stderr, so that the table
    on stdout stays clean for pasting. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=indent) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path
