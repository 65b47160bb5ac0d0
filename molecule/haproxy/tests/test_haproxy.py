"""The haproxy role: valid config, fast health checks, password on statistics, Prometheus metrics."""

import os
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import container_address, docker_exec, haproxy_status, tls_path  # noqa: E402

testinfra_hosts = ["haproxy-role1"]
LB = "haproxy-role1"
# curl on the balancer, verifying the front end's certificate with the environment's CA.
CURL = f"curl -s --cacert {tls_path('ca')} -o /dev/null -w '%{{http_code}}'"
READY = "https://haproxy-role1/api/agi/health/ready"


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
        out = host.run(f"{CURL} --resolve haproxy-role1:443:127.0.0.1 {READY}")
        assert out.stdout == "200", out.stderr
    assert haproxy_status(LB) == {"haproxy-app1": "UP", "haproxy-app2": "UP"}


def test_unready_backend_leaves_the_pool_within_3_s_and_returns(host):
    assert docker_exec("haproxy-app2", "rm", "/srv/www/api/agi/health/ready").returncode == 0
    try:
        took = wait_status("haproxy-app2", "DOWN", 5)
        assert took < 3.0, f"left the pool after {took:.2f} s"
        codes = {host.run(f"{CURL} --resolve haproxy-role1:443:127.0.0.1 {READY}").stdout
                 for _ in range(6)}  # fmt: skip
        assert codes == {"200"}, codes  # every request now goes to the ready server
    finally:
        docker_exec("haproxy-app2", "sh", "-c", "echo '{}' > /srv/www/api/agi/health/ready")
    wait_status("haproxy-app2", "UP", 10)


def test_plain_http_redirects_to_https_and_https_sends_hsts(host):
    redirect = host.run("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/api/agi/health")
    assert redirect.stdout == "301 https://127.0.0.1/api/agi/health"
    headers = host.check_output(
        f"curl -s -D - -o /dev/null --cacert {tls_path('ca')} --resolve haproxy-role1:443:127.0.0.1 {READY}"
    )
    assert "strict-transport-security: max-age=31536000" in headers.lower()


def test_tls_verifies_against_the_environment_ca_and_refuses_weak_ciphers(host):
    verified = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername haproxy-role1 -verify_return_error"
        f" -verify_hostname haproxy-role1 -CAfile {tls_path('ca')} </dev/null"
    )
    assert verified.rc == 0, verified.stdout + verified.stderr
    assert "Verify return code: 0 (ok)" in verified.stdout
    # TLS 1.2 with a forward-secret AEAD cipher is accepted; a static-RSA CBC one is not.
    handshake = "openssl s_client -connect 127.0.0.1:443 -tls1_2 -cipher {} </dev/null"
    assert host.run(handshake.format("ECDHE-ECDSA-AES128-GCM-SHA256")).rc == 0
    assert host.run(handshake.format("AES128-SHA")).rc != 0


def test_statistics_on_the_internal_address_over_tls_need_the_password(host):
    stats = f"https://{container_address(LB)}:8404/stats"
    assert host.run(f"{CURL} {stats}").stdout == "401"
    assert host.run(f"{CURL} -u admin:lab-haproxy-stats-not-secret {stats}").stdout == "200"
    assert (
        host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8404/stats").stdout == "000"
    )  # not on loopback


def test_plain_health_endpoint_for_checkers(host):
    health = f"http://{container_address(LB)}:8406/health"
    assert host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {health}").stdout == "200"


def test_prometheus_metrics_exposed(host):
    body = host.run("curl -s http://127.0.0.1:8405/metrics").stdout
    assert 'haproxy_backend_active_servers{proxy="rehab_agi"} 2' in body
    assert 'haproxy_server_status{proxy="rehab_agi",server="haproxy-app1",state="UP"} 1' in body
