"""Make the collection importable as ansible_collections.rehab.scale, and the shared test helpers."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE.parent / "collections", HERE):  # the collection, and rehab_testlib
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
