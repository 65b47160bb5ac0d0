# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Which vault files of an inventory are not encrypted (used by the rehab.scale.vault_check action)."""

import os
from pathlib import Path

HEADER = b"$ANSIBLE_VAULT;"
NAMES = ("vault.yml", "vault.yaml", "vault")


def plaintext_vault_files(inventory_dirs):
    """Sorted paths of group_vars/host_vars files named vault* (vault.yml, vault.yaml, vault, or any
    file under a vault/ directory) whose content does not start with the ansible-vault header."""
    found = set()
    for directory in {Path(d) for d in inventory_dirs if d}:
        for sub in ("group_vars", "host_vars"):
            base = directory / sub
            if not base.is_dir():
                continue
            # os.walk, not Path.rglob: group_vars/all is often a link (the lab's is), and it is followed.
            for root, _dirs, files in os.walk(base, followlinks=True):
                for name in files:
                    path = Path(root) / name
                    if name in NAMES or "vault" in path.relative_to(base).parts[:-1]:
                        with path.open("rb") as handle:
                            if not handle.read(len(HEADER)).startswith(HEADER):
                                found.add(str(path))
    return sorted(found)
