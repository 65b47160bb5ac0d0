"""Monitoring role (was the monitoring scenario): node exporter everywhere, a valid Prometheus
configuration, the guide's alert rules sent to Alertmanager. Every target up: test_phase1.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from rehab_testlib import assert_sandboxed
from rehab_testlib import prometheus_api as api

testinfra_hosts = ["p1-mon1"]


def test_config_valid(host):
    out = host.run("promtool check config /etc/prometheus/prometheus.yml")
    assert out.rc == 0, out.stdout + out.stderr


def test_node_exporter_on_every_host(host):
    for name in ("p1-app1", "p1-pg1", "p1-redis1", "p1-mon1"):
        out = host.run(f"curl -sf http://{name}:9100/metrics")
        assert out.rc == 0
        assert "node_cpu_seconds_total" in out.stdout


def test_alert_rules_loaded_and_sent_to_alertmanager(host):
    assert host.run("promtool check rules /etc/prometheus/rules/rehab-alerts.yml").rc == 0
    rules = api(host, "rules")["groups"]
    alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
    # Phase 1 has no replicas, so no ReplicaDown rule; phase2 checks that one and promtool tests them all.
    assert {"HostCpuHigh", "HostMemoryHigh", "HostDiskHigh", "RedisClusterNotOk"} <= alerts
    assert "ReplicaDown" not in alerts
    assert host.service("prometheus-alertmanager").is_running
    assert host.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0
    address = host.interface("eth0").addresses[0]
    managers = api(host, "alertmanagers")["activeAlertmanagers"]
    assert [a["url"] for a in managers] == [f"https://{address}:9093/api/v2/alerts"]


def test_node_exporter_runs_in_the_sandbox(host):
    # It reads network statistics over netlink and the clock's state (host_metrics), and keeps
    # serving once scraped (a denied system call would kill it then: NRestarts counts it).
    metrics = host.check_output("curl -sf http://127.0.0.1:9100/metrics")
    assert 'node_scrape_collector_success{collector="netdev"} 1' in metrics
    assert 'node_scrape_collector_success{collector="timex"} 1' in metrics
    assert_sandboxed(host, "prometheus-node-exporter", families=("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"))
