"""The rehab-agi reference service, sharded, against real servers on this machine: three PostgreSQL
servers and three Redis servers on loopback (Debian's packages, one of each per shard, the guide's
map) and two app processes run from app/ with the rehab-shard-map wheel that `make release` builds
(the distribution the service depends on, not a copy of the map logic).

What is checked from outside, in each shard's own database: IDs at the boundaries are read from the
right shard; concurrent creates through both app servers get unique IDs inside the range of the
shard that holds them, spread by fill ratio; a shard whose PostgreSQL is killed fails only its own
beneficiaries (503 naming it) while readiness stays 200 and names it; a shard whose range is used up
is skipped; rows outside a shard's range keep that shard out of service, named.

The coordinator is built by rehab.scale.pg_shard_coordinator through ansible-playbook (connection
local); listing and counting go through it. The rest of the Ansible side (rendering the map from
rehab_shards, one PostgreSQL group per shard, failover per shard) is not exercised here.
"""

import concurrent.futures
import time

import pytest
from rehab_shardlab import GUIDE, READER, AppProcess, ShardLab, build_coordinator, call, write_map
from rehab_testlib import role_default, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with ShardLab(tmp_path_factory.mktemp("shards")) as shards:
        yield {
            "dir": shards.directory,
            "servers": shards.servers,
            "redises": shards.redises,
            "apps": shards.apps,
            "coordinator_first_run": shards.coordinator_first_run,
        }


def rows_in(server):
    return [int(i) for i in server.sql("SELECT id FROM beneficiaries ORDER BY id", db="rehab").split()]


def test_every_app_server_is_ready_with_every_shard_bounded(lab):
    for app in lab["apps"]:
        status, body = call(app.base, "/api/agi/health/ready")
        assert (status, body["status"], body["unavailable"]) == (200, "ready", []), body
    for (name, low, high), server in zip(GUIDE, lab["servers"].values(), strict=True):
        query = (
            "SELECT seqstart, seqmin, seqmax FROM pg_sequence"
            " WHERE seqrelid = pg_get_serial_sequence('beneficiaries', 'id')::regclass"
        )
        assert server.sql(query, db="rehab") == f"{low}|{low}|{high or 2**63 - 1}", name


def test_concurrent_creates_on_two_servers_get_unique_ids_inside_their_shard(lab):
    apps = lab["apps"]

    def create(n):
        return call(apps[n % 2].base, "/api/agi/beneficiaries", {"name": f"created {n}"})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(create, range(600)))
    assert {status for status, _ in answers} == {201}, [a for a in answers if a[0] != 201][:3]
    ids = [body["id"] for _, body in answers]
    assert len(set(ids)) == 600
    counts = {}
    for (name, low, high), server in zip(GUIDE, lab["servers"].values(), strict=True):
        held = rows_in(server)
        assert held[0] == low, f"{name}: its first ID is {held[0]}, not {low}"
        assert all(low <= i <= (high or 2**63 - 1) for i in held), (name, held[:5], held[-5:])
        counts[name] = len(held)
        said = sorted(body["id"] for _, body in answers if body["shard"] == name)
        assert said == held, f"{name}: the answers' shard does not match the database"
    # Equal capacities, so equal shares within the placement window (counts refresh every second).
    assert sum(counts.values()) == 600
    assert max(counts.values()) - min(counts.values()) <= 60, counts


def test_the_coordinator_is_built_once_and_lists_and_counts_every_shard(lab):
    servers = list(lab["servers"].values())
    first = lab["coordinator_first_run"].stdout
    assert "create server rehab_shard_shard2 (127.0.0.1:" in first and "changed=1" in first
    assert READER[1] not in first, "the reader's password is in the output"
    again = build_coordinator(lab["dir"], servers)
    assert "changed=0" in again.stdout and "changed=1" not in again.stdout, again.stdout[-2000:]
    # The coordinator holds no row: only foreign partitions (and the map).
    coordinator = servers[0]
    partitions = (
        "SELECT relkind, count(*) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
        " WHERE i.inhparent = 'beneficiaries'::regclass GROUP BY 1"
    )
    kinds = coordinator.sql(partitions, "rehab_coordinator")
    assert kinds == "f|3"
    plan = coordinator.sql("EXPLAIN SELECT * FROM beneficiaries WHERE id = 150000", "rehab_coordinator")
    assert "beneficiaries_shard2" in plan and "shard1" not in plan and "shard3" not in plan, plan
    # A count reads every shard at once (async_capable).
    plan = coordinator.sql("EXPLAIN SELECT count(*) FROM beneficiaries", "rehab_coordinator")
    assert plan.count("Async Foreign Scan") == 3, plan
    everyone = sorted(i for server in servers for i in rows_in(server))
    for app in lab["apps"]:
        listed, after = [], 0
        while after is not None:
            status, body = call(app.base, f"/api/agi/beneficiaries?after={after}&limit=250")
            assert status == 200, body
            listed += [item["id"] for item in body["items"]]
            after = body["next"]
        assert listed == everyone
        assert call(app.base, "/api/agi/beneficiaries/count") == (200, {"count": len(everyone)})
    assert call(lab["apps"][0].base, "/api/agi/beneficiaries?limit=5000")[0] == 400


def test_check_mode_names_a_coordinator_change_and_makes_none(lab):
    servers = list(lab["servers"].values())
    servers[0].sql("ALTER SERVER rehab_shard_shard3 OPTIONS (SET port '1')", "rehab_coordinator")
    try:
        out = build_coordinator(lab["dir"], servers, check=True)
        assert "alter server rehab_shard_shard3 options" in out.stdout and "changed=1" in out.stdout
        assert "port=1," in servers[0].sql("SELECT srvoptions FROM pg_foreign_server"
                                             " WHERE srvname = 'rehab_shard_shard3'", "rehab_coordinator")  # fmt: skip
    finally:
        build_coordinator(lab["dir"], servers)
    assert call(lab["apps"][0].base, "/api/agi/beneficiaries/count")[0] == 200


def test_a_killed_shard_fails_only_its_own_beneficiaries_and_readiness_names_it(lab):
    servers, apps = lab["servers"], lab["apps"]
    lab["servers"]["shard2"].kill()
    try:
        for app in apps:
            status, body = call(app.base, "/api/agi/health/ready")
            assert (status, body["status"], body["unavailable"]) == (200, "degraded", ["shard2"]), body
            assert body["shards"]["shard1"]["postgresql"] == "ok"
            assert body["shards"]["shard2"]["postgresql"] != "ok"
        status, body = call(apps[0].base, "/api/agi/beneficiaries/100001")
        assert status == 503 and body["shard"] == "shard2", body
        assert body["error"].startswith("shard shard2 unavailable: "), body
        for beneficiary in (1, 200_001):  # the first IDs of shard1 and shard3
            assert call(apps[1].base, f"/api/agi/beneficiaries/{beneficiary}")[0] == 200
        # A cross-shard read needs every shard: it fails naming the one that is down.
        status, body = call(apps[0].base, "/api/agi/beneficiaries/count")
        assert (status, body.get("shard")) == (503, "shard2"), body
        before = {name: len(rows_in(server)) for name, server in servers.items() if name != "shard2"}
        answers = [call(apps[n % 2].base, "/api/agi/beneficiaries", {"name": f"while down {n}"}) for n in range(20)]
        assert {status for status, _ in answers} == {201}
        assert {body["shard"] for _, body in answers} <= {"shard1", "shard3"}
        after = {name: len(rows_in(server)) for name, server in servers.items() if name != "shard2"}
        assert sum(after.values()) - sum(before.values()) == 20
    finally:
        servers["shard2"].start()
    wait_for(lambda: call(apps[0].base, "/api/agi/health/ready")[1]["status"] == "ready", 30, "shard2 back")
    assert call(apps[0].base, "/api/agi/beneficiaries/100001")[0] == 200


def test_readiness_answers_within_the_balancers_check_timeout_while_a_shard_hangs(lab):
    """A shard whose PostgreSQL accepts connections and never answers (a lost host: connections wait
    out their timeout) must not make readiness slower than HAProxy's health check timeout, or the
    balancer drops every server for one shard. Readiness answers in time, and names the shard once
    its check has timed out."""
    budget = role_default("haproxy", "haproxy_check_timeout") / 1000
    apps, server = lab["apps"], lab["servers"]["shard2"]
    server.freeze()
    try:
        for _ in range(6):
            for app in apps:
                started = time.monotonic()
                status, body = call(app.base, "/api/agi/health/ready")
                took = time.monotonic() - started
                assert status == 200 and took < budget, (took, body)
            time.sleep(0.5)
        for app in apps:
            status, body = call(app.base, "/api/agi/health/ready")
            assert (status, body["unavailable"]) == (200, ["shard2"]), body
    finally:
        server.freeze(frozen=False)
    wait_for(lambda: all(call(a.base, "/api/agi/health/ready")[1]["status"] == "ready" for a in apps), 30, "shard2")


def test_readiness_is_503_only_when_no_shard_can_serve(lab):
    servers = list(lab["servers"].values())
    for server in servers:
        server.kill()
    try:
        status, body = call(lab["apps"][0].base, "/api/agi/health/ready")
        assert (status, body["status"]) == (503, "unready"), body
        assert body["unavailable"] == ["shard1", "shard2", "shard3"]
        status, body = call(lab["apps"][0].base, "/api/agi/beneficiaries", {"name": "nowhere"})
        assert status == 503 and "no shard can take a new beneficiary" in body["error"], body
    finally:
        for server in servers:
            server.start()
    wait_for(lambda: call(lab["apps"][0].base, "/api/agi/health/ready")[0] == 200, 30, "shards back")


def test_boundary_ids_land_on_their_shard_and_a_used_up_range_is_skipped(lab):
    """The IDs either side of each boundary, issued by the shards' own sequences: shard1 and shard2
    are set to issue their last ID next, shard3 is made the fullest, so the next creates go to
    shard1 and shard2 once each (100000, 200000), which then have used up their ranges, and on to
    shard3. 100001 and 200001 were the first IDs shard2 and shard3 issued."""
    servers, apps = lab["servers"], lab["apps"]
    servers["shard1"].sql("ALTER TABLE beneficiaries ALTER COLUMN id RESTART WITH 100000", "rehab")
    servers["shard2"].sql("ALTER TABLE beneficiaries ALTER COLUMN id RESTART WITH 200000", "rehab")
    servers["shard3"].sql("INSERT INTO beneficiaries (name) SELECT 'filler' FROM generate_series(1, 2000)", "rehab")
    time.sleep(1.5)  # one placement refresh: every app server sees shard3 as the fullest
    answers = [call(apps[0].base, "/api/agi/beneficiaries", {"name": f"last {n}"}) for n in range(4)]
    assert {status for status, _ in answers} == {201}, answers
    placed = sorted((body["shard"], body["id"]) for _, body in answers)
    assert placed[:2] == [("shard1", 100_000), ("shard2", 200_000)], placed
    assert [shard for shard, _ in placed[2:]] == ["shard3", "shard3"], placed
    homes = {100_000: "shard1", 100_001: "shard2", 200_000: "shard2", 200_001: "shard3"}
    for beneficiary, shard in homes.items():
        for app in apps:
            status, body = call(app.base, f"/api/agi/beneficiaries/{beneficiary}")
            assert (status, body["id"]) == (200, beneficiary), (beneficiary, body)
        assert [name for name, server in servers.items() if beneficiary in rows_in(server)] == [shard]
    # Each shard's database refuses an ID of another shard's range (its CHECK constraint).
    with pytest.raises(AssertionError, match="beneficiaries_id_in_shard_1_100000"):
        servers["shard1"].sql("INSERT INTO beneficiaries (id, name) VALUES (100001, 'misplaced')", "rehab")


def test_rows_outside_a_shards_range_keep_it_out_of_service_and_are_named(lab):
    """The state a Phase 2 database would be in if it were mapped as a shard whose range it does not
    fit (here: rows 1-3 in the database mapped as shard2)."""
    directory, servers = lab["dir"], lab["servers"]
    servers["shard2"].sql("CREATE DATABASE legacy OWNER rehab")
    servers["shard2"].sql(
        "CREATE TABLE beneficiaries (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
        " name text NOT NULL, program text, created_at timestamptz NOT NULL DEFAULT now());"
        " ALTER TABLE beneficiaries OWNER TO rehab;"
        " INSERT INTO beneficiaries (name) VALUES ('one'), ('two'), ('three')",
        "legacy",
    )
    shards_file = write_map(directory / "legacy.json", list(servers.values()), lab["redises"], {"shard2": "legacy"})
    app = AppProcess(directory, shards_file, "legacy")
    try:
        status, body = call(app.base, "/api/agi/health/ready")
        assert (status, body["unavailable"]) == (200, ["shard2"]), body
        assert body["shards"]["shard2"]["postgresql"] == "rows outside its range 100001-200000: IDs 1, 2, 3"
        assert servers["shard2"].sql("SELECT count(*) FROM beneficiaries", "legacy") == "3"  # nothing moved
    finally:
        app.stop()
