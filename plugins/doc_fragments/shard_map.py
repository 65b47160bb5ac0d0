# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The shard map option, shared by the shard plugins' documentation."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  shards:
    description:
      - The shard map, an ordered list of shards.
      - Each shard has C(name) (unique), C(min_id) and C(max_id) (positive integers, C(min_id <= max_id)).
        C(max_id) absent or null means open-ended; only the last shard may be.
      - The map must start at ID 1 and be contiguous (no gap, no overlap).
      - C(capacity) (optional, a positive integer) is the rows the shard should hold, for placement
        and balance; by default the size of its range. An open-ended shard has none unless given, and
        a closed shard's capacity may not exceed its range.
      - Any other keys of a shard (the PostgreSQL group, Redis host and backup target that serve it)
        pass through untouched.
      - Defaults to the scaling guide's map, C(shard1) 1-100,000, C(shard2) 100,001-200,000 and
        C(shard3) 200,001 and up.
    type: list
    elements: dict
"""
