# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Shard map logic shared by the shard_assignment module and the shard_for filter.

A shard map is an ordered list of ``{name, min_id, max_id, capacity}``; ``max_id`` absent or
``None`` means open-ended (only the last shard may be). ``capacity`` (optional) is the rows the shard
should hold: by default the size of its range; an open-ended shard has none unless it is given, and
then takes part in placement only when it is. Any other keys of a shard (the hosts that serve it, its
backup target, ...) pass through untouched.

Everything here is pure: no I/O, no Ansible objects. Errors raise ShardMapError with one message
naming what is wrong and where.

This file is also the ``rehab_shard_map`` module of the ``rehab-shard-map`` distribution
(scripts/build-release.sh builds it from this source), which rehab-agi imports: one implementation
serves the module, the filter and the service.
"""

from __future__ import annotations

import itertools
import json
import re
from bisect import bisect_right

# The scaling guide's layout.
DEFAULT_SHARDS = (
    {"name": "shard1", "min_id": 1, "max_id": 100000},
    {"name": "shard2", "min_id": 100001, "max_id": 200000},
    {"name": "shard3", "min_id": 200001, "max_id": None},
)

ACTIONS = ("validate", "assign", "balance", "plan_split", "place")
# The coordinator's foreign server of a shard is this prefix plus the shard's name
# (pg_shard_coordinator creates them; the service names the shard behind a failed cross-shard read).
COORDINATOR_SERVER_PREFIX = "rehab_shard_"
# The inventory groups of a shard follow one rule: "<shard name>_<kind>" (shard2_postgresql holds
# shard 2's PostgreSQL nodes, shard2_redis its Redis hosts); the PostgreSQL group's name is also its
# cluster name and its pgBackRest stanza. `-e shard=shard2` in the on-call playbooks resolves by it.
GROUP_KINDS = ("postgresql", "redis")
_GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MAPPING_MODES = ("auto", "always", "never")
DEFAULT_MAPPING_LIMIT = 1000
DEFAULT_TOLERANCE = 0.2

_DIGITS = re.compile(r"^\s*[+-]?[0-9]+\s*$")


class ShardMapError(ValueError):
    """Invalid shard map, ID or action input; the message says what and where."""


def parse_id(value, where="id"):
    """Return ``value`` as a positive int, or raise ShardMapError naming ``where``.

    Integers and strings of decimal digits (``"42"``) are accepted; booleans, floats, other strings
    and anything below 1 are not.
    """
    if isinstance(value, bool):
        raise ShardMapError(f"{where}: {value!r} is a boolean, not a beneficiary ID")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        raise ShardMapError(f"{where}: {value!r} is not an integer")
    elif isinstance(value, str):
        if not _DIGITS.match(value):
            raise ShardMapError(f"{where}: {value!r} is not a number")
        number = int(value)
    else:
        raise ShardMapError(f"{where}: {value!r} ({type(value).__name__}) is not an integer")
    if number < 0:
        raise ShardMapError(f"{where}: {number} is negative; beneficiary IDs start at 1")
    if number == 0:
        raise ShardMapError(f"{where}: 0 is not a valid beneficiary ID; IDs start at 1")
    return number


def coerce_ids(value):
    """Return ``value`` as a list of raw IDs.

    A list passes through. A string, as ``ansible -m ... -a 'ids=[123456]'`` sends it, may be a JSON
    list (``"[123456, 200001]"``) or comma-separated (``"123456,200001"``); a single number is a list of one.
    """
    if isinstance(value, (list, tuple)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ShardMapError(f"ids: {value!r} is not a list of IDs") from None
            if not isinstance(parsed, list):
                raise ShardMapError(f"ids: {value!r} is not a list of IDs")
            return parsed
        return [part for part in text.split(",")] if text else []
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    raise ShardMapError(f"ids must be a list of beneficiary IDs, got {type(value).__name__}")


def _ids(lo, hi):
    return f"ID {lo}" if lo == hi else f"IDs {lo}-{hi}"


def _label(index, shard):
    name = shard.get("name") if isinstance(shard, dict) else None
    return f"shards[{index}] ({name})" if isinstance(name, str) and name else f"shards[{index}]"


class ShardMap:
    """A validated shard map: contiguous from 1, unique names, only the last shard open-ended."""

    __slots__ = ("capacities", "last_max", "mins", "names", "shards")

    def __init__(self, shards):
        self.shards = _validate(shards)
        self.mins = [s["min_id"] for s in self.shards]
        self.names = [s["name"] for s in self.shards]
        self.last_max = self.shards[-1]["max_id"]
        self.capacities = {s["name"]: capacity_of(s) for s in self.shards}

    def bounds(self, name):
        """(min_id, max_id) of the shard called ``name``; max_id None when open-ended."""
        shard = self.shards[self.names.index(name)]
        return shard["min_id"], shard["max_id"]

    def index_of(self, beneficiary_id):
        """Index of the shard holding a (parsed, positive) ID."""
        if self.last_max is not None and beneficiary_id > self.last_max:
            raise ShardMapError(
                f"ID {beneficiary_id} is beyond the last shard ({self.names[-1]} ends at {self.last_max})"
            )
        return bisect_right(self.mins, beneficiary_id) - 1

    def shard_for(self, value, where="id"):
        return self.names[self.index_of(parse_id(value, where))]

    def describe(self):
        """The map as plain data (copies; passthrough keys kept)."""
        return [dict(s) for s in self.shards]


def group_of(shard, kind):
    """The inventory group holding a shard's ``kind`` hosts (GROUP_KINDS): ``<name>_<kind>``.

    ``shard`` is a shard's name or its map entry.
    """
    name = shard.get("name") if isinstance(shard, dict) else shard
    if kind not in GROUP_KINDS:
        raise ShardMapError(f"group kind {kind!r}: expected one of {', '.join(GROUP_KINDS)}")
    if not isinstance(name, str) or not _GROUP_NAME.match(name):
        raise ShardMapError(
            f"shard name {name!r}: a shard's name starts its inventory groups' names ({kind}: <name>_{kind}), "
            "so it must be a letter followed by letters, digits or underscores"
        )
    return f"{name}_{kind}"


def capacity_of(shard):
    """Rows a (validated) shard should hold: its ``capacity``, else the size of its closed range,
    else None (an open-ended shard without one)."""
    if shard.get("capacity") is not None:
        return shard["capacity"]
    if shard["max_id"] is None:
        return None
    return shard["max_id"] - shard["min_id"] + 1


def _capacity(label, raw, lo, hi, problems):
    """A shard's capacity as a positive int no larger than its closed range; None (with the problem
    recorded) otherwise."""
    try:
        capacity = _non_negative_int(raw, f"{label} capacity")
    except ShardMapError as err:
        problems.append(str(err))
        return None
    if capacity == 0:
        problems.append(f"{label}: capacity 0 leaves no room; give a positive row count")
        return None
    if lo is not None and hi is not None and lo <= hi and capacity > hi - lo + 1:
        problems.append(f"{label}: capacity {capacity} is more than the {hi - lo + 1} IDs of its range {lo}-{hi}")
        return None
    return capacity


def _normalise_shard(index, shard, seen, problems):
    """Check one shard's own fields; return it with parsed bounds (None where invalid)."""
    label = _label(index, shard)
    if not isinstance(shard, dict):
        problems.append(f"{label}: each shard must be a mapping with name, min_id and max_id")
        return None
    name = shard.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{label}: name must be a non-empty string, got {name!r}")
    elif name in seen:
        problems.append(f"{label}: duplicate name {name!r} (also shards[{seen[name]}])")
    else:
        seen[name] = index
    entry = dict(shard)
    for key in ("min_id", "max_id"):
        raw = shard.get(key)
        entry[key] = None
        if raw is None:
            if key == "min_id":
                problems.append(f"{label}: min_id is missing")
            continue
        try:
            entry[key] = parse_id(raw, f"{label} {key}")
        except ShardMapError as err:
            problems.append(str(err))
    lo, hi = entry["min_id"], entry["max_id"]
    if lo is not None and hi is not None and lo > hi:
        problems.append(f"{label}: min_id {lo} is greater than max_id {hi}")
    if shard.get("capacity") is not None:
        entry["capacity"] = _capacity(label, shard["capacity"], lo, hi, problems)
    return entry


def _contiguity_problems(normalised, shards):
    """Gaps, overlaps and open-ended shards that are not last, between neighbours."""
    problems = []
    for index, (prev, cur) in enumerate(itertools.pairwise(normalised), start=1):
        if prev is None or cur is None:
            continue
        prev_label, label = _label(index - 1, prev), _label(index, cur)
        if prev["max_id"] is None:
            # None is either open-ended (reported here) or an invalid max_id (reported already).
            if shards[index - 1].get("max_id") is None:
                problems.append(f"{prev_label} is open-ended (no max_id) but is not the last shard; {label} follows it")
            continue
        if cur["min_id"] is None:
            continue
        expected = prev["max_id"] + 1
        if cur["min_id"] > expected:
            problems.append(
                f"gap between {prev_label} and {label}: {_ids(expected, cur['min_id'] - 1)} belong to no shard"
            )
        elif cur["min_id"] < expected:
            overlap_end = prev["max_id"] if cur["max_id"] is None else min(prev["max_id"], cur["max_id"])
            problems.append(
                f"overlap between {prev_label} and {label}: {_ids(cur['min_id'], overlap_end)} belong to both"
            )
    first = normalised[0]
    if first is not None and first["min_id"] is not None and first["min_id"] != 1:
        problems.append(f"{_label(0, first)}: the map must start at ID 1, not {first['min_id']}")
    return problems


def _validate(shards):
    if shards is None or (isinstance(shards, (list, tuple)) and len(shards) == 0):
        raise ShardMapError("shard map is empty: give at least one shard")
    if not isinstance(shards, (list, tuple)):
        raise ShardMapError(f"shard map must be a list of shards, got {type(shards).__name__}")
    problems = []
    seen = {}
    normalised = [_normalise_shard(index, shard, seen, problems) for index, shard in enumerate(shards)]
    problems.extend(_contiguity_problems(normalised, shards))
    if problems:
        raise ShardMapError("invalid shard map: " + "; ".join(problems))
    return normalised


def load(shards=None):
    """Validate ``shards`` (the guide's map when None) and return a ShardMap."""
    return ShardMap(list(DEFAULT_SHARDS) if shards is None else shards)


def validate(shard_map):
    return {
        "valid": True,
        "shard_count": len(shard_map.shards),
        "open_ended": shard_map.last_max is None,
        "max_id": shard_map.last_max,
        "shard_map": shard_map.describe(),
    }


def assign(shard_map, ids, mapping="auto", mapping_limit=DEFAULT_MAPPING_LIMIT):
    """Count IDs per shard; list each ID's shard when ``mapping`` asks for it.

    One bisect over the shard lower bounds per ID: time grows with len(ids) * log(shards), memory
    with the shards (plus the per-ID list only when the mapping is returned).
    """
    if mapping not in MAPPING_MODES:
        raise ShardMapError(f"mapping must be one of {', '.join(MAPPING_MODES)}, got {mapping!r}")
    ids = coerce_ids(ids)
    include = mapping == "always" or (mapping == "auto" and len(ids) <= mapping_limit)
    mins, names, last_max = shard_map.mins, shard_map.names, shard_map.last_max
    counts = [0] * len(mins)
    picked = [] if include else None
    find = bisect_right
    limit = last_max if last_max is not None else float("inf")
    for position, raw in enumerate(ids):
        # Fast path for plain positive ints; everything else goes through parse_id for its message.
        value = raw if type(raw) is int and raw > 0 else parse_id(raw, f"ids[{position}]")
        if value > limit:
            raise ShardMapError(
                f"ids[{position}]: ID {value} is beyond the last shard ({names[-1]} ends at {last_max})"
            )
        index = find(mins, value) - 1
        counts[index] += 1
        if picked is not None:
            picked.append((value, index))
    result = {
        "total": len(ids),
        "counts": dict(zip(names, counts, strict=True)),
        "mapping_included": include,
    }
    if include:
        result["assignments"] = [{"id": value, "shard": names[index]} for value, index in picked]
        if len(picked) == 1:
            result["shard"] = shard_map.describe()[picked[0][1]]
    return result


def _non_negative_int(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ShardMapError(f"{where}: {value!r} is not a row count")
    if isinstance(value, str) and not _DIGITS.match(value):
        raise ShardMapError(f"{where}: {value!r} is not a row count")
    number = int(value)
    if number < 0:
        raise ShardMapError(f"{where}: row count {number} is negative")
    return number


def balance(shard_map, counts, tolerance=DEFAULT_TOLERANCE, capacity=None):
    """How evenly rows are spread, and whether the layout is balanced.

    When every shard has a capacity (its range's size, or the one configured), the judgement is the
    fill spread: the fullest shard's fill ratio (rows over capacity) minus the emptiest one's, within
    ``tolerance``. Judged this way a fresh layout whose first shard holds every row so far is
    balanced while that shard is still mostly empty; placement (the lowest fill first) keeps it so.
    Without capacities for every shard it is the rows of the largest shard over the mean, within
    ``1 + tolerance``. Either way a shard holding more than ``capacity`` rows (when given), or than
    its own capacity, makes the layout unbalanced.
    """
    if not isinstance(counts, dict) or not counts:
        raise ShardMapError("counts must map every shard name to its row count")
    unknown = sorted(set(counts) - set(shard_map.names))
    missing = [name for name in shard_map.names if name not in counts]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown shard(s) {', '.join(map(str, unknown))}")
        if missing:
            parts.append(f"no count for {', '.join(missing)}")
        raise ShardMapError("counts do not match the shard map: " + "; ".join(parts))
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ShardMapError(f"tolerance must be a number >= 0, got {tolerance!r}")
    if capacity is not None:
        capacity = _non_negative_int(capacity, "capacity")
        if capacity == 0:
            raise ShardMapError("capacity: 0 rows per shard leaves no room; give a positive capacity")
    rows = {name: _non_negative_int(counts[name], f"counts[{name}]") for name in shard_map.names}
    total = sum(rows.values())
    mean = total / len(rows)
    largest_name = max(shard_map.names, key=lambda n: rows[n])
    ratio = (rows[largest_name] / mean) if mean > 0 else 1.0
    own = shard_map.capacities
    fills = {name: rows[name] / own[name] for name in shard_map.names if own[name] is not None}
    by_fill = len(fills) == len(rows)
    reasons = []
    if by_fill:
        fullest = max(shard_map.names, key=lambda n: fills[n])
        emptiest = min(shard_map.names, key=lambda n: fills[n])
        spread = fills[fullest] - fills[emptiest]
        within = spread <= tolerance + 1e-12
        if not within:
            reasons.append(
                f"{fullest} is {fills[fullest]:.1%} full and {emptiest} {fills[emptiest]:.1%}: "
                f"a fill spread of {spread:.3f}, over the tolerance of {tolerance:.3f}"
            )
    else:
        spread = None
        within = ratio <= 1.0 + tolerance
        if not within:
            reasons.append(
                f"{largest_name} holds {rows[largest_name]} rows, {ratio:.3f}x the mean of {mean:.1f} "
                f"(tolerance {1.0 + tolerance:.3f}x)"
            )
    limits = {n: min((c for c in (capacity, own[n]) if c is not None), default=None) for n in shard_map.names}
    over = [n for n in shard_map.names if limits[n] is not None and rows[n] > limits[n]]
    reasons.extend(f"{name} holds {rows[name]} rows, over the capacity of {limits[name]}" for name in over)
    return {
        "total_rows": total,
        "mean_rows": mean,
        "largest": largest_name,
        "imbalance_ratio": round(ratio, 6),
        "judged_by": "fill" if by_fill else "rows",
        "fills": {n: round(f, 6) for n, f in fills.items()},
        "fill_spread": None if spread is None else round(spread, 6),
        "tolerance": tolerance,
        "capacity": capacity,
        "over_capacity": over,
        "balanced": within and not over,
        "reasons": reasons,
    }


def _boundary_from_histogram(shard, histogram, where="histogram"):
    """Pick the bucket edge that splits the shard's rows closest to half. Returns (boundary, left, right)."""
    if not isinstance(histogram, (list, tuple)) or not histogram:
        raise ShardMapError(f"{where} must be a non-empty list of {{min_id, max_id, count}} buckets")
    buckets = []
    for index, bucket in enumerate(histogram):
        at = f"{where}[{index}]"
        if not isinstance(bucket, dict):
            raise ShardMapError(f"{at}: each bucket must be a mapping with min_id, max_id and count")
        lo = parse_id(bucket.get("min_id"), f"{at} min_id")
        hi = parse_id(bucket.get("max_id"), f"{at} max_id")
        if lo > hi:
            raise ShardMapError(f"{at}: min_id {lo} is greater than max_id {hi}")
        if lo < shard["min_id"] or (shard["max_id"] is not None and hi > shard["max_id"]):
            raise ShardMapError(f"{at}: IDs {lo}-{hi} fall outside shard {shard['name']}")
        buckets.append((lo, hi, _non_negative_int(bucket.get("count"), f"{at} count")))
    buckets.sort()
    for (_, prev_hi, _), (lo, _, _) in itertools.pairwise(buckets):
        if lo <= prev_hi:
            raise ShardMapError(f"{where}: buckets overlap at ID {lo}")
    total = sum(count for _, _, count in buckets)
    best = None
    running = 0
    for lo, _, count in buckets:
        if lo > shard["min_id"]:
            candidate = (abs(2 * running - total), lo, running, total - running)
            if best is None or candidate < best:
                best = candidate
        running += count
    if best is None:
        raise ShardMapError(
            f"{where}: no bucket starts after ID {shard['min_id']}, so there is no edge to split {shard['name']} at"
        )
    return best[1], best[2], best[3]


def plan_split(shard_map, shard, boundary=None, histogram=None, new_name=None):
    """A new map with ``shard`` split in two at ``boundary`` (the first ID of the new shard).

    Only a plan: nothing is moved. The split shard keeps its name and passthrough keys for the lower
    part; the upper part gets ``new_name`` (default: the next free shardN).
    """
    if shard not in shard_map.names:
        raise ShardMapError(f"shard {shard!r} is not in the map ({', '.join(shard_map.names)})")
    if (boundary is None) == (histogram is None):
        raise ShardMapError("plan_split needs exactly one of boundary or histogram")
    index = shard_map.names.index(shard)
    target = shard_map.shards[index]
    rows = None
    if boundary is not None:
        boundary = parse_id(boundary, "boundary")
    else:
        boundary, left_rows, right_rows = _boundary_from_histogram(target, histogram)
        rows = {"lower": left_rows, "upper": right_rows}
    if boundary <= target["min_id"] or (target["max_id"] is not None and boundary > target["max_id"]):
        upper = target["max_id"] if target["max_id"] is not None else "no upper bound"
        raise ShardMapError(
            f"boundary {boundary} does not split {shard} ({target['min_id']}-{upper}): "
            f"it must be above {target['min_id']}" + (f" and at most {target['max_id']}" if target["max_id"] else "")
        )
    if new_name is None:
        numbers = [int(m.group(1)) for n in shard_map.names if (m := re.fullmatch(r"shard([0-9]+)", n))]
        new_name = f"shard{max(numbers, default=0) + 1}"
    elif not isinstance(new_name, str) or not new_name.strip():
        raise ShardMapError(f"new_name must be a non-empty string, got {new_name!r}")
    if new_name in shard_map.names:
        raise ShardMapError(f"new_name {new_name!r} is already a shard in the map")
    lower = dict(target, max_id=boundary - 1)
    upper = {"name": new_name, "min_id": boundary, "max_id": target["max_id"]}
    new_shards = [*shard_map.describe()[:index], lower, upper, *shard_map.describe()[index + 1 :]]
    checked = ShardMap(new_shards)  # the plan must itself be a valid map
    result = {
        "split": {"shard": shard, "boundary": boundary, "lower": dict(lower), "upper": dict(upper)},
        "shard_map": checked.describe(),
    }
    if rows is not None:
        result["split"]["rows"] = rows
    return result


def place(shard_map, rows, unavailable=(), exhausted=()):
    """The shard a new beneficiary goes to: the lowest fill ratio (rows over capacity) among the
    shards that can take one; ties go to the earlier shard.

    ``rows``: rows per shard name (every shard of the map). ``unavailable``: shards that cannot be
    written now (their database is down); ``exhausted``: closed shards whose range is used up (their
    sequence reached its maximum). A shard without a capacity (open-ended, none configured) is
    skipped. Returns ``{shard, fill, fills}``; raises ShardMapError naming why no shard can take one.
    """
    missing = [name for name in shard_map.names if name not in rows]
    if missing:
        raise ShardMapError(f"rows: no count for {', '.join(missing)}")
    unknown = sorted((set(unavailable) | set(exhausted)) - set(shard_map.names))
    if unknown:
        raise ShardMapError(f"unknown shard(s) {', '.join(map(str, unknown))}")
    fills, why = {}, []
    for name in shard_map.names:
        capacity = shard_map.capacities[name]
        count = _non_negative_int(rows[name], f"rows[{name}]")
        if capacity is None:
            why.append(f"{name} has no capacity (open-ended: configure one)")
            continue
        fills[name] = count / capacity
        if name in unavailable:
            why.append(f"{name} is unavailable")
        elif name in exhausted:
            why.append(f"{name} has used up its range")
    candidates = [n for n in fills if n not in unavailable and n not in exhausted]
    if not candidates:
        raise ShardMapError("no shard can take a new beneficiary: " + "; ".join(why))
    best = min(candidates, key=lambda n: (fills[n], shard_map.names.index(n)))
    return {"shard": best, "fill": round(fills[best], 6), "fills": {n: round(f, 6) for n, f in fills.items()}}


def run(params):
    """Run one action from module-style parameters; return the result dict (without ``changed``)."""
    action = params.get("action") or "assign"
    if action not in ACTIONS:
        raise ShardMapError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    shard_map = load(params.get("shards"))
    if action == "validate":
        return validate(shard_map)
    if action == "assign":
        if params.get("ids") is None:
            raise ShardMapError("action=assign needs ids (a list of beneficiary IDs)")
        return assign(
            shard_map,
            params["ids"],
            mapping=params.get("mapping") or "auto",
            mapping_limit=params.get("mapping_limit") or DEFAULT_MAPPING_LIMIT,
        )
    if action == "balance":
        tolerance = params.get("tolerance")
        return balance(
            shard_map,
            params.get("counts"),
            tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
            capacity=params.get("capacity"),
        )
    if action == "place":
        if not isinstance(params.get("counts"), dict):
            raise ShardMapError("action=place needs counts (rows per shard)")
        return place(shard_map, params["counts"], unavailable=params.get("unavailable") or ())
    if not params.get("shard"):
        raise ShardMapError("action=plan_split needs shard (the name of the shard to split)")
    return plan_split(
        shard_map,
        params["shard"],
        boundary=params.get("boundary"),
        histogram=params.get("histogram"),
        new_name=params.get("new_name"),
    )
