"""Phase 3's data layer as users run it (playbooks/phase3.yml over the scenario's inventory): three
shards of the guide's map, each its own PostgreSQL and Redis, the coordinator in shard 1's cluster,
two app servers behind HAProxy, one pgBackRest stanza per shard. Checked from outside: through the
balancer as a client, and in each shard's own database.

Tests run in file order: the map and routing first, the shard statistics in Prometheus and the
shard report, then a shard host killed (the container), then shard 1's failover and rejoin, then
backups, the boundary IDs (they use up shard 1's and shard 2's ranges), and last rows outside a
shard's range refused by phase3.yml's preflight. Traffic goes only to the scenario's own containers.
"""

import base64
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import (  # noqa: E402
    APP_PORT,
    LAB_DB_PASSWORD,
    LAB_MONITORING_AUTH,
    container_address,
    docker_exec,
    haproxy_status,
    lab_secret,
    lab_tls_context,
    psql,
    role_default,
    run_playbook,
    tls_path,
    wait_booted,
    wait_for,
)

INVENTORY_FILE = Path(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
INVENTORY = INVENTORY_FILE.parent
# The map the inventory gives (one home: the Phase 3 lab's group_vars, which the scenario links).
SHARDS = yaml.safe_load((ROOT / "inventories/lab-phase3/group_vars/phase3/main.yml").read_text())["rehab_shards"]
BIGINT_MAX = 2**63 - 1


def groups():
    """{group: [hosts]} of the scenario's inventory (molecule.yml's platforms; groups at the top)."""
    document = yaml.safe_load(INVENTORY_FILE.read_text())
    return {name: sorted((group or {}).get("hosts") or {}) for name, group in document.items() if name != "all"}


def dsn_hosts(dsn):
    return sorted(dict(part.split("=", 1) for part in dsn.split())["host"].split(","))


GROUPS = groups() if INVENTORY_FILE.is_file() else {}
LB = GROUPS.get("lb", [""])[0]
APPS = GROUPS.get("app", [])
REPOSITORY = GROUPS.get("backup", [""])[0]
MONITOR = GROUPS.get("monitoring", [""])[0]
STATE = {"primary": {}}


def primary(shard):
    """The node of ``shard`` that accepts writes now (shard 1's changes with its failover)."""
    return STATE["primary"].get(shard) or next(
        node for node in GROUPS[f"{shard}_postgresql"] if node in GROUPS["pg_primary"]
    )


def bounds(shard):
    return shard["min_id"], shard.get("max_id") or BIGINT_MAX


def request(path, body=None, timeout=15):
    """(status, headers, JSON) of one request through the balancer, verified against the lab's CA."""
    if "tls" not in STATE:
        STATE["tls"] = lab_tls_context(LB)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"https://{container_address(LB)}{path}", data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=STATE["tls"]) as response:  # noqa: S310
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"{}")


def on_app(app, path):
    """(status, JSON) of rehab-agi on ``app`` itself (its port, from the host), past the balancer."""
    out = docker_exec(
        app, "curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", f"http://127.0.0.1:{APP_PORT}{path}"
    )
    body, _, status = out.stdout.rpartition("\n")
    return int(status), json.loads(body)


def rows(shard, node=None):
    out = psql(node or primary(shard["name"]), "SELECT id FROM beneficiaries ORDER BY id")
    return [int(i) for i in out.split()] if out else []


def create(n):
    return request("/api/agi/beneficiaries", {"name": f"sharded {n}", "program": "phase3"})


def test_every_app_server_routes_by_the_map_rendered_from_the_inventory():
    for app in APPS:
        document = json.loads(docker_exec(app, "cat", "/etc/rehab-agi/shards.json").stdout)
        assert [(s["name"], s["min_id"], s["max_id"]) for s in document["shards"]] == [
            (s["name"], s["min_id"], s.get("max_id")) for s in SHARDS
        ]
        for entry in document["shards"]:
            nodes = GROUPS[f"{entry['name']}_postgresql"]
            assert dsn_hosts(entry["write_dsn"]) == sorted(container_address(n) for n in nodes), entry
            assert "target_session_attrs=read-write" in entry["write_dsn"], entry
            assert "sslmode=verify-full" in entry["write_dsn"], entry
            redis = GROUPS[f"{entry['name']}_redis"]
            assert entry["redis"] == {"nodes": [f"{container_address(r)}:6379" for r in redis], "cluster": False}
        assert "dbname=rehab_coordinator" in document["coordinator"]["dsn"]
        coordinator_nodes = sorted(container_address(n) for n in GROUPS["shard1_postgresql"])
        assert dsn_hosts(document["coordinator"]["dsn"]) == coordinator_nodes
        assert LAB_DB_PASSWORD not in json.dumps(document), "a password in the map file"
        status, body = on_app(app, "/api/agi/health/ready")
        assert (status, body["status"], body["unavailable"]) == (200, "ready", []), body
    # Each shard's own sequence is bounded to its range.
    query = (
        "SELECT seqstart, seqmin, seqmax FROM pg_sequence"
        " WHERE seqrelid = pg_get_serial_sequence('beneficiaries', 'id')::regclass"
    )
    for shard in SHARDS:
        low, high = bounds(shard)
        assert psql(primary(shard["name"]), query) == f"{low}|{low}|{high}", shard["name"]


def test_concurrent_creates_through_the_balancer_get_unique_ids_inside_their_shard():
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(create, range(240)))
    assert {status for status, _, _ in answers} == {201}, [a for a in answers if a[0] != 201][:3]
    assert {headers["X-Served-By"] for _, headers, _ in answers} == set(APPS)
    ids = [body["id"] for _, _, body in answers]
    assert len(set(ids)) == len(ids)
    counts = {}
    for shard in SHARDS:
        held = rows(shard)
        low, high = bounds(shard)
        assert held and held[0] == low, f"{shard['name']}: first ID {held[:1]}, not {low}"
        assert all(low <= i <= high for i in held), shard["name"]
        said = sorted(body["id"] for _, _, body in answers if body["shard"] == shard["name"])
        assert said == held, f"{shard['name']}: the answers' shard is not where the row is"
        counts[shard["name"]] = len(held)
    # Equal capacities: equal shares, within what two servers place between count refreshes.
    assert max(counts.values()) - min(counts.values()) <= 60, counts
    STATE["ids"] = {shard["name"]: rows(shard) for shard in SHARDS}


def test_a_cross_shard_listing_through_the_coordinator_returns_everyone():
    everyone = sorted(i for held in STATE["ids"].values() for i in held)
    listed, after = [], 0
    while after is not None:
        status, _, body = request(f"/api/agi/beneficiaries?after={after}&limit=100")
        assert status == 200, body
        listed += [item["id"] for item in body["items"]]
        after = body["next"]
    assert listed == everyone
    assert request("/api/agi/beneficiaries/count")[2] == {"count": len(everyone)}
    # The coordinator holds foreign partitions only, on shard 1's primary and, streamed, its replica.
    kinds = (
        "SELECT string_agg(c.relkind::text || ':' || c.relname, ',' ORDER BY c.relname) FROM pg_class c"
        " JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = 'beneficiaries'::regclass"
    )
    expected = ",".join(f"f:beneficiaries_{s['name']}" for s in SHARDS)
    for node in GROUPS["shard1_postgresql"]:
        assert psql(node, kinds, db="rehab_coordinator") == expected, node


def prometheus(expr):
    """{shard or "": value} of an instant query on the scenario's Prometheus, over HTTPS with the login."""
    port = role_default("monitoring", "monitoring_prometheus_port")
    url = f"https://{container_address(MONITOR)}:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    req = urllib.request.Request(url)
    req.add_header("Authorization", "Basic " + base64.b64encode(":".join(LAB_MONITORING_AUTH).encode()).decode())
    with urllib.request.urlopen(req, timeout=10, context=lab_tls_context(MONITOR)) as response:  # noqa: S310
        result = json.loads(response.read())["data"]["result"]
    return {sample["metric"].get("shard", ""): float(sample["value"][1]) for sample in result}


def test_shard_statistics_reach_prometheus_and_the_monitoring_role_reads_no_record():
    counts = {shard["name"]: len(rows(shard)) for shard in SHARDS}
    # Every node of every shard exports; a shard's rows are the same on its primary and replica once
    # the replica has replayed them and been scraped since (asynchronous: a loaded CI machine once
    # showed the replica's 50 rows of 80 for a moment).
    wait_for(lambda: prometheus("max by (shard) (rehab_shard_rows)") == counts
             and prometheus("min by (shard) (rehab_shard_rows)") == counts, timeout=90,
             what=f"rehab_shard_rows = {counts} on every node")  # fmt: skip
    fills = {name: count / (shard.get("capacity") or shard["max_id"] - shard["min_id"] + 1)
             for name, count, shard in zip(counts, counts.values(), SHARDS, strict=True)}  # fmt: skip
    # The recording rule catches up at its next evaluation (the scrape interval).
    wait_for(lambda: prometheus("rehab:shard_fill:ratio") == pytest.approx(fills), timeout=60, what=f"fills {fills}")
    # IDs left, from each primary: the end of the range minus the last ID its sequence issued. (A
    # replica may show up to 32 fewer: a sequence is WAL-logged ahead of its use; the rule takes
    # the smallest.)
    for shard in SHARDS:
        name, high = shard["name"], bounds(shard)[1]
        left = prometheus(f'rehab_shard_ids_left{{shard="{name}", instance="{primary(name)}"}}')
        assert left == {name: pytest.approx(high - max(STATE["ids"][name]), rel=1e-12)}, name
    # Three clusters, three primaries: no split brain (it is counted per cluster).
    assert prometheus("count(pg_replication_is_replica == 0)") == {"": 3.0}
    assert prometheus('ALERTS{alertname=~"PostgresSplitBrain|ShardFillImbalance|ShardRangeNearlyUsed"}') == {}
    # The exporter's login runs the counts and reads nothing of a beneficiary.
    node = primary(SHARDS[0]["name"])
    login = (f"host={container_address(node)} dbname=rehab user={role_default('postgresql', 'postgresql_monitor_user')}"
             f" sslmode=verify-full sslrootcert={tls_path('ca')}")  # fmt: skip

    def as_monitor(query):
        return docker_exec(node, "env", f"PGPASSWORD={lab_secret('vault_pg_monitor_password')}",
                           "psql", login, "-Atc", query)  # fmt: skip

    out = as_monitor("SELECT rows_total FROM rehab_shard_stats()")
    assert out.returncode == 0 and int(out.stdout) == counts[SHARDS[0]["name"]], out.stdout + out.stderr
    out = as_monitor("SELECT count(*) FROM beneficiaries")
    assert out.returncode != 0 and "permission denied for table beneficiaries" in out.stderr, out.stdout + out.stderr


def test_the_shard_report_prints_the_balance_and_plans_a_split():
    out = run_playbook(ROOT / "playbooks/shard_report.yml", "--check", inventory=INVENTORY)
    assert out.returncode == 0, out.text[-3000:]
    for shard in SHARDS:
        assert f"{shard['name']}: {len(rows(shard))} rows" in out.text, out.text[-3000:]
    assert "balance: balanced (judged by fill, fill spread" in out.text, out.text[-3000:]
    assert "changed=0" in out.stdout and "changed=1" not in out.stdout
    # A split of shard 1 planned from its IDs' histogram: the boundary halves its rows.
    out = run_playbook(ROOT / "playbooks/shard_report.yml", "-e", "split=shard1", inventory=INVENTORY)
    assert out.returncode == 0, out.text[-3000:]
    held = STATE["ids"]["shard1"]
    boundary = int(re.search(r"split shard1 at (\d+): shard1 keeps IDs 1-", out.text).group(1))
    below = sum(1 for i in held if i < boundary)
    assert abs(below - (len(held) - below)) <= len(held) // 5 + 2, (boundary, below, len(held))
    assert f"({below} rows)" in out.text, out.text[-3000:]
    # A shard the map does not have is refused, naming it, before any node is read.
    out = run_playbook(ROOT / "playbooks/shard_report.yml", "-e", "split=shard9", inventory=INVENTORY)
    assert out.returncode != 0
    assert "split=shard9 is not a shard of rehab_shards (shard1, shard2, shard3)" in out.text, out.text[-3000:]
    assert "This node's shard statistics" not in out.stdout


def test_a_killed_shard_host_fails_only_its_own_beneficiaries_and_no_server_leaves_the_balancer():
    """shard2's host (its PostgreSQL and its Redis) is killed, then started again."""
    down = SHARDS[1]["name"]
    node = primary(down)
    subprocess.run(["docker", "kill", node], check=True, capture_output=True)
    try:
        sample = {name: held[len(held) // 2] for name, held in STATE["ids"].items()}

        def down_answered():
            status, _, body = request(f"/api/agi/beneficiaries/{sample[down]}")
            return status == 503 and body.get("shard") == down

        wait_for(down_answered, 30, f"a read of {down} to fail, naming it")
        status, _, body = request(f"/api/agi/beneficiaries/{sample[down]}")
        assert down in body["error"], body
        for name, beneficiary in sample.items():
            if name != down:
                status, _, body = request(f"/api/agi/beneficiaries/{beneficiary}")
                assert (status, body["id"]) == (200, beneficiary), body
        for app in APPS:
            wait_for(lambda app=app: on_app(app, "/api/agi/health/ready")[1]["unavailable"] == [down], 30, "readiness")
            status, body = on_app(app, "/api/agi/health/ready")
            assert (status, body["status"]) == (200, "degraded"), body
        assert set(haproxy_status(LB).values()) == {"UP"}, haproxy_status(LB)
        # New beneficiaries go to the shards that answer.
        answers = [create(f"while {down} is down {n}") for n in range(20)]
        assert {status for status, _, _ in answers} == {201}, answers[:3]
        assert down not in {body["shard"] for _, _, body in answers}
        STATE["during_outage"] = [body["id"] for _, _, body in answers]
    finally:
        subprocess.run(["docker", "start", node], check=True, capture_output=True)
    assert wait_booted(node, 120), f"{node} did not boot"
    for app in APPS:
        wait_for(lambda app=app: on_app(app, "/api/agi/health/ready")[1]["status"] == "ready", 90, f"{app} ready")
    status, _, body = request(f"/api/agi/beneficiaries/{sample[down]}")
    assert (status, body["id"]) == (200, sample[down]), body


def node_identity(node):
    query = "SELECT pg_postmaster_start_time(), pg_is_in_recovery(), timeline_id FROM pg_control_checkpoint()"
    return psql(node, query)


def test_failover_of_one_shard_promotes_its_replica_and_touches_no_other_shard():
    """shard1's primary host is killed; failover.yml -e shard=shard1 promotes its replica; the app
    finds it (multi-host connection strings); the other shards' servers are not even restarted.
    Then the old primary comes back only through rejoin.yml -e shard=shard1."""
    name = SHARDS[0]["name"]
    old = primary(name)
    (replica,) = [n for n in GROUPS[f"{name}_postgresql"] if n != old]
    others = {primary(s["name"]): node_identity(primary(s["name"])) for s in SHARDS[1:]}
    # The runbook's first step while all is well: the plan, nothing changes (it also leaves the
    # nodes' facts in the control node's cache, where the run after the crash finds the dead one's).
    out = run_playbook(ROOT / "playbooks/failover.yml", "-e", f"shard={name}", "--check", inventory=INVENTORY)
    assert out.returncode != 0 and "FAILOVER REFUSED" in out.text, out.text[-3000:]  # its primary is alive
    subprocess.run(["docker", "kill", old], check=True, capture_output=True)
    out = run_playbook(ROOT / "playbooks/failover.yml", "-e", f"shard={name}", "-e", f"confirm_dead={old}",
                       inventory=INVENTORY)  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert f"promoted: {replica}" in out.text, out.text[-3000:]
    STATE["primary"][name] = replica
    assert psql(replica, "SELECT pg_is_in_recovery()") == "f"
    assert {node: node_identity(node) for node in others} == others, "another shard's server changed"
    # A client reads shard1's beneficiaries again, and creates land there too.
    beneficiary = STATE["ids"][name][0]
    wait_for(lambda: request(f"/api/agi/beneficiaries/{beneficiary}")[0] == 200, 60, f"{name} to answer again")
    psql(replica, "ALTER TABLE beneficiaries ALTER COLUMN id RESTART WITH 90000")  # its next ID is known
    answers = [create(f"after failover {n}") for n in range(40)]
    assert {status for status, _, _ in answers} == {201}, answers[:3]
    assert 90000 in [body["id"] for _, _, body in answers if body["shard"] == name], answers

    # On-call brings the old primary back: its start guard keeps it down until rejoin.yml.
    subprocess.run(["docker", "start", old], check=True, capture_output=True)
    assert wait_booted(old, 120), f"{old} did not boot"
    out = run_playbook(ROOT / "playbooks/rejoin.yml", "-e", f"shard={name}", "-e", f"rejoin_host={old}",
                       inventory=INVENTORY)  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert psql(old, "SELECT pg_is_in_recovery()") == "t"
    wait_for(lambda: psql(old, "SELECT count(*) FROM beneficiaries WHERE id = 90000") == "1", 60, "the rejoined node")


def test_a_misnamed_or_missing_shard_is_refused_before_anything():
    out = run_playbook(ROOT / "playbooks/switchover.yml", inventory=INVENTORY)  # every shard's nodes at once
    assert out.returncode != 0
    assert "their clusters: ['shard" in out.text and "give -e shard=<name>" in out.text, out.text[-3000:]
    out = run_playbook(ROOT / "playbooks/failover.yml", "-e", "shard=shard9", inventory=INVENTORY)
    assert out.returncode != 0
    assert "'shard9_postgresql' must be an inventory group" in out.text, out.text[-3000:]
    assert "give -e shard=<name>, one of shard1, shard2, shard3" in out.text, out.text[-3000:]


def pgbackrest_info(stanza):
    out = docker_exec(REPOSITORY, "runuser", "-u", "pgbackrest", "--", "pgbackrest", f"--stanza={stanza}",
                      "--output=json", "info", timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)[0]


def test_each_shard_has_its_own_backup_which_restores():
    """One stanza per shard, each with a backup since the converge; backup.yml -e shard= adds one to
    that shard's stanza only; then each shard's newest backup is restored on its own node into a
    scratch directory, started on a spare port, and holds the shard's rows (and no other shard's)."""
    counts = {s["name"]: len(pgbackrest_info(f"{s['name']}_postgresql")["backup"]) for s in SHARDS}
    assert all(count >= 1 for count in counts.values()), counts
    for shard in SHARDS:
        name = shard["name"]
        out = run_playbook(ROOT / "playbooks/backup.yml", "-e", f"shard={name}", "-e", "backup_type=incr",
                           inventory=INVENTORY, timeout=900)  # fmt: skip
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
        after = {s["name"]: len(pgbackrest_info(f"{s['name']}_postgresql")["backup"]) for s in SHARDS}
        assert after == {**counts, name: counts[name] + 1}, (name, counts, after)
        counts = after
        assert pgbackrest_info(f"{name}_postgresql")["status"]["message"] == "ok"

    for shard in SHARDS:
        node, stanza = primary(shard["name"]), f"{shard['name']}_postgresql"
        scratch = "/var/lib/postgresql/restore-check"
        script = (
            f"set -e; rm -rf {scratch}; mkdir -m 700 {scratch};"
            f" pgbackrest --stanza={stanza} --pg1-path={scratch} --type=immediate --target-action=promote"
            " --archive-mode=off restore >/dev/null;"
            f" printf 'port = 5499\\nlisten_addresses = \\047\\047\\nunix_socket_directories = \\047/tmp\\047\\n"
            f"archive_mode = off\\n' > {scratch}/postgresql.conf;"
            # Recovery needs these at least as high as on the server the backup came from.
            " psql -Atc \"SELECT name || ' = ' || setting FROM pg_settings WHERE name IN ('max_connections',"
            " 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction')\""
            f" >> {scratch}/postgresql.conf;"
            f" printf 'local all all peer\\n' > {scratch}/pg_hba.conf;"
            f" /usr/lib/postgresql/15/bin/pg_ctl -D {scratch} -w -t 120 -l /tmp/restore-check.log start >/dev/null;"
            " psql -h /tmp -p 5499 -d rehab -Atc 'SELECT min(id), max(id), count(*) FROM beneficiaries';"
            f" /usr/lib/postgresql/15/bin/pg_ctl -D {scratch} -m fast stop >/dev/null; rm -rf {scratch}"
        )
        out = docker_exec(node, "runuser", "-u", "postgres", "--", "sh", "-c", script, timeout=300)
        assert out.returncode == 0, f"{node}: {out.stdout} {out.stderr}"
        low, high, count = (int(v) for v in out.stdout.strip().split("|"))
        first, last = bounds(shard)
        assert first <= low <= high <= last and count > 0, (shard["name"], out.stdout)


def test_boundary_ids_land_on_their_shards():
    """IDs either side of each boundary, issued by the shards' own sequences: shard1 and shard2 are
    set to issue their last ID next and shard3 is made the fullest, so the next creates go to shard1
    and shard2 (100000, 200000); 100001 and 200001 were the first IDs shard2 and shard3 issued."""
    (s1, s2, s3) = SHARDS
    psql(primary(s1["name"]), f"ALTER TABLE beneficiaries ALTER COLUMN id RESTART WITH {s1['max_id']}")
    psql(primary(s2["name"]), f"ALTER TABLE beneficiaries ALTER COLUMN id RESTART WITH {s2['max_id']}")
    psql(primary(s3["name"]), "INSERT INTO beneficiaries (name) SELECT 'filler' FROM generate_series(1, 5000)")
    time.sleep(7)  # one placement refresh (REHAB_AGI_PLACEMENT_REFRESH, 5 s): shard3 is the fullest everywhere
    issued = []
    for n in range(6):
        status, _, body = create(f"boundary {n}")
        assert status == 201, body
        issued.append(body["id"])
        if {s1["max_id"], s2["max_id"]} <= set(issued):
            break
    assert {s1["max_id"], s2["max_id"]} <= set(issued), issued
    homes = {s1["max_id"]: s1, s2["min_id"]: s2, s2["max_id"]: s2, s3["min_id"]: s3}
    for beneficiary, shard in homes.items():
        holders = [s["name"] for s in SHARDS if beneficiary in rows(s)]
        assert holders == [shard["name"]], (beneficiary, holders)
        status, _, body = request(f"/api/agi/beneficiaries/{beneficiary}")
        assert (status, body["id"]) == (200, beneficiary), body
    # A shard's database refuses an ID of another shard's range (its CHECK constraint).
    with pytest.raises(AssertionError, match=f"beneficiaries_id_in_shard_1_{s1['max_id']}"):
        psql(primary(s1["name"]), f"INSERT INTO beneficiaries (id, name) VALUES ({s2['min_id']}, 'misplaced')")


def test_rows_outside_a_shard_range_stop_phase3_before_any_change():
    """What a Phase 2 database becoming shard 1 with IDs above its range looks like, made on shard2
    (its CHECK constraint set aside as a database without it would be): phase3.yml names the rows
    and changes nothing; nothing is moved."""
    s2 = SHARDS[1]
    node = primary(s2["name"])
    check = f"beneficiaries_id_in_shard_{s2['min_id']}_{s2['max_id']}"
    psql(node, f"ALTER TABLE beneficiaries DROP CONSTRAINT {check}")
    try:
        psql(node, "INSERT INTO beneficiaries (id, name) OVERRIDING SYSTEM VALUE VALUES (7, 'a'), (250000, 'b')")
        out = run_playbook(ROOT / "playbooks/phase3.yml", inventory=INVENTORY)
        assert out.returncode != 0
        assert (
            f"Phase 3 refused, nothing was changed: shard2 (IDs {s2['min_id']}-{s2['max_id']}) holds 2 row(s)"
            f" outside its range in rehab.beneficiaries on {node}: IDs 7, 250000." in out.text
        ), out.text[-3000:]
        recap = out.stdout[out.stdout.index("PLAY RECAP") :]
        assert "changed=0" in recap and not any(f"changed={n}" in recap for n in range(1, 10)), recap
        assert psql(node, "SELECT count(*) FROM beneficiaries WHERE id IN (7, 250000)") == "2"  # not moved
    finally:
        psql(node, "DELETE FROM beneficiaries WHERE id IN (7, 250000)")
        low, high = s2["min_id"], s2["max_id"]
        psql(node, f"ALTER TABLE beneficiaries ADD CONSTRAINT {check} CHECK (id BETWEEN {low} AND {high})")
