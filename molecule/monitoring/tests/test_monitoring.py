"""Monitoring role: node exporter everywhere, Prometheus scraping every inventory host."""

import json
import time

testinfra_hosts = ["mon-role1"]


def test_config_valid(host):
    out = host.run("promtool check config /etc/prometheus/prometheus.yml")
    assert out.rc == 0, out.stdout + out.stderr


def test_node_exporter_on_every_host(host):
    for name in ("mon-role1", "mon-node1"):
        out = host.run(f"curl -sf http://{name}:9100/metrics")
        assert out.rc == 0
        assert "node_cpu_seconds_total" in out.stdout


def test_targets_up(host):
    deadline = time.time() + 60
    while True:
        targets = json.loads(host.check_output("curl -s http://127.0.0.1:9090/api/v1/targets"))["data"]["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        if all(h == "up" for h in health.values()) or time.time() > deadline:
            break
        time.sleep(3)
    # No host in `app` here: the rehab-agi job is left out rather than scraping nothing.
    assert set(health) == {
        ("prometheus", "localhost:9090"),
        ("node", "mon-role1"),
        ("node", "mon-node1"),
        ("alertmanager", "mon-role1"),
    }
    assert set(health.values()) == {"up"}


def test_alert_rules_loaded_and_sent_to_alertmanager(host):
    assert host.run("promtool check rules /etc/prometheus/rules/rehab-alerts.yml").rc == 0
    rules = json.loads(host.check_output("curl -s http://127.0.0.1:9090/api/v1/rules"))["data"]["groups"]
    alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
    assert {"HostCpuHigh", "HostMemoryHigh", "HostDiskHigh", "ReplicaDown", "RedisClusterNotOk"} <= alerts
    assert host.service("prometheus-alertmanager").is_running
    assert host.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0
    managers = json.loads(host.check_output("curl -s http://127.0.0.1:9090/api/v1/alertmanagers"))
    assert [a["url"] for a in managers["data"]["activeAlertmanagers"]] == ["http://127.0.0.1:9093/api/v2/alerts"]
