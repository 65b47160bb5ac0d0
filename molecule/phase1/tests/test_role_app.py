"""rehab-agi service (was the app scenario): unprivileged, secrets protected, API behaviour against
real PostgreSQL and Redis; on the Phase 1 app host, its database on p1-pg1."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from rehab_testlib import APP_PORT, assert_sandboxed

testinfra_hosts = ["p1-app1"]

BASE = f"http://127.0.0.1:{APP_PORT}"


def get(host, path):
    out = host.run(f"curl -s -m 10 -w '\\n%{{http_code}}' {BASE}{path}")
    body, _, status = out.stdout.rpartition("\n")
    return int(status), body


def test_runs_unprivileged(host):
    service = host.service("rehab-agi")
    assert service.is_running and service.is_enabled
    user = host.check_output("systemctl show -p User --value rehab-agi")
    assert user == "rehab-agi"
    assert host.user("rehab-agi").shell == "/usr/sbin/nologin"


def test_runs_in_the_sandbox(host):
    assert_sandboxed(host, "rehab-agi")


def test_env_file_protected(host):
    env = host.file("/etc/rehab-agi/rehab-agi.env")
    assert env.mode == 0o640
    assert env.user == "root" and env.group == "rehab-agi"
    assert "target_session_attrs=read-write" in env.content_string
    assert "target_session_attrs=prefer-standby" in env.content_string


def test_health_and_ready(host):
    assert get(host, "/api/agi/health")[0] == 200
    status, body = get(host, "/api/agi/health/ready")
    assert status == 200, body


@pytest.fixture
def pg(host):
    return host.get_host("ansible://p1-pg1", ansible_inventory=host.backend.ansible_inventory)


def test_create_read_and_metrics(host, pg):
    out = host.run(f'curl -s -XPOST -d \'{{"name": "Role Test"}}\' {BASE}/api/agi/beneficiaries')
    created = json.loads(out.stdout)
    status, body = get(host, f"/api/agi/beneficiaries/{created['id']}")
    assert status == 200 and json.loads(body)["name"] == "Role Test"
    # The row is really in PostgreSQL.
    rows = pg.check_output(
        f"runuser -u postgres -- psql -d rehab -Atc 'select name from beneficiaries where id={created['id']}'"
    )
    assert rows == "Role Test"
    _, metrics = get(host, "/metrics")
    for name in (
        "rehab_agi_cache_hits_total",
        "rehab_agi_cache_misses_total",
        "rehab_agi_http_request_duration_seconds_bucket",
        "rehab_agi_http_requests_total",
    ):
        assert name in metrics


def test_readiness_names_postgresql_when_it_stops(host, pg):
    pg.run("systemctl stop postgresql@15-main")
    try:
        status, body = get(host, "/api/agi/health/ready")
        assert status == 503
        assert json.loads(body)["failed"] == ["postgresql"]
    finally:
        pg.run("systemctl start postgresql@15-main")
