"""Phase 1 verified as a user would: through nginx, with real PostgreSQL, Redis and Prometheus."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from rehab_testlib import APP_PORT, tls_path
from rehab_testlib import prometheus_api as api

testinfra_hosts = ["p1-mon1"]

APP = "https://p1-app1"  # nginx, the public front, over HTTPS (its certificate names p1-app1)


def curl(host, url, method="GET", data=None):
    """Run curl on the monitoring host (inside the lab network); return (status, body)."""
    cmd = f"curl -s -m 10 --cacert {tls_path('ca')} -o /tmp/body -w '%{{http_code}}' -X {method} '{url}'"
    if data is not None:
        cmd += f" -H 'Content-Type: application/json' --data '{json.dumps(data)}'"
    out = host.run(cmd)
    assert out.rc == 0, out.stderr
    return int(out.stdout), host.file("/tmp/body").content_string


def metric(host, name):
    _, body = curl(host, f"http://p1-app1:{APP_PORT}/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_liveness_through_nginx(host):
    status, body = curl(host, f"{APP}/api/agi/health")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_readiness_through_nginx(host):
    status, body = curl(host, f"{APP}/api/agi/health/ready")
    assert status == 200, body
    assert json.loads(body)["failed"] == []


def test_beneficiary_read_through_cache(host):
    status, body = curl(host, f"{APP}/api/agi/beneficiaries", "POST", {"name": "Phase One", "program": "gait"})
    assert status == 201, body
    created = json.loads(body)
    hits_before = metric(host, "rehab_agi_cache_hits_total")

    status, first = curl(host, f"{APP}/api/agi/beneficiaries/{created['id']}")
    assert status == 200
    status, second = curl(host, f"{APP}/api/agi/beneficiaries/{created['id']}")
    assert status == 200
    assert json.loads(second) == json.loads(first) == created
    assert metric(host, "rehab_agi_cache_hits_total") == hits_before + 1


def test_unknown_beneficiary_is_404(host):
    status, _ = curl(host, f"{APP}/api/agi/beneficiaries/999999999")
    assert status == 404


def test_bad_body_is_400(host):
    status, body = curl(host, f"{APP}/api/agi/beneficiaries", "POST", {"name": ""})
    assert status == 400
    assert "name" in json.loads(body)["error"]


def test_every_prometheus_target_up(host):
    deadline = time.time() + 60
    while True:
        targets = api(host, "targets")["activeTargets"]
        down = [t["labels"]["instance"] + "/" + t["labels"]["job"] for t in targets if t["health"] != "up"]
        if not down or time.time() > deadline:
            break
        time.sleep(3)
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node", "rehab-agi", "prometheus"} <= jobs
    assert len([t for t in targets if t["labels"]["job"] == "node"]) == 4
    assert down == []


@pytest.fixture
def redis_stopped(host):
    redis = host.get_host("ansible://p1-redis1", ansible_inventory=host.backend.ansible_inventory)
    redis.run("systemctl stop redis-server")
    yield
    redis.run("systemctl start redis-server")


def test_readiness_names_redis_when_it_stops(host, redis_stopped):
    status, body = curl(host, f"{APP}/api/agi/health/ready")
    assert status == 503
    assert json.loads(body)["failed"] == ["redis"]
    # Liveness is unaffected: the process is alive, only not ready.
    assert curl(host, f"{APP}/api/agi/health")[0] == 200


def test_readiness_recovers_after_redis_returns(host):
    deadline = time.time() + 30
    status = 0
    while time.time() < deadline:
        status, _ = curl(host, f"{APP}/api/agi/health/ready")
        if status == 200:
            break
        time.sleep(1)
    assert status == 200
