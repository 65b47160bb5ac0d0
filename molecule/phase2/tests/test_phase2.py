"""Phase 2 verified as a user reaches it: through HAProxy, on real PostgreSQL replicas, a real Redis
Cluster and Prometheus. The scenario's prepare step ran Phase 1 first, so this is also the upgrade.

Tests run in file order; the fault tests (a dead app server, a rolling update under load) come last
and leave the deployment as they found it. Traffic goes only to the scenario's own containers.
"""

import base64
import functools
import hashlib
import http.client
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import (  # noqa: E402
    APP_PORT,
    LAB_IMAGE,
    LAB_MONITORING_AUTH,
    HttpLoad,
    assert_tls_verified,
    build_release,
    container_address,
    container_gateway,
    container_network,
    docker_exec,
    haproxy_status,
    lab_secret,
    lab_tls_context,
    psql,
    run_playbook,
    tls_path,
    wait_for,
)

from ansible_collections.rehab.scale.plugins.module_utils.release_artifact import wheel_info  # noqa: E402

INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "")).parent
APPS = ["p2-app1", "p2-app2", "p2-app3"]
REPLICAS = ["p2-pg2", "p2-pg3", "p2-pg4"]
REDIS_ADMIN = lab_secret("vault_rehab_redis_password")
STATS = ("admin", lab_secret("vault_haproxy_stats_password"))
ALERTS = {
    "HostCpuHigh", "HostMemoryHigh", "HostDiskHigh", "ErrorRateHigh", "ResponseTimeHigh", "RequestQueueBuilding",
    "CacheHitRateLow", "BackendServerDown", "BackendNoServers", "DatabaseConnectionsHigh", "ReplicationLagHigh",
    "PostgresDown", "ReplicaDown", "PostgresSplitBrain", "RedisDown", "RedisClusterNotOk", "ScaleUpRecommended",
    "ScaleDownPossible",
}  # fmt: skip


@pytest.fixture(scope="module")
def lb():
    return f"https://{container_address('p2-lb1')}"


_TLS = {}


def tls():
    """Trust the environment's CA, as a client of the lab would (read once from the balancer)."""
    if "context" not in _TLS:
        _TLS["context"] = lab_tls_context("p2-lb1")
    return _TLS["context"]


def request(url, method="GET", body=None, auth=None):
    """(status, headers, parsed JSON or text) of one request from this machine to a lab container;
    https URLs are verified against the environment's CA (host name included)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - lab URL
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        context = tls() if url.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=10, context=context) as response:  # noqa: S310
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, exc.headers, exc.read()
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode(errors="replace")


def redis_cli(node, *args, port=7000):
    # The admin user (the default user is off); the password through REDISCLI_AUTH, not -a.
    out = docker_exec(
        node,
        "env",
        f"REDISCLI_AUTH={REDIS_ADMIN}",
        "redis-cli",
        "--tls",
        "--cacert",
        tls_path("ca"),
        "-h",
        container_address(node),
        "--user",
        "admin",
        "-p",
        str(port),
        *args,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_requests_through_haproxy_reach_all_three_app_servers(lb):
    served = {}
    for _ in range(30):
        status, headers, body = request(f"{lb}/api/agi/health/ready")
        assert status == 200, body
        served[headers["X-Served-By"]] = served.get(headers["X-Served-By"], 0) + 1
    assert sorted(served) == APPS
    assert min(served.values()) >= 9  # round robin: 10 each


def test_plain_http_is_redirected_to_https_which_sends_hsts(lb):
    address = container_address("p2-lb1")
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    conn.request("GET", "/api/agi/health")
    answer = conn.getresponse()
    assert (answer.status, answer.getheader("Location")) == (301, f"https://{address}/api/agi/health")
    status, headers, _ = request(f"{lb}/api/agi/health")  # verified: CA and IP address
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000"


def test_phase1_beneficiary_survives_the_upgrade(lb):
    assert psql("p2-pg1", "select pg_is_in_recovery()") == "f", "the Phase 1 database must stay the primary"
    found = psql("p2-pg1", "select id from beneficiaries where name = 'Created before Phase 2'")
    assert found, "the beneficiary created on Phase 1 is gone"
    status, _, body = request(f"{lb}/api/agi/beneficiaries/{found.splitlines()[0]}")
    assert status == 200
    assert body["name"] == "Created before Phase 2"


def test_a_write_through_the_app_is_read_back_on_every_replica(lb):
    new = {"name": "Written in Phase 2", "program": "gait"}
    status, _, created = request(f"{lb}/api/agi/beneficiaries", "POST", new)
    assert status == 201, created
    for replica in REPLICAS:
        assert psql(replica, "select pg_is_in_recovery()") == "t"
        wait_for(
            lambda r=replica: psql(r, f"select name from beneficiaries where id = {created['id']}") == created["name"],
            10,
            f"beneficiary {created['id']} on {replica}",
        )


def test_the_cache_is_shared_through_the_cluster(lb):
    _, _, created = request(f"{lb}/api/agi/beneficiaries", "POST", {"name": "Cached once"})
    caches, servers = [], set()
    for _ in range(4):
        status, headers, body = request(f"{lb}/api/agi/beneficiaries/{created['id']}")
        assert status == 200 and body["name"] == "Cached once"
        caches.append(headers["X-Cache"])
        servers.add(headers["X-Served-By"])
    # One miss fills the cluster; the other app servers then hit the same key.
    assert caches == ["miss", "hit", "hit", "hit"]
    assert len(servers) >= 3


def test_redis_cluster_is_ok_with_every_slot_and_no_replica_beside_its_master():
    info = dict(line.split(":", 1) for line in redis_cli("p2-app1", "cluster", "info").split() if ":" in line)
    assert info["cluster_state"] == "ok"
    assert info["cluster_slots_assigned"] == "16384"
    assert info["cluster_slots_ok"] == "16384"
    assert info["cluster_known_nodes"] == "6"
    nodes = [line.split() for line in redis_cli("p2-app1", "cluster", "nodes").splitlines()]
    by_id = {n[0]: n for n in nodes}
    masters = [n for n in nodes if "master" in n[2]]
    replicas = [n for n in nodes if "slave" in n[2]]
    assert len(masters) == 3 and len(replicas) == 3
    for replica in replicas:
        master = by_id[replica[3]]
        same_host = replica[1].split(":")[0] == master[1].split(":")[0]
        assert not same_host, f"{replica[1]} replicates {master[1]} on its own host"


def test_the_phase1_standalone_redis_is_retired():
    assert docker_exec("p2-app1", "systemctl", "is-active", "redis-server").stdout.strip() == "inactive"
    assert docker_exec("p2-app1", "systemctl", "is-enabled", "redis-server").stdout.strip() == "disabled"


def test_the_statistics_page_needs_the_password():
    stats = f"https://{container_address('p2-lb1')}:8404/stats"
    assert request(stats)[0] == 401
    assert request(stats, auth=("admin", "wrong-password-here"))[0] == 401
    status, _, page = request(stats, auth=STATS)
    assert status == 200 and "rehab_agi" in page


def prometheus(path):
    """GET on Prometheus' API from this machine, over HTTPS with the lab's login; the parsed answer."""
    status, _, body = request(f"https://{container_address('p2-mon1')}:9090/api/v1/{path}", auth=LAB_MONITORING_AUTH)
    assert status == 200, (path, status, body)
    return body["data"]


def test_prometheus_and_alertmanager_need_the_login():
    for port in (9090, 9093):
        base = f"https://{container_address('p2-mon1')}:{port}"
        assert request(f"{base}/-/ready")[0] == 401
        assert request(f"{base}/-/ready", auth=(LAB_MONITORING_AUTH[0], "wrong-password-here"))[0] == 401
        assert request(f"{base}/-/ready", auth=LAB_MONITORING_AUTH)[0] == 200
        # Plain HTTP gets only "Client sent an HTTP request to an HTTPS server" (400).
        assert request(f"http://{container_address('p2-mon1')}:{port}/-/ready")[0] == 400
    # The lifecycle endpoints are off: even with the login, /-/quit stops nothing.
    base = f"https://{container_address('p2-mon1')}:9090"
    assert request(f"{base}/-/quit", method="POST", auth=LAB_MONITORING_AUTH)[0] == 403
    assert request(f"{base}/-/ready", auth=LAB_MONITORING_AUTH)[0] == 200


def test_prometheus_and_alertmanager_certificates_verify():
    # As openssl sees them from the monitoring host: chained to the lab CA, naming the address.
    for port in (9090, 9093):
        assert_tls_verified("p2-mon1", container_address("p2-mon1"), port)


def test_prometheus_sees_every_target_up():
    def all_up():
        targets = prometheus("targets")["activeTargets"]
        return targets and all(t["health"] == "up" for t in targets)

    wait_for(all_up, 90, "every Prometheus target up")
    targets = prometheus("targets")["activeTargets"]
    jobs = {t["labels"]["job"] for t in targets}
    assert jobs == {"prometheus", "node", "rehab-agi", "postgres", "redis", "haproxy", "alertmanager"}
    assert len([t for t in targets if t["labels"]["job"] == "redis"]) == 6
    assert len([t for t in targets if t["labels"]["job"] == "postgres"]) == 4


def test_alert_rules_are_loaded_and_alertmanager_is_wired():
    groups = prometheus("rules")["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert loaded >= ALERTS, sorted(ALERTS - loaded)
    wait_for(lambda: prometheus("alertmanagers")["activeAlertmanagers"], 30, "an active Alertmanager")
    # Prometheus delivers alerts over HTTPS, to the address the certificate names.
    managers = [a["url"] for a in prometheus("alertmanagers")["activeAlertmanagers"]]
    assert managers == [f"https://{container_address('p2-mon1')}:9093/api/v2/alerts"]


def test_a_split_brain_alert_is_routed_to_the_webhook():
    config = "/etc/prometheus/alertmanager.yml"
    routed = docker_exec(
        "p2-mon1", "amtool", "config", "routes", "test", f"--config.file={config}",
        "alertname=PostgresSplitBrain", "severity=critical",
    )  # fmt: skip
    assert routed.returncode == 0, routed.stderr
    assert routed.stdout.split() == ["default"]
    assert "http://127.0.0.1:9199/alerts" in docker_exec("p2-mon1", "cat", config).stdout


def test_redis_clients_replication_and_bus_use_tls_only():
    settings = {name: redis_cli("p2-app1", "config", "get", name).split()[1] for name in
                ("port", "tls-port", "tls-replication", "tls-cluster")}  # fmt: skip
    assert settings == {"port": "0", "tls-port": "7000", "tls-replication": "yes", "tls-cluster": "yes"}
    # The client port completes a handshake verified against the lab CA (clients log in by ACL user).
    address = container_address("p2-app1")
    assert_tls_verified("p2-app2", address, 7000)
    # The cluster bus authenticates its peers: a handshake without a certificate from the CA is
    # refused; with a cluster host's own certificate and key it completes, verified both ways.
    bus = (
        f"openssl s_client -connect {address}:17000 -CAfile {tls_path('ca')} -verify_return_error -verify_ip {address}"
    )
    # TLS 1.2, where the refusal ends the handshake itself (TLS 1.3 sends it after the client's
    # Finished, which a client that hangs up at once may never read).
    anonymous = docker_exec("p2-app2", "sh", "-c", f"echo | {bus} -tls1_2")
    assert anonymous.returncode != 0 and "handshake failure" in anonymous.stderr, anonymous.stderr[-1000:]
    peer = docker_exec(
        "p2-app2", "sh", "-c", f"echo | {bus} -cert {tls_path('certificate')} -key {tls_path('key')}"
    )  # fmt: skip
    assert peer.returncode == 0 and "Verify return code: 0 (ok)" in peer.stdout, peer.stderr[-1000:]
    # Replicas stream from their masters over TLS (tls-replication): the link is up.
    assert "master_link_status:up" in redis_cli("p2-app1", "info", "replication", port=7001)


def test_redis_cluster_state_is_exported():
    wait_for(
        lambda: len(prometheus("query?query=redis_cluster_state%3D%3D1")["result"]) == 6,
        60,
        "redis_cluster_state 1 from all six instances",
    )


def test_promtool_unit_tests_pass_on_the_rendered_rules():
    # /tmp is a tmpfs in the lab containers, where `docker cp` cannot write.
    assert docker_exec("p2-mon1", "mkdir", "-p", "/root/promtool").returncode == 0
    copy = subprocess.run(
        ["docker", "cp", f"{ROOT}/tests/promtool/rehab-alerts.test.yml", "p2-mon1:/root/promtool/"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copy.returncode == 0, copy.stderr
    assert docker_exec("p2-mon1", "cp", "/etc/prometheus/rules/rehab-alerts.yml", "/root/promtool/").returncode == 0
    out = docker_exec("p2-mon1", "promtool", "test", "rules", "/root/promtool/rehab-alerts.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


HOSTS = ["p2-lb1", *APPS, "p2-pg1", *REPLICAS, "p2-mon1"]
# The balancer's front end is the one port meant for everybody (haproxy_listen_port, read below).
PROBE = (
    'for t in "$@"; do (timeout 2 bash -c "</dev/tcp/${t%:*}/${t#*:}" 2>/dev/null'
    ' && echo "$t open" || echo "$t closed") & done; wait'
)


def listening(node):
    """Every TCP port the host serves on a non-loopback address, from the host itself (ss)."""
    out = docker_exec(node, "ss", "-ltnH")
    assert out.returncode == 0, out.stderr
    ports = set()
    for line in out.stdout.splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        if not address.startswith(("127.", "[::1]")):
            ports.add(int(port))
    return ports


def probe(source, targets):
    """{'ip:port': 'open'|'closed'} as seen by a TCP connect from ``source`` (2 s per port)."""
    out = docker_exec(source, "bash", "-c", PROBE, "probe", *targets, timeout=30)
    return dict(line.rsplit(" ", 1) for line in out.stdout.split("\n") if line)


@pytest.fixture(scope="module")
def outsider():
    """A container on the lab network that is in no inventory group (so in no allow-list)."""
    network = container_network("p2-lb1")
    subprocess.run(["docker", "rm", "-f", "p2-outsider"], capture_output=True, check=False)
    subprocess.run(
        ["docker", "run", "-d", "--name", "p2-outsider", "--network", network, "--entrypoint", "sleep",
         LAB_IMAGE, "infinity"],
        capture_output=True, check=True,
    )  # fmt: skip
    yield "p2-outsider"
    subprocess.run(["docker", "rm", "-f", "p2-outsider"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def served():
    """ip:port of every port a lab host serves beyond loopback, except the balancer's front end."""
    front = {f"{container_address('p2-lb1')}:{port}" for port in (80, 443)}  # HTTP (redirect), HTTPS
    targets = [f"{container_address(node)}:{port}" for node in HOSTS for port in sorted(listening(node))]
    assert len(targets) > 20, targets  # PostgreSQL, Redis and its bus, exporters, Prometheus, ...
    assert front <= set(targets)
    return front, [t for t in targets if t not in front]


def test_the_firewall_lets_an_outsider_reach_only_the_balancer_front_end(outsider, served):
    front, targets = served
    seen = probe(outsider, [*front, *targets])
    for address in front:
        assert seen.pop(address) == "open"
    assert {t for t, state in seen.items() if state == "open"} == set(), "reachable from a host in no group"
    assert len(seen) == len(targets)


def test_without_the_firewall_the_same_probe_finds_them_open(outsider, served):
    # So the test above cannot pass on closed services alone: stop the firewall, probe, restore.
    _, targets = served
    for node in HOSTS:
        assert docker_exec(node, "systemctl", "stop", "rehab-firewall").returncode == 0
    try:
        seen = probe(outsider, targets)
    finally:
        for node in HOSTS:
            assert docker_exec(node, "systemctl", "start", "rehab-firewall").returncode == 0
    assert {t for t, state in seen.items() if state == "closed"} == set()
    assert probe(outsider, targets[:3]) == dict.fromkeys(targets[:3], "closed")


def test_the_right_groups_get_through_the_firewall():
    pg1, app1 = container_address("p2-pg1"), container_address("p2-app1")
    assert probe("p2-app1", [f"{pg1}:5432"]) == {f"{pg1}:5432": "open"}  # app -> PostgreSQL
    assert probe("p2-mon1", [f"{app1}:9121", f"{pg1}:9187"]) == {f"{app1}:9121": "open", f"{pg1}:9187": "open"}
    assert probe("p2-app2", [f"{app1}:17000"]) == {f"{app1}:17000": "open"}  # Redis bus between nodes
    assert probe("p2-pg2", [f"{app1}:7000"]) == {f"{app1}:7000": "closed"}  # a database is no Redis client
    ruleset = docker_exec("p2-app1", "nft", "list", "chain", "inet", "rehab", "input").stdout
    assert f"ip saddr {container_gateway('p2-app1')} tcp dport 22 accept" in ruleset  # SSH from the control node


def test_a_stopped_app_server_leaves_the_pool_within_3_s_and_no_request_fails(lb):
    _, _, created = request(f"{lb}/api/agi/beneficiaries", "POST", {"name": "Under fire"})
    load = HttpLoad(f"{lb}/api/agi/beneficiaries/{created['id']}", context=tls())
    load.start()
    time.sleep(2)
    stopped = time.monotonic()
    # A stop, not a kill: systemd would restart a killed service (Restart=on-failure) at once.
    assert docker_exec("p2-app2", "systemctl", "stop", "--no-block", "rehab-agi").returncode == 0
    wait_for(lambda: haproxy_status("p2-lb1")["p2-app2"].startswith("DOWN"), 10, "p2-app2 marked DOWN")
    detected = time.monotonic() - stopped
    served_before = load.by_server.get("p2-app2", 0)
    time.sleep(3)
    load.stop.set()
    load.join()
    try:
        assert detected < 3.0, f"p2-app2 left the pool after {detected:.2f} s"
        assert load.by_server.get("p2-app2", 0) == served_before, "p2-app2 served requests after it was marked DOWN"
        assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {load.by_status} {load.errors[:3]}"
        assert load.total > 100
    finally:
        docker_exec("p2-app2", "systemctl", "start", "rehab-agi")
        wait_for(lambda: haproxy_status("p2-lb1")["p2-app2"] == "UP", 30, "p2-app2 back UP")
    print(f"stopped server detected in {detected:.2f} s; {load.total} requests, {load.failed} failed")


def test_a_restore_drains_the_app_servers_and_no_cached_row_outlives_it(lb):
    """playbooks/restore.yml on the whole deployment, to a restore point made by backup.yml: the
    balancer holds the app servers out while the database is replaced (seen through its runtime
    API), a beneficiary written after the point is gone from the API although Redis held it, and the
    three replicas stream from the restored primary again."""
    _, _, kept = request(f"{lb}/api/agi/beneficiaries", "POST", {"name": "Before the restore point"})
    point = f"before-restore-{int(time.time())}"  # a name is recorded once
    backup = run_playbook(
        ROOT / "playbooks/backup.yml", "-e", f"restore_point={point}", "-e", "backup_type=none",
        inventory=INVENTORY,
    )  # fmt: skip
    assert backup.returncode == 0, backup.stdout[-3000:]
    _, _, lost = request(f"{lb}/api/agi/beneficiaries", "POST", {"name": "After the restore point"})
    for beneficiary in (kept, lost):
        request(f"{lb}/api/agi/beneficiaries/{beneficiary['id']}")
        _, headers, _ = request(f"{lb}/api/agi/beneficiaries/{beneficiary['id']}")
        assert headers["X-Cache"] == "hit"
    seen, done = {app: set() for app in APPS}, threading.Event()

    def watch():
        while not done.is_set():
            for server, status in haproxy_status("p2-lb1").items():
                seen[server].add(status.split()[0])
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    variables = {"restore_target": "name", "restore_value": point, "restore_overwrite": True}
    out = run_playbook(ROOT / "playbooks/restore.yml", "-e", json.dumps(variables), inventory=INVENTORY, timeout=900)
    done.set()
    watcher.join()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert all(seen[app] & {"MAINT", "DRAIN"} for app in APPS), seen  # out of the pool meanwhile
    # Back in: UP, or "UP 1/2" just after leaving maintenance (its checks not yet at full health).
    assert {status.split()[0] for status in haproxy_status("p2-lb1").values()} == {"UP"}
    assert request(f"{lb}/api/agi/beneficiaries/{lost['id']}")[0] == 404  # not served from the cache
    status, headers, body = request(f"{lb}/api/agi/beneficiaries/{kept['id']}")
    assert status == 200 and body["name"] == "Before the restore point" and headers["X-Cache"] == "miss"
    wait_for(
        lambda: psql("p2-pg1", "select count(*) from pg_stat_replication where state = 'streaming'") == "3",
        120, "three replicas streaming from the restored primary",
    )  # fmt: skip
    print(f"restore of the Phase 2 deployment to a restore point: {out.seconds:.0f} s")


def running_versions():
    """The version each app server's running process reports (its liveness body), read on the server."""
    versions = {}
    for app in APPS:
        out = docker_exec(app, "curl", "-s", "-m", "5", f"http://127.0.0.1:{APP_PORT}/api/agi/health")
        versions[app] = json.loads(out.stdout).get("version") if out.returncode == 0 else f"down: {out.stderr}"
    return versions


def release_links(app):
    """Where a server's current and previous links point, and the mtime of current."""
    out = docker_exec(app, "stat", "-c", "%N %Y", "/opt/rehab-agi/current", "/opt/rehab-agi/previous")
    return out.stdout


# Release 2.0.0 of the reference service: reads and writes `programme` (its expanding migration adds
# it, its contracting one drops `program`); tests/fixtures/rehab-agi-2.0.0 has the migrations.
RELEASE_2_CODE = {
    "INSERT INTO beneficiaries (name, program)": "INSERT INTO beneficiaries (name, programme)",
    "RETURNING id, name, program, created_at": "RETURNING id, name, programme AS program, created_at",
    "SELECT id, name, program, created_at FROM": "SELECT id, name, programme AS program, created_at FROM",
}
RELEASE_2_MIGRATIONS = ROOT / "tests/fixtures/rehab-agi-2.0.0/migrations"
# The reference release the inventory deploys (make release), read from the wheel's own metadata.
REFERENCE = wheel_info(str(ROOT / "roles/app/files/rehab-agi.whl"))["version"]


def migrations_record():
    rows = psql("p2-pg1", "SELECT id, kind, release FROM rehab_schema_migrations ORDER BY id")
    return [tuple(row.split("|")) for row in rows.splitlines()]


def columns():
    query = "SELECT column_name FROM information_schema.columns WHERE table_name = 'beneficiaries' ORDER BY 1"
    return psql("p2-pg1", query).split()


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Version 2 of the reference service, served to the control node over HTTP (loopback) as a
    user's artifact store would, and a version 3 whose readiness always fails."""
    directory = tmp_path_factory.mktemp("releases")
    v2 = build_release("2.0.0", directory, RELEASE_2_CODE, RELEASE_2_MIGRATIONS)
    broken = {**RELEASE_2_CODE, 'checks = {"postgresql"': 'checks = {"deliberate": "broken", "postgresql"'}
    v3 = build_release("3.0.0", directory, broken, RELEASE_2_MIGRATIONS)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(v2.parent))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{v2.name}"
    # Beside each build, scripts/build-release.sh puts its dependency wheels (rehab-shard-map).
    yield {
        "v2": v2,
        "v2_url": url,
        "v2_sha256": hashlib.sha256(v2.read_bytes()).hexdigest(),
        "v3": v3,
        "wheels": str(v2.parent / "wheels"),
    }
    server.shutdown()


def test_a_release_rolls_out_under_load_and_fails_no_request(lb, releases):
    """Version 2, downloaded by URL and checked against its sha256, rolled out by release.yml together
    with a configuration change: its expanding migration runs once, before the first server
    restarts; one restart per server; no failed request. phase2.yml rolls out through the same role
    in the same kind of play (serial 1, no failure allowed; tests/unit/test_rollout_plays.py), so
    the scenario does not pay for a fourth full phase2.yml run here (docs/benchmarks.md)."""
    assert set(running_versions().values()) == {REFERENCE}
    assert migrations_record() == [("1", "expand", REFERENCE)]
    _, _, created = request(f"{lb}/api/agi/beneficiaries", "POST", {"name": "Rolled"})
    load = HttpLoad(f"{lb}/api/agi/beneficiaries/{created['id']}", context=tls())
    load.start()
    release = {
        "app_release": {"url": releases["v2_url"], "sha256": releases["v2_sha256"], "wheels": releases["wheels"]},
        "app_log_level": "DEBUG",
    }
    out = run_playbook(ROOT / "playbooks/release.yml", "-e", json.dumps(release), inventory=INVENTORY, timeout=900)
    load.stop.set()
    load.join()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    for app in APPS:
        env = docker_exec(app, "cat", "/etc/rehab-agi/rehab-agi.env").stdout
        assert "REHAB_AGI_LOG_LEVEL=DEBUG" in env
    # The release and the configuration change share one drained restart per server.
    assert out.stdout.count("RUNNING HANDLER [rehab.scale.app : Drain rehab-agi from the balancers]") == 3
    assert out.stdout.count("RUNNING HANDLER [rehab.scale.app : Restart the rehab-agi service]") == 3
    assert running_versions() == dict.fromkeys(APPS, "2.0.0")
    assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {load.by_status} {load.errors[:3]}"
    assert load.total > 200
    assert set(haproxy_status("p2-lb1").values()) == {"UP"}
    for app in APPS:
        assert "current' -> 'releases/2.0.0'" in release_links(app)
        assert f"previous' -> 'releases/{REFERENCE}'" in release_links(app)
    # Expanded once, by one host, before p2-app1 (the first) restarted on 2.0.0.
    assert migrations_record() == [("1", "expand", REFERENCE), ("2", "expand", "2.0.0")]
    assert {"program", "programme"} <= set(columns())
    migrated = psql("p2-pg1", "SELECT extract(epoch FROM applied_at) FROM rehab_schema_migrations WHERE id = 2")
    started = docker_exec("p2-app1", "systemctl", "show", "rehab-agi", "--timestamp=unix", "-P", "ActiveEnterTimestamp")
    assert float(migrated) < int(started.stdout.strip().lstrip("@"))
    _, _, row = request(f"{lb}/api/agi/beneficiaries", "POST", {"name": "On 2.0.0", "program": "gait"})
    assert psql("p2-pg1", f"SELECT program, programme FROM beneficiaries WHERE id = {row['id']}") == "gait|gait"
    print(f"release 2.0.0 rolled out: {load.total} requests, {load.failed} failed, {out.seconds:.0f} s")


def test_a_broken_release_stops_on_the_first_server_which_goes_back(lb, releases):
    before = {app: release_links(app) for app in APPS[1:]}
    load = HttpLoad(f"{lb}/api/agi/health", context=tls())
    load.start()
    release = {"app_release": {"src": str(releases["v3"]), "wheels": releases["wheels"]}, "app_start_timeout": 10}
    out = run_playbook(ROOT / "playbooks/release.yml", "-e", json.dumps(release), inventory=INVENTORY)
    load.stop.set()
    load.join()
    assert out.returncode != 0
    assert "release 3.0.0 failed on p2-app1" in out.text and "it runs 2.0.0 again" in out.text, out.text[-3000:]
    assert len(migrations_record()) == 2, "3.0.0 carries no migration of its own"
    assert running_versions() == dict.fromkeys(APPS, "2.0.0")
    assert "current' -> 'releases/2.0.0'" in release_links("p2-app1")
    for app in APPS[1:]:
        assert release_links(app) == before[app], f"{app} was touched"
        assert docker_exec(app, "test", "-e", "/opt/rehab-agi/releases/3.0.0").returncode == 1
    assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {load.by_status} {load.errors[:3]}"
    wait_for(lambda: set(haproxy_status("p2-lb1").values()) == {"UP"}, 10, "every server UP")
    print(f"broken release stopped on p2-app1 in {out.seconds:.0f} s; {load.total} requests, {load.failed} failed")


def test_pruning_keeps_the_release_the_previous_link_names(releases):
    """A run that switches nothing (2.0.0 stays) with app_keep_releases=2, the least allowed: on
    p2-app1 the reference is the oldest of three (3.0.0, the broken one, is the newest) and beyond
    the two kept, but `previous` names it, so it stays (rollback.yml goes back to it)."""
    release = {"app_release": {"src": str(releases["v2"]), "wheels": releases["wheels"]}, "app_keep_releases": 2}
    out = run_playbook(ROOT / "playbooks/release.yml", "-e", json.dumps(release), inventory=INVENTORY)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    for app in APPS:
        installed = docker_exec(app, "ls", "/opt/rehab-agi/releases").stdout.split()
        assert {REFERENCE, "2.0.0"} <= set(installed), (app, installed)
        assert docker_exec(app, "test", "-d", "/opt/rehab-agi/previous/").returncode == 0, app
    assert running_versions() == dict.fromkeys(APPS, "2.0.0")


def test_bad_release_input_is_refused_before_anything_changes(releases):
    """On the deployment, nothing changes (tests/integration/test_release_refusals.py has every kind
    of bad release input)."""
    before = {app: release_links(app) for app in APPS}
    release = {"app_release": {"src": str(releases["v2"]), "sha256": "0" * 64}}
    out = run_playbook(ROOT / "playbooks/release.yml", "-e", json.dumps(release), inventory=INVENTORY)
    assert out.returncode != 0
    assert f"checksum mismatch for {releases['v2']}" in out.text, out.text[-2000:]
    out = run_playbook(ROOT / "playbooks/rollback.yml", "-e", "app_rollback_to=9.9.9", inventory=INVENTORY)
    assert out.returncode != 0
    assert (
        f"rollback refused on p2-app1: release 9.9.9 is not installed here; installed: {REFERENCE}, 2.0.0" in out.text
    )
    assert {app: release_links(app) for app in APPS} == before
    assert running_versions() == dict.fromkeys(APPS, "2.0.0")


def test_contracting_migrations_run_once_every_server_runs_the_release(releases):
    out = run_playbook(
        ROOT / "playbooks/contract.yml",
        "-e",
        json.dumps({"app_release": {"src": str(releases["v3"]), "wheels": releases["wheels"]}}),
        inventory=INVENTORY,
    )
    assert out.returncode != 0
    assert (
        "contracting migrations of release 3.0.0 refused: p2-app1, p2-app2, p2-app3 run(s) another release" in out.text
    )
    assert len(migrations_record()) == 2
    out = run_playbook(
        ROOT / "playbooks/contract.yml",
        "-e",
        json.dumps({"app_release": {"src": str(releases["v2"]), "wheels": releases["wheels"]}}),
        inventory=INVENTORY,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert migrations_record() == [("1", "expand", REFERENCE), ("2", "expand", "2.0.0"), ("3", "contract", "2.0.0")]
    assert "program" not in columns() and "programme" in columns()
    points = docker_exec("p2-mon1", "cat", "/var/lib/rehab-scale/restore-points.json").stdout
    assert '"release-2.0.0-contract-' in points
    _, _, row = request(f"https://{container_address('p2-lb1')}/api/agi/beneficiaries", "POST", {"name": "Contracted"})
    assert row["id"] > 0


def test_rollback_past_a_contracting_migration_is_refused_unless_forced(lb):
    before = {app: release_links(app) for app in APPS}
    out = run_playbook(ROOT / "playbooks/rollback.yml", inventory=INVENTORY)
    assert out.returncode != 0
    assert (
        f"rollback to {REFERENCE} refused: contracting migration(s) drop_program of release(s) 2.0.0 already ran"
        in out.text
    ), out.text[-2000:]
    assert {app: release_links(app) for app in APPS} == before
    load = HttpLoad(f"{lb}/api/agi/health", context=tls())
    load.start()
    out = run_playbook(ROOT / "playbooks/rollback.yml", "-e", "app_rollback_force=true", inventory=INVENTORY)
    load.stop.set()
    load.join()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert running_versions() == dict.fromkeys(APPS, REFERENCE)
    for app in APPS:
        assert f"current' -> 'releases/{REFERENCE}'" in release_links(app)
        assert "previous' -> 'releases/2.0.0'" in release_links(app)
    assert load.failed == 0, f"{load.failed} of {load.total} requests failed: {load.by_status} {load.errors[:3]}"
    # Why it is refused by default: the older code writes the column the contract removed.
    status, _, body = request(f"{lb}/api/agi/beneficiaries", "POST", {"name": "After the forced rollback"})
    assert status == 503, (status, body)
    print(f"forced rollback to {REFERENCE}: {out.seconds:.0f} s; {load.total} requests, {load.failed} failed")


def test_the_release_image_runs_unprivileged_and_answers_liveness_and_readiness(tmp_path):
    """playbooks/image.yml builds the OCI image of the inventory's release (the reference wheel); run
    with `docker run` in p2-app1's network namespace and its configuration (another port), it
    reaches the real PostgreSQL and Redis Cluster over TLS and says ready."""
    out = run_playbook(ROOT / "playbooks/image.yml", inventory=INVENTORY)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    version = REFERENCE
    image = f"rehab-agi:{version}"
    inspect = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Config.User}} {{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    user, size = inspect.stdout.split()
    assert user == "10001:10001"
    assert (Path.home() / f".cache/rehab-scale/images/rehab-agi-{version}.tar").stat().st_size > int(size) // 2
    env = docker_exec("p2-app1", "cat", "/etc/rehab-agi/rehab-agi.env").stdout.splitlines()
    env = [line for line in env if not line.startswith(("REHAB_AGI_PORT=", "REHAB_AGI_BIND="))]
    (tmp_path / "env").write_text("\n".join([*env, "REHAB_AGI_PORT=5002", "REHAB_AGI_BIND=127.0.0.1"]) + "\n")
    ca = tls_path("ca")
    subprocess.run(["docker", "cp", f"p2-app1:{ca}", str(tmp_path / "ca.pem")], check=True)
    (tmp_path / "ca.pem").chmod(0o644)
    name = "rehab-agi-image-test"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    run = [
        "docker", "run", "-d", "--name", name, "--network", "container:p2-app1", "--env-file", str(tmp_path / "env"),
        "-v", f"{tmp_path / 'ca.pem'}:{ca}:ro", image,
    ]  # fmt: skip
    subprocess.run(run, capture_output=True, text=True, check=True)
    try:

        def answer(path):
            got = docker_exec(
                "p2-app1", "curl", "-s", "-m", "5", "-w", "\n%{http_code}", f"http://127.0.0.1:5002{path}"
            )
            body, _, status = got.stdout.rpartition("\n")
            return status, body

        wait_for(lambda: answer("/api/agi/health")[0] == "200", 30, "the image's liveness")
        assert json.loads(answer("/api/agi/health")[1])["version"] == version
        wait_for(lambda: answer("/api/agi/health/ready")[0] == "200", 30, "the image's readiness")
        process_user = subprocess.run(
            ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert process_user == "10001"

        def health():
            status = ["docker", "inspect", "-f", "{{.State.Health.Status}}", name]
            return subprocess.run(status, capture_output=True, text=True, check=False).stdout.strip()

        wait_for(lambda: health() == "healthy", 40, "Docker's HEALTHCHECK to pass")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    print(f"image {image}: {int(size) / 1e6:.0f} MB, built in {out.seconds:.0f} s")
