#!/usr/bin/python
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: shard_assignment
short_description: Assign beneficiaries to shards by ID, and check or plan the shard layout
version_added: 0.1.0
description:
  - Answers "where does this beneficiary live, and is the layout healthy?" for the shard map of the
    rehab-agi platform.
  - C(validate) checks the map; C(assign) gives the shard of each ID and the count per shard;
    C(balance) measures how evenly rows are spread; C(plan_split) returns the map with one shard split
    in two; C(place) names the shard a new beneficiary goes to (the lowest fill ratio, rows over
    capacity, among the shards that can take one), as the rehab-agi service decides it.
  - Pure computation on the controller or any host; it never moves data, so C(changed) is always false.
  - The same logic backs the C(rehab.scale.shard_for) filter.
extends_documentation_fragment:
  - rehab.scale.shard_map
options:
  action:
    description: What to compute.
    type: str
    choices: [validate, assign, balance, plan_split, place]
    default: assign
  ids:
    description:
      - Beneficiary IDs for O(action=assign). Positive integers; numeric strings such as C("42") are accepted.
      - A list; ad hoc, C(ids=[123456,200001]) or C(ids=123456,200001) also work.
    type: raw
  mapping:
    description:
      - Whether O(action=assign) returns the shard of every ID (RV(assignments)) or only the counts.
      - V(auto) returns it for at most O(mapping_limit) IDs.
    type: str
    choices: [auto, always, never]
    default: auto
  mapping_limit:
    description: Largest input for which O(mapping=auto) returns the per-ID mapping.
    type: int
    default: 1000
  counts:
    description: Rows per shard for O(action=balance) and O(action=place), one entry for every shard of the map.
    type: dict
  unavailable:
    description: For O(action=place), shards that cannot be written now; they are skipped.
    type: list
    elements: str
  tolerance:
    description:
      - For O(action=balance) when every shard has a capacity (its range's size, or the one the map
        configures), how far the fullest shard's fill ratio (rows over capacity) may pass the
        emptiest one's (0.2 means 20 points of capacity). Judged on fills, a fresh layout whose
        first shard holds every row so far is balanced while that shard is still mostly empty.
      - Otherwise (an open-ended shard without a capacity), how far above the mean the largest shard
        may be (0.2 means up to 1.2 times the mean).
      - The shard balance alert of rehab.scale.monitoring applies the same rule to the same number.
    type: float
    default: 0.2
  capacity:
    description:
      - For O(action=balance), rows one shard may hold; shards above it are reported (as are shards
        above their own capacity).
    type: int
  shard:
    description: Name of the shard to split for O(action=plan_split).
    type: str
  boundary:
    description:
      - For O(action=plan_split), the first ID of the new upper shard.
      - Give this or O(histogram).
    type: raw
  histogram:
    description:
      - For O(action=plan_split), buckets C({min_id, max_id, count}) of the shard's IDs; the split
        falls on the bucket edge that halves the rows most evenly.
    type: list
    elements: dict
  new_name:
    description: Name of the new upper shard for O(action=plan_split); default the next free C(shardN).
    type: str
attributes:
  check_mode:
    support: full
    details: Nothing is ever changed, so check mode returns the same result.
  diff_mode:
    support: none
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Where does beneficiary 123456 live?
  rehab.scale.shard_assignment:
    ids: [123456]
  register: where
  # where.shard.name == "shard2"

- name: Check an inventory's shard map before deploying it
  rehab.scale.shard_assignment:
    action: validate
    shards: "{{ rehab_shards }}"

- name: Count a batch per shard (no per-ID list for large inputs)
  rehab.scale.shard_assignment:
    ids: "{{ imported_ids }}"
    mapping: never

- name: Is the layout balanced?
  rehab.scale.shard_assignment:
    action: balance
    counts: {shard1: 98000, shard2: 87000, shard3: 161000}
    capacity: 150000
    tolerance: 0.25

- name: Where would a new beneficiary go?
  rehab.scale.shard_assignment:
    action: place
    shards: "{{ rehab_shards }}"
    counts: {shard1: 98000, shard2: 41000, shard3: 12000}
  register: placed
  # placed.shard == "shard3" when its capacity is 100000 (fill 0.12)

- name: Plan splitting the open-ended shard at 300,001
  rehab.scale.shard_assignment:
    action: plan_split
    shard: shard3
    boundary: 300001

# Ad hoc, for on-call:
#   ansible localhost -m rehab.scale.shard_assignment -a 'ids=[123456]'
"""

RETURN = r"""
valid:
  description: The map passed every check (O(action=validate)).
  returned: action is validate
  type: bool
  sample: true
shard_count:
  description: Number of shards in the map.
  returned: action is validate
  type: int
  sample: 3
open_ended:
  description: The last shard has no upper bound.
  returned: action is validate
  type: bool
  sample: true
max_id:
  description: Highest ID the map covers, null when open-ended.
  returned: action is validate
  type: int
  sample: null
shard_map:
  description: The validated map (validate) or the proposed new map (plan_split), passthrough keys kept.
  returned: action is validate or plan_split
  type: list
  elements: dict
  sample: [{"name": "shard1", "min_id": 1, "max_id": 100000}]
total:
  description: Number of IDs assigned.
  returned: action is assign
  type: int
  sample: 1
counts:
  description: IDs per shard, every shard listed.
  returned: action is assign
  type: dict
  sample: {"shard1": 0, "shard2": 1, "shard3": 0}
mapping_included:
  description: Whether RV(assignments) was returned.
  returned: action is assign
  type: bool
  sample: true
assignments:
  description: The shard of each ID, in input order.
  returned: action is assign and mapping_included
  type: list
  elements: dict
  sample: [{"id": 123456, "shard": "shard2"}]
shard:
  description:
    - The whole shard entry (with its passthrough keys) when exactly one ID was assigned.
    - The name of the chosen shard for O(action=place).
  returned: action is assign and exactly one ID was given, or action is place
  type: raw
  sample: {"name": "shard2", "min_id": 100001, "max_id": 200000}
total_rows:
  description: Sum of the row counts.
  returned: action is balance
  type: int
  sample: 346000
mean_rows:
  description: Mean rows per shard.
  returned: action is balance
  type: float
  sample: 115333.3
largest:
  description: Name of the shard with the most rows.
  returned: action is balance
  type: str
  sample: shard3
imbalance_ratio:
  description: Rows of the largest shard divided by the mean (1.0 is perfectly even).
  returned: action is balance
  type: float
  sample: 1.396
tolerance:
  description: The tolerance applied.
  returned: action is balance
  type: float
  sample: 0.25
capacity:
  description: The capacity applied, null when none was given.
  returned: action is balance
  type: int
  sample: 150000
over_capacity:
  description: Shards holding more rows than O(capacity).
  returned: action is balance
  type: list
  elements: str
  sample: ["shard3"]
judged_by:
  description: C(fill) when every shard has a capacity (the fill spread is judged), else C(rows).
  returned: action is balance
  type: str
  sample: fill
fill_spread:
  description: Fill ratio of the fullest shard minus that of the emptiest; null when judged by rows.
  returned: action is balance
  type: float
  sample: 0.61
balanced:
  description: Imbalance (fill spread, else rows over the mean) within tolerance and no shard over capacity.
  returned: action is balance
  type: bool
  sample: false
reasons:
  description: Why the layout is not balanced, one line per finding (empty when balanced).
  returned: action is balance
  type: list
  elements: str
  sample: ["shard3 holds 161000 rows, over the capacity of 150000"]
fill:
  description: Fill ratio (rows over capacity) of the chosen shard.
  returned: action is place
  type: float
  sample: 0.12
fills:
  description: Fill ratio of every shard with a capacity.
  returned: action is place or balance
  type: dict
  sample: {"shard1": 0.98, "shard2": 0.41, "shard3": 0.12}
split:
  description:
    - The split itself, C(shard), C(boundary), the C(lower) and C(upper) parts.
    - C(rows) per part when planned from a histogram.
  returned: action is plan_split
  type: dict
  sample: {"shard": "shard3", "boundary": 300001,
           "lower": {"name": "shard3", "min_id": 200001, "max_id": 300000},
           "upper": {"name": "shard4", "min_id": 300001, "max_id": null}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rehab.scale.plugins.module_utils.shard_map import (
    ACTIONS,
    DEFAULT_MAPPING_LIMIT,
    DEFAULT_TOLERANCE,
    MAPPING_MODES,
    ShardMapError,
    run,
)

ARGUMENT_SPEC = {
    "action": {"type": "str", "choices": list(ACTIONS), "default": "assign"},
    "shards": {"type": "list", "elements": "dict"},
    "ids": {"type": "raw"},
    "mapping": {"type": "str", "choices": list(MAPPING_MODES), "default": "auto"},
    "mapping_limit": {"type": "int", "default": DEFAULT_MAPPING_LIMIT},
    "counts": {"type": "dict"},
    "unavailable": {"type": "list", "elements": "str"},
    "tolerance": {"type": "float", "default": DEFAULT_TOLERANCE},
    "capacity": {"type": "int"},
    "shard": {"type": "str"},
    "boundary": {"type": "raw"},
    "histogram": {"type": "list", "elements": "dict"},
    "new_name": {"type": "str"},
}


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[
            ("action", "assign", ("ids",)),
            ("action", "balance", ("counts",)),
            ("action", "place", ("counts",)),
            ("action", "plan_split", ("shard",)),
            ("action", "plan_split", ("boundary", "histogram"), True),
        ],
        mutually_exclusive=[("boundary", "histogram")],
        supports_check_mode=True,
    )
    # Read-only in both modes: check mode runs the same computation and reports the same result.
    try:
        result = run(module.params)
    except ShardMapError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
