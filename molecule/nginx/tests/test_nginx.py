"""nginx role: proxies to its upstream, gzip, timed access log, status endpoint, valid config."""


def test_config_valid(host):
    assert host.run("nginx -t").rc == 0


def test_proxies_to_upstream(host):
    out = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/metrics")
    assert out.stdout == "200"
    assert "node_cpu_seconds_total" in host.check_output("curl -s http://127.0.0.1/metrics")


def test_gzip(host):
    headers = host.check_output("curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' http://127.0.0.1/metrics")
    assert "Content-Encoding: gzip" in headers


def test_access_log_has_request_time(host):
    host.run("curl -s -o /dev/null http://127.0.0.1/metrics")
    assert " rt=" in host.file("/var/log/nginx/access.log").content_string


def test_status_endpoint_local_only(host):
    assert "Active connections" in host.check_output("curl -s http://127.0.0.1:8081/nginx_status")
    addr = host.interface("eth0").addresses[0]
    assert host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' http://{addr}:8081/nginx_status") == "403"


def test_default_site_gone(host):
    assert not host.file("/etc/nginx/sites-enabled/default").exists
