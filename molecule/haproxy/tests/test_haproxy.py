"""The haproxy role: valid config, fast health checks, password on statistics, Prometheus metrics."""

import os
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import docker_exec, haproxy_status  # noqa: E402

testinfra_hosts = ["haproxy-role1"]
LB = "haproxy-role1"


def wait_status(server, wanted, timeout):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if haproxy_status(LB).get(server, "").startswith(wanted):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{server} not {wanted} after {timeout} s: {haproxy_status(LB)}")


def test_config_is_valid_and_service_running(host):
    assert host.service("haproxy").is_running
    assert host.service("haproxy").is_enabled
    assert host.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0
    assert host.file("/etc/haproxy/haproxy.cfg").mode == 0o640


def test_both_backends_up_and_balanced(host):
    wait_status("haproxy-app1", "UP", 10)
    wait_status("haproxy-app2", "UP", 10)
    for _ in range(4):
        out = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/api/agi/health/ready")
        assert out.stdout == "200"
    assert haproxy_status(LB) == {"haproxy-app1": "UP", "haproxy-app2": "UP"}


def test_unready_backend_leaves_the_pool_within_3_s_and_returns(host):
    assert docker_exec("haproxy-app2", "rm", "/srv/www/api/agi/health/ready").returncode == 0
    try:
        took = wait_status("haproxy-app2", "DOWN", 5)
        assert took < 3.0, f"left the pool after {took:.2f} s"
        codes = {host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/api/agi/health/ready").stdout
                 for _ in range(6)}  # fmt: skip
        assert codes == {"200"}, codes  # every request now goes to the ready server
    finally:
        docker_exec("haproxy-app2", "sh", "-c", "echo '{}' > /srv/www/api/agi/health/ready")
    wait_status("haproxy-app2", "UP", 10)


def test_statistics_need_the_password(host):
    anonymous = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8404/stats")
    assert anonymous.stdout == "401"
    allowed = host.run(
        "curl -s -o /dev/null -w '%{http_code}' -u admin:lab-haproxy-stats-not-secret http://127.0.0.1:8404/stats"
    )
    assert allowed.stdout == "200"


def test_prometheus_metrics_exposed(host):
    body = host.run("curl -s http://127.0.0.1:8405/metrics").stdout
    assert 'haproxy_backend_active_servers{proxy="rehab_agi"} 2' in body
    assert 'haproxy_server_status{proxy="rehab_agi",server="haproxy-app1",state="UP"} 1' in body
