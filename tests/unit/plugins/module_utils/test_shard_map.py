"""Shard map logic: boundaries, every error, and properties that must hold for any map."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.rehab.scale.plugins.module_utils import shard_map as sm

GUIDE = sm.load()


# --- assignment at every boundary of the guide's map ---------------------------------------------
@pytest.mark.parametrize(
    ("beneficiary_id", "shard"),
    [
        (1, "shard1"),
        (99_999, "shard1"),
        (100_000, "shard1"),
        (100_001, "shard2"),
        (150_000, "shard2"),
        (200_000, "shard2"),
        (200_001, "shard3"),
        (10**12, "shard3"),
        ("42", "shard1"),
        (" 100001 ", "shard2"),
    ],
)
def test_guide_boundaries(beneficiary_id, shard):
    assert GUIDE.shard_for(beneficiary_id) == shard


def test_assign_counts_every_shard_and_keeps_order():
    result = sm.assign(GUIDE, [200_001, 1, 100_000, 100_001, 200_000, 7])
    assert result["counts"] == {"shard1": 3, "shard2": 2, "shard3": 1}
    assert result["total"] == 6
    assert [a["shard"] for a in result["assignments"]] == ["shard3", "shard1", "shard1", "shard2", "shard2", "shard1"]
    assert [a["id"] for a in result["assignments"]] == [200_001, 1, 100_000, 100_001, 200_000, 7]


def test_assign_single_id_returns_whole_shard_with_passthrough():
    shards = [
        {"name": "a", "min_id": 1, "max_id": 10, "pg_group": "pg_a", "redis_host": "redis-a"},
        {"name": "b", "min_id": 11, "pg_group": "pg_b"},
    ]
    result = sm.assign(sm.load(shards), [5])
    assert result["shard"] == {"name": "a", "min_id": 1, "max_id": 10, "pg_group": "pg_a", "redis_host": "redis-a"}


@pytest.mark.parametrize(
    ("size", "mapping", "included"),
    [(1000, "auto", True), (1001, "auto", False), (1001, "always", True), (1, "never", False)],
)
def test_mapping_only_when_small_or_asked(size, mapping, included):
    result = sm.assign(GUIDE, list(range(1, size + 1)), mapping=mapping)
    assert result["mapping_included"] is included
    assert ("assignments" in result) is included
    assert sum(result["counts"].values()) == size


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("[123456]", [123456]), ("[1, 2]", [1, 2]), ("5,6", ["5", "6"]), (7, [7]), ([8], [8]), ("", [])],
)
def test_coerce_ids_accepts_ad_hoc_forms(raw, expected):
    assert sm.coerce_ids(raw) == expected


def test_bounded_last_shard_refuses_ids_beyond_it():
    bounded = sm.load([{"name": "a", "min_id": 1, "max_id": 10}])
    with pytest.raises(sm.ShardMapError, match=r"ids\[1\]: ID 11 is beyond the last shard \(a ends at 10\)"):
        sm.assign(bounded, [10, 11])


# --- bad IDs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (0, r"ids\[0\]: 0 is not a valid beneficiary ID; IDs start at 1"),
        (-5, r"ids\[0\]: -5 is negative"),
        ("-5", r"ids\[0\]: -5 is negative"),
        (1.5, r"ids\[0\]: 1.5 is not an integer"),
        (2.0, r"ids\[0\]: 2.0 is not an integer"),
        ("abc", r"ids\[0\]: 'abc' is not a number"),
        ("1e5", r"ids\[0\]: '1e5' is not a number"),
        ("", r"ids\[0\]: '' is not a number"),
        (True, r"ids\[0\]: True is a boolean"),
        (None, r"ids\[0\]: None \(NoneType\) is not an integer"),
        ([3], r"ids\[0\]: \[3\] \(list\) is not an integer"),
    ],
)
def test_bad_ids_named(raw, message):
    with pytest.raises(sm.ShardMapError, match=message):
        sm.assign(GUIDE, [raw])


def test_bad_id_fails_whole_call_no_partial_output():
    with pytest.raises(sm.ShardMapError, match=r"ids\[2\]"):
        sm.assign(GUIDE, [1, 2, "x", 4])


# --- bad maps -----------------------------------------------------------------------------------
def shard(name, lo, hi=None, **extra):
    return {"name": name, "min_id": lo, "max_id": hi, **extra}


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ([], r"shard map is empty"),
        ("shard1", r"must be a list of shards, got str"),
        ([shard("a", 1, 10), shard("b", 12)], r"gap between shards\[0\] \(a\) and shards\[1\] \(b\): ID 11 belong"),
        ([shard("a", 1, 10), shard("b", 20)], r"gap between .*: IDs 11-19 belong to no shard"),
        ([shard("a", 1, 10), shard("b", 8)], r"overlap between shards\[0\] \(a\) and shards\[1\] \(b\): IDs 8-10"),
        ([shard("a", 1, 10), shard("b", 5, 7), shard("c", 11)], r"overlap .*: IDs 5-7 belong to both"),
        ([shard("a", 1, 10), shard("a", 11)], r"shards\[1\] \(a\): duplicate name 'a' \(also shards\[0\]\)"),
        ([shard("a", 1), shard("b", 2)], r"shards\[0\] \(a\) is open-ended .* not the last shard; shards\[1\] \(b\)"),
        ([shard("a", 2)], r"shards\[0\] \(a\): the map must start at ID 1, not 2"),
        ([shard("a", 0, 10)], r"shards\[0\] \(a\) min_id: 0 is not a valid beneficiary ID"),
        ([shard("a", -1, 10)], r"shards\[0\] \(a\) min_id: -1 is negative"),
        ([shard("a", 1, 10.5)], r"shards\[0\] \(a\) max_id: 10.5 is not an integer"),
        ([shard("a", 1, "ten")], r"shards\[0\] \(a\) max_id: 'ten' is not a number"),
        ([shard("a", 5, 3)], r"shards\[0\] \(a\): min_id 5 is greater than max_id 3"),
        ([{"name": "a", "max_id": 3}], r"shards\[0\] \(a\): min_id is missing"),
        ([shard("", 1)], r"shards\[0\]: name must be a non-empty string"),
        ([shard(None, 1)], r"shards\[0\]: name must be a non-empty string, got None"),
        (["a"], r"shards\[0\]: each shard must be a mapping"),
    ],
)
def test_bad_maps_named(shards, message):
    with pytest.raises(sm.ShardMapError, match=message):
        sm.load(shards)


def test_several_problems_reported_together():
    with pytest.raises(sm.ShardMapError) as err:
        sm.load([shard("a", 1, 10), shard("a", 15, 20), shard("c", 18)])
    text = str(err.value)
    assert "duplicate name 'a'" in text
    assert "IDs 11-14 belong to no shard" in text
    assert "IDs 18-20 belong to both" in text


def test_validate_reports_layout():
    result = sm.validate(GUIDE)
    assert result == {
        "valid": True,
        "shard_count": 3,
        "open_ended": True,
        "max_id": None,
        "shard_map": [dict(s) for s in sm.DEFAULT_SHARDS],
    }


def test_passthrough_keys_untouched():
    shards = [shard("a", 1, 10, backup={"target": "s3://b/a"}), shard("b", "11", pg_group="pg_b")]
    assert sm.load(shards).describe() == [
        {"name": "a", "min_id": 1, "max_id": 10, "backup": {"target": "s3://b/a"}},
        {"name": "b", "min_id": 11, "max_id": None, "pg_group": "pg_b"},
    ]


# --- balance ------------------------------------------------------------------------------------
def test_balance_even():
    result = sm.balance(GUIDE, {"shard1": 100, "shard2": 100, "shard3": 100})
    assert result["imbalance_ratio"] == 1.0
    assert result["balanced"] is True
    assert result["reasons"] == []


def test_balance_over_tolerance_and_capacity():
    result = sm.balance(GUIDE, {"shard1": 100, "shard2": 100, "shard3": 400}, tolerance=0.5, capacity=300)
    assert result["largest"] == "shard3"
    assert result["imbalance_ratio"] == 2.0
    assert result["over_capacity"] == ["shard3"]
    assert result["balanced"] is False
    assert len(result["reasons"]) == 2


@pytest.mark.parametrize(
    ("tolerance", "balanced"),
    [(0.19, False), (0.2, True)],
)
def test_balance_tolerance_edge(tolerance, balanced):
    # ratio = 120 / 100 exactly
    counts = {"shard1": 120, "shard2": 90, "shard3": 90}
    assert sm.balance(GUIDE, counts, tolerance=tolerance)["balanced"] is balanced


def test_balance_all_empty_is_balanced():
    assert sm.balance(GUIDE, {"shard1": 0, "shard2": 0, "shard3": 0})["balanced"] is True


@pytest.mark.parametrize(
    ("counts", "kwargs", "message"),
    [
        ({"shard1": 1, "shard2": 1}, {}, r"no count for shard3"),
        ({"shard1": 1, "shard2": 1, "shard3": 1, "shard9": 1}, {}, r"unknown shard\(s\) shard9"),
        ({"shard1": -1, "shard2": 1, "shard3": 1}, {}, r"counts\[shard1\]: row count -1 is negative"),
        ({"shard1": "many", "shard2": 1, "shard3": 1}, {}, r"counts\[shard1\]: 'many' is not a row count"),
        ({"shard1": 1, "shard2": 1, "shard3": 1}, {"tolerance": -0.1}, r"tolerance must be a number >= 0"),
        ({"shard1": 1, "shard2": 1, "shard3": 1}, {"capacity": 0}, r"capacity: 0 rows per shard"),
        ({}, {}, r"counts must map every shard"),
    ],
)
def test_balance_errors(counts, kwargs, message):
    with pytest.raises(sm.ShardMapError, match=message):
        sm.balance(GUIDE, counts, **kwargs)


def test_balance_with_every_capacity_judges_the_fill_spread_so_a_fresh_layout_does_not_page():
    # The lab's map (shard 3 given a capacity): shard 1 holds everything so far, 15 % full.
    lab = sm.load([*sm.DEFAULT_SHARDS[:2], {**sm.DEFAULT_SHARDS[2], "capacity": 100_000}])
    fresh = sm.balance(lab, {"shard1": 15_000, "shard2": 0, "shard3": 0})
    assert (fresh["judged_by"], fresh["fill_spread"], fresh["balanced"]) == ("fill", 0.15, True)
    assert fresh["imbalance_ratio"] == 3.0  # by rows it would be far out; by fill it is not
    skewed = sm.balance(lab, {"shard1": 90_000, "shard2": 40_000, "shard3": 65_000}, tolerance=0.3)
    assert skewed["fills"] == {"shard1": 0.9, "shard2": 0.4, "shard3": 0.65}
    assert skewed["balanced"] is False
    assert skewed["reasons"] == [
        "shard1 is 90.0% full and shard2 40.0%: a fill spread of 0.500, over the tolerance of 0.300"
    ]


@pytest.mark.parametrize(("tolerance", "balanced"), [(0.199, False), (0.2, True)])
def test_balance_fill_spread_edge(tolerance, balanced):
    lab = sm.load([{"name": "a", "min_id": 1, "max_id": 1000}, {"name": "b", "min_id": 1001, "max_id": 2000}])
    assert sm.balance(lab, {"a": 300, "b": 100}, tolerance=tolerance)["balanced"] is balanced


def test_balance_reports_a_shard_over_its_own_capacity():
    small = sm.load([{"name": "a", "min_id": 1, "max_id": 1000, "capacity": 100}, {"name": "b", "min_id": 1001}])
    result = sm.balance(small, {"a": 150, "b": 150})
    assert (result["judged_by"], result["over_capacity"]) == ("rows", ["a"])
    assert result["reasons"] == ["a holds 150 rows, over the capacity of 100"]


# --- plan_split ---------------------------------------------------------------------------------
def test_split_open_ended_last_shard():
    result = sm.plan_split(GUIDE, "shard3", boundary=300_001)
    assert result["shard_map"][-2:] == [shard("shard3", 200_001, 300_000), shard("shard4", 300_001)]
    assert result["split"]["boundary"] == 300_001


def test_split_middle_shard_keeps_passthrough_on_lower_part():
    shards = [shard("a", 1, 100, pg_group="pg_a"), shard("b", 101)]
    result = sm.plan_split(sm.load(shards), "a", boundary=51, new_name="a2")
    assert result["shard_map"] == [shard("a", 1, 50, pg_group="pg_a"), shard("a2", 51, 100), shard("b", 101)]


def test_split_from_histogram_halves_rows():
    histogram = [
        {"min_id": 1, "max_id": 25_000, "count": 40},
        {"min_id": 25_001, "max_id": 50_000, "count": 10},
        {"min_id": 50_001, "max_id": 100_000, "count": 50},
    ]
    result = sm.plan_split(GUIDE, "shard1", histogram=histogram)
    assert result["split"]["boundary"] == 50_001
    assert result["split"]["rows"] == {"lower": 50, "upper": 50}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shard": "nope", "boundary": 5}, r"shard 'nope' is not in the map"),
        ({"shard": "shard1"}, r"exactly one of boundary or histogram"),
        ({"shard": "shard1", "boundary": 5, "histogram": [{}]}, r"exactly one of boundary or histogram"),
        ({"shard": "shard1", "boundary": 1}, r"boundary 1 does not split shard1 \(1-100000\)"),
        ({"shard": "shard1", "boundary": 100_001}, r"boundary 100001 does not split shard1"),
        ({"shard": "shard3", "boundary": 200_001}, r"boundary 200001 does not split shard3 \(200001-no upper bound\)"),
        ({"shard": "shard1", "boundary": "x"}, r"boundary: 'x' is not a number"),
        ({"shard": "shard1", "boundary": 5, "new_name": "shard2"}, r"new_name 'shard2' is already a shard"),
        ({"shard": "shard1", "histogram": [{"min_id": 1, "max_id": 9, "count": 3}]}, r"no bucket starts after ID 1"),
        (
            {"shard": "shard1", "histogram": [{"min_id": 1, "max_id": 200_000, "count": 3}]},
            r"histogram\[0\]: IDs 1-200000 fall outside shard shard1",
        ),
        (
            {
                "shard": "shard1",
                "histogram": [{"min_id": 1, "max_id": 9, "count": 3}, {"min_id": 5, "max_id": 20, "count": 1}],
            },
            r"histogram: buckets overlap at ID 5",
        ),
    ],
)
def test_split_errors(kwargs, message):
    with pytest.raises(sm.ShardMapError, match=message):
        sm.plan_split(GUIDE, **kwargs)


# --- run() dispatch -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"action": "explode"}, r"action must be one of"),
        ({"action": "assign"}, r"action=assign needs ids"),
        ({"action": "plan_split"}, r"action=plan_split needs shard"),
        ({"action": "assign", "ids": [1], "mapping": "sometimes"}, r"mapping must be one of"),
    ],
)
def test_run_errors(params, message):
    with pytest.raises(sm.ShardMapError, match=message):
        sm.run(params)


# --- properties ---------------------------------------------------------------------------------
@st.composite
def contiguous_maps(draw):
    """Any valid map: contiguous from 1, unique names, optionally open-ended at the end."""
    widths = draw(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=40))
    open_ended = draw(st.booleans())
    shards, lo = [], 1
    for index, width in enumerate(widths):
        hi = lo + width - 1
        shards.append({"name": f"s{index}", "min_id": lo, "max_id": hi})
        lo = hi + 1
    if open_ended:
        shards[-1]["max_id"] = None
    return shards


@settings(max_examples=200, deadline=None)
@given(contiguous_maps(), st.data())
def test_every_id_maps_to_exactly_one_shard(shards, data):
    shard_map = sm.load(shards)
    top = shard_map.last_max or shards[-1]["min_id"] + 10**6
    beneficiary_id = data.draw(st.integers(min_value=1, max_value=top))
    owners = [
        s["name"]
        for s in shards
        if s["min_id"] <= beneficiary_id and (s["max_id"] is None or beneficiary_id <= s["max_id"])
    ]
    assert owners == [shard_map.shard_for(beneficiary_id)]


@settings(max_examples=200, deadline=None)
@given(contiguous_maps(), st.lists(st.integers(min_value=1, max_value=10**7), min_size=2, max_size=50))
def test_assignment_is_monotonic_in_id(shards, ids):
    shard_map = sm.load(shards)
    if shard_map.last_max is not None:
        ids = [i for i in ids if i <= shard_map.last_max] or [1]
    order = {name: index for index, name in enumerate(shard_map.names)}
    ranked = [order[shard_map.shard_for(i)] for i in sorted(ids)]
    assert ranked == sorted(ranked)
    counts = sm.assign(shard_map, ids, mapping="never")["counts"]
    assert sum(counts.values()) == len(ids)


@st.composite
def arbitrary_maps(draw):
    """Maps that may or may not be valid: random bounds, possibly repeated names."""
    size = draw(st.integers(min_value=1, max_value=6))
    shards = []
    for _ in range(size):
        lo = draw(st.integers(min_value=1, max_value=60))
        hi = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=60)))
        name = draw(st.sampled_from(["a", "b", "c", "d", "e", "f"]))
        shards.append({"name": name, "min_id": lo, "max_id": hi})
    return shards


def is_contiguous(shards):
    names = [s["name"] for s in shards]
    if len(set(names)) != len(names) or shards[0]["min_id"] != 1:
        return False
    for index, s in enumerate(shards):
        last = index == len(shards) - 1
        if s["max_id"] is None:
            if not last:
                return False
            continue
        if s["min_id"] > s["max_id"]:
            return False
        if not last and shards[index + 1]["min_id"] != s["max_id"] + 1:
            return False
    return True


@settings(max_examples=500, deadline=None)
@given(arbitrary_maps())
def test_validate_accepts_exactly_contiguous_maps(shards):
    try:
        sm.load(shards)
        accepted = True
    except sm.ShardMapError:
        accepted = False
    assert accepted is is_contiguous(shards)


@settings(max_examples=100, deadline=None)
@given(contiguous_maps(), st.data())
def test_split_plan_is_valid_and_preserves_assignment_outside_split(shards, data):
    shard_map = sm.load(shards)
    candidates = [s for s in shards if s["max_id"] is None or s["max_id"] > s["min_id"]]
    if not candidates:
        return
    target = data.draw(st.sampled_from(candidates))
    hi = target["max_id"] if target["max_id"] is not None else target["min_id"] + 10**6
    boundary = data.draw(st.integers(min_value=target["min_id"] + 1, max_value=hi))
    plan = sm.plan_split(shard_map, target["name"], boundary=boundary, new_name="new")
    new_map = sm.load(plan["shard_map"])
    probe = data.draw(st.integers(min_value=1, max_value=hi + 10))
    if shard_map.last_max is not None and probe > shard_map.last_max:
        return
    before, after = shard_map.shard_for(probe), new_map.shard_for(probe)
    if before != target["name"]:
        assert after == before
    else:
        assert after == (target["name"] if probe < boundary else "new")


# --- capacity and placement ----------------------------------------------------------------------
PLACED = sm.load([*sm.DEFAULT_SHARDS[:2], {**sm.DEFAULT_SHARDS[2], "capacity": 100_000}])


def test_capacity_defaults_to_the_range_and_is_none_when_open_ended():
    assert GUIDE.capacities == {"shard1": 100_000, "shard2": 100_000, "shard3": None}
    assert PLACED.capacities["shard3"] == 100_000
    assert sm.load([{"name": "a", "min_id": 1, "max_id": 10, "capacity": 4}]).capacities == {"a": 4}


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        (0, "shards[0] (a): capacity 0 leaves no room"),
        (-5, "shards[0] (a) capacity: row count -5 is negative"),
        ("many", "shards[0] (a) capacity: 'many' is not a row count"),
        (11, "shards[0] (a): capacity 11 is more than the 10 IDs of its range 1-10"),
    ],
)
def test_bad_capacity_is_named(capacity, message):
    with pytest.raises(sm.ShardMapError, match=re.escape(message)):
        sm.load([{"name": "a", "min_id": 1, "max_id": 10, "capacity": capacity}, {"name": "b", "min_id": 11}])


def test_place_picks_the_lowest_fill_ratio_not_the_fewest_rows():
    small = sm.load([{"name": "a", "min_id": 1, "max_id": 10}, {"name": "b", "min_id": 11, "max_id": 1000}])
    # a holds fewer rows but is fuller (5 of 10 against 100 of 990).
    assert sm.place(small, {"a": 5, "b": 100})["shard"] == "b"
    assert sm.place(PLACED, {"shard1": 98_000, "shard2": 41_000, "shard3": 12_000}) == {
        "shard": "shard3",
        "fill": 0.12,
        "fills": {"shard1": 0.98, "shard2": 0.41, "shard3": 0.12},
    }


def test_place_breaks_ties_by_map_order_and_skips_unavailable_and_exhausted_shards():
    empty = dict.fromkeys(PLACED.names, 0)
    assert sm.place(PLACED, empty)["shard"] == "shard1"
    assert sm.place(PLACED, empty, unavailable=["shard1"])["shard"] == "shard2"
    assert sm.place(PLACED, empty, unavailable=["shard1"], exhausted=["shard2"])["shard"] == "shard3"


def test_place_skips_an_open_ended_shard_without_capacity_and_says_why_none_is_left():
    assert sm.place(GUIDE, {"shard1": 90_000, "shard2": 95_000, "shard3": 0})["shard"] == "shard1"
    with pytest.raises(sm.ShardMapError) as err:
        sm.place(GUIDE, {"shard1": 1, "shard2": 1, "shard3": 0}, unavailable=["shard1"], exhausted=["shard2"])
    assert str(err.value) == (
        "no shard can take a new beneficiary: shard1 is unavailable; shard2 has used up its range; "
        "shard3 has no capacity (open-ended: configure one)"
    )


@pytest.mark.parametrize(
    ("rows", "unavailable", "message"),
    [
        ({"shard1": 1, "shard2": 1}, (), "rows: no count for shard3"),
        ({"shard1": 1, "shard2": 1, "shard3": -1}, (), r"rows\[shard3\]: row count -1 is negative"),
        ({"shard1": 1, "shard2": 1, "shard3": 1}, ("shard9",), "unknown shard"),
    ],
)
def test_place_refuses_bad_input(rows, unavailable, message):
    with pytest.raises(sm.ShardMapError, match=message):
        sm.place(PLACED, rows, unavailable=unavailable)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=100_000), min_size=3, max_size=3))
def test_a_shard_placed_into_was_never_fuller_than_another_shard_at_the_end(start):
    rows = dict(zip(PLACED.names, start, strict=True))
    placed = set()
    for _ in range(300):
        name = sm.place(PLACED, rows)["shard"]
        placed.add(name)
        rows[name] += 1
    lowest = min(rows[name] / PLACED.capacities[name] for name in PLACED.names)
    for name in placed:
        # When it took its last row it was the emptiest, and fills only grow.
        assert (rows[name] - 1) / PLACED.capacities[name] <= lowest
