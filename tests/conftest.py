"""Make the collection importable as ansible_collections.rehab.scale (collections/ links to the repo)."""

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parent.parent / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
