"""rehab.scale.monitoring with a Kubernetes cluster to scrape (Phase 3 on k3s), checked with Prometheus's
own promtool (Debian's prometheus package, installed by scripts/host-servers.sh): the role's
prometheus.yml.j2 and rehab-alerts.yml.j2 are rendered on the control node with the role's own
defaults and vars, then `promtool check config` reads the configuration with its rule file, and
`promtool test rules` runs tests/promtool/rehab-pods.test.yml against the pod rules.

Not exercised here: a cluster answering those scrapes (no k3s runs on these machines)."""

import json
import shutil
import subprocess

import pytest
import yaml
from rehab_testlib import ROOT, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOK = """
- name: Render the monitoring role's Prometheus files, as on a Prometheus server
  hosts: prom
  gather_facts: false
  tasks:
    - name: Read the role's defaults and vars (the settings under test are extra vars, above both)
      ansible.builtin.include_vars: "{{ item }}"
      loop:
        - "{{ root }}/roles/monitoring/defaults/main.yml"
        - "{{ root }}/roles/monitoring/vars/main.yml"
    - name: Render the configuration and the rules
      ansible.builtin.template:
        src: "{{ root }}/roles/monitoring/templates/{{ item }}.j2"
        dest: "{{ out }}/{{ item }}"
        mode: "0644"
      loop: [prometheus.yml, rehab-alerts.yml]
      delegate_to: localhost
"""

INVENTORY = """
all:
  hosts:
    prom: {ansible_host: 10.20.0.5, ansible_connection: local}
  children:
    monitoring: {hosts: {prom: }}
    k3s_server:
      hosts:
        srv1: {ansible_host: 10.20.0.11}
        srv2: {ansible_host: 10.20.0.12}
        srv3: {ansible_host: 10.20.0.13}
    k3s_agent: {hosts: {agent1: {ansible_host: 10.20.0.21}}}
"""


def promtool(*args, cwd):
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: scripts/host-servers.sh installs Debian's prometheus package")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("prometheus")
    (out / "play.yml").write_text(PLAYBOOK)
    (out / "hosts.yml").write_text(INVENTORY)
    (out / "token").write_text("t" * 40)
    (out / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    settings = {
        "root": str(ROOT),
        "out": str(out),
        "monitoring_k8s_nodes": ["srv1", "srv2", "srv3", "agent1"],
        "monitoring_k8s_api": "k3s-api.example.net:6443",
        "monitoring_alert_rules_enabled": True,
        # The files the role writes under /etc/prometheus, here beside the rendered ones.
        "__monitoring_k8s_token_file": str(out / "token"),
        "__monitoring_k8s_ca_file": str(out / "ca.pem"),
        "__monitoring_rules_file": str(out / "rehab-alerts.yml"),
        # No TLS client files of the lab's here: Prometheus's own job goes plain.
        "monitoring_web_plaintext_reason": "rendered for promtool only",
    }
    (out / "vars.json").write_text(json.dumps(settings))
    result = run_playbook(out / "play.yml", "-e", f"@{out / 'vars.json'}", inventory=out / "hosts.yml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return out


def test_promtool_accepts_the_configuration_and_its_rules(rendered):
    out = promtool("check", "config", "prometheus.yml", cwd=rendered)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_node_is_scraped_for_the_kubelet_and_cadvisor_and_kube_state_metrics_through_the_api(rendered):
    jobs = {job["job_name"]: job for job in yaml.safe_load((rendered / "prometheus.yml").read_text())["scrape_configs"]}
    for job, path in (("kubelet", "/metrics"), ("cadvisor", "/metrics/cadvisor")):
        assert jobs[job]["metrics_path"] == path
        assert jobs[job]["scheme"] == "https"
        assert [(t["targets"], t["labels"]["instance"]) for t in jobs[job]["static_configs"]] == [
            (["10.20.0.21:10250"], "agent1"),
            (["10.20.0.11:10250"], "srv1"),
            (["10.20.0.12:10250"], "srv2"),
            (["10.20.0.13:10250"], "srv3"),
        ]
        assert jobs[job]["authorization"] == {"credentials_file": str(rendered / "token")}
        assert jobs[job]["tls_config"] == {"ca_file": str(rendered / "ca.pem")}
    ksm = jobs["kube-state-metrics"]
    assert ksm["static_configs"] == [{"targets": ["k3s-api.example.net:6443"]}]
    assert ksm["metrics_path"].endswith("/services/kube-state-metrics:http-metrics/proxy/metrics")


def test_the_pod_rules_fire_and_hold_as_the_guide_says(rendered):
    shutil.copy(ROOT / "tests/promtool/rehab-pods.test.yml", rendered)
    out = promtool("test", "rules", "rehab-pods.test.yml", cwd=rendered)
    assert out.returncode == 0, out.stdout + out.stderr


def test_without_nodes_nothing_of_the_cluster_is_rendered(tmp_path):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    settings = {"root": str(ROOT), "out": str(tmp_path), "monitoring_alert_rules_enabled": True}
    (tmp_path / "vars.json").write_text(json.dumps(settings))
    result = run_playbook(tmp_path / "play.yml", "-e", f"@{tmp_path / 'vars.json'}", inventory=tmp_path / "hosts.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    for name in ("prometheus.yml", "rehab-alerts.yml"):
        text = (tmp_path / name).read_text()
        assert "kubelet" not in text and "kube_horizontalpodautoscaler" not in text and "rehab-pods" not in text


VALIDATE = """
- name: The monitoring role's preflight, as the phase playbooks run it
  hosts: prom
  gather_facts: false
  tasks:
    - name: Validate
      ansible.builtin.include_role:
        name: rehab.scale.monitoring
        tasks_from: validate
"""
CLUSTER = {
    "monitoring_k8s_nodes": ["srv1", "agent1"],
    "monitoring_k8s_api": "k3s-api.example.net:6443",
    "monitoring_k8s_ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "monitoring_k8s_token": "t" * 40,
    "monitoring_web_plaintext_reason": "preflight only",
}


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({}, None),
        ({"monitoring_k8s_api": ":6443"}, "needs monitoring_k8s_api as host:port (got ':6443')"),
        ({"monitoring_k8s_ca": "", "monitoring_k8s_token": "short"}, "(no PEM certificate)"),
        ({"monitoring_k8s_token": "short"}, "rehab-prometheus-token; not set or too short"),
    ],
)
def test_a_cluster_without_its_address_ca_or_token_is_refused_by_name(tmp_path, changes, refused):
    (tmp_path / "play.yml").write_text(VALIDATE)
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "vars.json").write_text(json.dumps({**CLUSTER, **changes}))
    out = run_playbook(tmp_path / "play.yml", "-e", f"@{tmp_path / 'vars.json'}", inventory=tmp_path / "hosts.yml")
    if refused is None:
        assert out.returncode == 0, out.stdout[-3000:]
    else:
        assert out.returncode != 0
        assert refused in out.text, out.stdout[-3000:]
