"""nginx role (was the nginx scenario): proxies to its upstream (rehab-agi here), gzip, timed access
log, status endpoint, valid config; on the Phase 1 app host."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from rehab_testlib import assert_tls_verified, tls_path

testinfra_hosts = ["p1-app1"]
# The public front: HTTPS with the host's certificate, which names the inventory host (p1-app1).
SITE = "https://p1-app1"
CURL = f"curl -s --cacert {tls_path('ca')}"


def test_config_valid(host):
    assert host.run("nginx -t").rc == 0


def test_proxies_to_upstream(host):
    out = host.run(f"{CURL} -o /dev/null -w '%{{http_code}}' {SITE}/metrics")
    assert out.stdout == "200"
    assert "rehab_agi_http_requests_total" in host.check_output(f"{CURL} {SITE}/metrics")


def test_https_only_with_redirect_and_hsts(host):
    # Plain HTTP answers nothing but a redirect to the same path over HTTPS.
    out = host.check_output("curl -s -D - -o /dev/null 'http://p1-app1/api/agi/health?x=1'")
    assert out.startswith("HTTP/1.1 301"), out
    assert "Location: https://p1-app1/api/agi/health?x=1" in [line.strip() for line in out.splitlines()], out
    headers = host.check_output(f"{CURL} -D - -o /dev/null {SITE}/api/agi/health")
    assert "Strict-Transport-Security: max-age=31536000\r" in headers, headers
    # As openssl sees it from the monitoring host: chained to the lab CA, naming the address.
    assert_tls_verified("p1-mon1", host.interface("eth0").addresses[0], 443)


def test_gzip(host):
    # nginx's own compression, on a JSON answer over gzip_min_length (a 200-character name and a
    # 400-character program). Not /metrics: its content type carries a parameter before the charset,
    # which nginx's gzip_types does not match, and an upstream that compresses by itself (the node
    # exporter, which the old nginx scenario used) proves nothing about nginx.
    body = json.dumps({"name": "G" * 200, "program": "p" * 400})
    created = json.loads(
        host.check_output(f"{CURL} -XPOST -H 'Content-Type: application/json' -d '{body}' {SITE}/api/agi/beneficiaries")
    )
    url = f"{SITE}/api/agi/beneficiaries/{created['id']}"
    assert "Content-Encoding: gzip" in host.check_output(f"{CURL} -D - -o /dev/null -H 'Accept-Encoding: gzip' {url}")
    assert "Content-Encoding" not in host.check_output(f"{CURL} -D - -o /dev/null {url}")


def test_access_log_has_request_time(host):
    host.run(f"{CURL} -o /dev/null {SITE}/metrics")
    assert " rt=" in host.file("/var/log/nginx/access.log").content_string


def test_status_endpoint_local_only(host):
    assert "Active connections" in host.check_output("curl -s http://127.0.0.1:8081/nginx_status")
    addr = host.interface("eth0").addresses[0]
    assert host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' http://{addr}:8081/nginx_status") == "403"


def test_default_site_gone(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_security_headers_on_answers_and_errors(host):
    for path in ("/api/agi/health", "/api/agi/beneficiaries/999999999"):
        headers = host.check_output(f"{CURL} -D - -o /dev/null {SITE}{path}")
        assert "X-Content-Type-Options: nosniff" in headers, path
        assert "X-Frame-Options: DENY" in headers, path
        assert "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'" in headers, path
        assert "Referrer-Policy: no-referrer" in headers, path
        assert "Server: nginx\r" in headers, path  # server_tokens off: no version
