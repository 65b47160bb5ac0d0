"""The app tier (rehab_app_tier) is checked by the preflights of playbooks/phase2.yml and
playbooks/k3s.yml before any host changes: a wrong value, k3s without a cluster, and k3s outside
Phase 3 are refused by name. The lab inventory's hosts are this machine here (connection local), in
check mode, so nothing would change even past a preflight; the tests also assert no later play ran."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from rehab_testlib import ROOT, lab_secret, run_playbook

LOCAL = ("-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}", "--check")


def run(playbook, tier):
    inventory = ROOT / "inventories/lab"
    return run_playbook(ROOT / "playbooks" / playbook, *LOCAL, "-e", f"rehab_app_tier={tier}", inventory=inventory)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("playbook", "tier", "message"),
    [
        ("phase2.yml", "k3s", "rehab_app_tier must be vms, or k3s with playbooks/phase3.yml (got k3s)"),
        ("phase2.yml", "kubernetes", "rehab_app_tier must be vms, or k3s with playbooks/phase3.yml (got kubernetes)"),
        ("k3s.yml", "kubernetes", "rehab_app_tier 'kubernetes' refused, nothing was changed: it is vms or k3s"),
        ("k3s.yml", "k3s", "k3s needs hosts in the k3s_server group (got []) and a balancer in the lb group"),
    ],
    ids=["phase2-k3s", "phase2-unknown", "k3s-unknown", "k3s-without-cluster"],
)
def test_a_wrong_app_tier_is_refused_before_anything_changes(playbook, tier, message):
    out = run(playbook, tier)
    assert out.returncode != 0
    assert message in out.text, out.text[-3000:]
    plays = [line for line in out.stdout.splitlines() if line.startswith("PLAY [")]
    assert len(plays) == 1 and "preflight" in plays[0].lower(), plays


@pytest.mark.integration
def test_with_vms_the_k3s_plays_change_nothing():
    """The default tier: playbooks/k3s.yml (which phase3.yml runs) passes its preflight and skips the rest."""
    out = run("k3s.yml", "vms")
    assert out.returncode == 0, out.text[-3000:]
    assert "changed=0" in out.stdout and "changed=1" not in out.stdout


WIRING_INVENTORY = """
all:
  children:
    app: {hosts: {t-app1: {rehab_address: 10.9.0.11}, t-app2: {rehab_address: 10.9.0.12}}}
    lb: {hosts: {t-lb1: {rehab_address: 10.9.0.2}}}
    monitoring: {hosts: {t-mon1: {rehab_address: 10.9.0.3}}}
    k3s_server:
      hosts:
        t-srv1: {rehab_address: 10.9.0.21}
        t-srv2: {rehab_address: 10.9.0.22}
        t-srv3: {rehab_address: 10.9.0.23}
    k3s_agent: {hosts: {t-agent1: {rehab_address: 10.9.0.31}}}
"""
WIRED = [
    "haproxy_backend_hosts", "haproxy_backend_port", "haproxy_backup_hosts", "haproxy_tcp_services",
    "nginx_upstream_servers", "rehab_k3s_registration_address", "k3s_server_api_clients",
    "k3s_server_ingress_clients", "monitoring_k8s_api", "rehab_app_clients",
]  # fmt: skip


def wiring(tmp_path, host, *extra):
    """The lab's group_vars (the one home of the wiring) on an inventory with a cluster, as ad hoc
    `ansible` reads them for one host."""
    (tmp_path / "hosts.yml").write_text(WIRING_INVENTORY)
    (tmp_path / "group_vars").mkdir(exist_ok=True)
    if not (tmp_path / "group_vars/all").exists():
        (tmp_path / "group_vars/all").symlink_to(ROOT / "inventories/lab/group_vars/all")
    template = "{{ {" + ", ".join(f"'{name}': {name}" for name in WIRED) + "} | to_json }}"
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible"), "-i", str(tmp_path / "hosts.yml"), host, "-m", "ansible.builtin.debug",
         "-a", f"msg={template}", "-e", '{"rehab_management_networks": ["198.51.100.10/32"]}', *extra],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
             "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"][host]["msg"])


@pytest.mark.integration
def test_with_k3s_the_balancer_fronts_the_ingress_the_app_servers_are_backups_and_the_api_is_passed_through(tmp_path):
    lb = wiring(tmp_path, "t-lb1", "-e", "rehab_app_tier=k3s")
    assert lb["haproxy_backend_hosts"] == ["t-srv1", "t-srv2", "t-srv3", "t-agent1"]
    assert int(lb["haproxy_backend_port"]) == 80
    assert lb["haproxy_backup_hosts"] == ["t-app1", "t-app2"]
    (api,) = lb["haproxy_tcp_services"]
    assert (api["name"], int(api["port"]), int(api["backend_port"])) == ("k3s-api", 6443, 6443)
    assert api["backend_hosts"] == ["t-srv1", "t-srv2", "t-srv3"]
    assert sorted(api["clients"]) == ["t-agent1", "t-mon1", "t-srv1", "t-srv2", "t-srv3"]
    nginx = wiring(tmp_path, "t-lb1", "-e", "rehab_app_tier=k3s", "-e", "rehab_balancer=nginx")
    assert nginx["nginx_upstream_servers"] == [
        "10.9.0.21:80", "10.9.0.22:80", "10.9.0.23:80", "10.9.0.31:80", "10.9.0.11:80 backup", "10.9.0.12:80 backup",
    ]  # fmt: skip
    assert nginx["haproxy_tcp_services"] == []  # only HAProxy passes the API through: name a VIP then
    # Every host reads the same registration address: the first balancer's.
    for host in ("t-srv2", "t-agent1", "t-mon1"):
        seen = wiring(tmp_path, host, "-e", "rehab_app_tier=k3s")
        assert seen["rehab_k3s_registration_address"] == "10.9.0.2", host
    server = wiring(tmp_path, "t-srv1", "-e", "rehab_app_tier=k3s")
    assert server["k3s_server_api_clients"] == server["k3s_server_ingress_clients"] == ["t-lb1"]
    assert wiring(tmp_path, "t-mon1")["monitoring_k8s_api"] == "10.9.0.2:6443"
    # The databases and Redis let every node in too: a pod's traffic leaves with its node's address.
    assert lb["rehab_app_clients"] == ["t-app1", "t-app2", "t-srv1", "t-srv2", "t-srv3", "t-agent1"]


@pytest.mark.integration
def test_with_vms_the_balancer_sends_to_the_app_servers_and_still_passes_the_api_through(tmp_path):
    lb = wiring(tmp_path, "t-lb1")
    assert lb["haproxy_backend_hosts"] == ["t-app1", "t-app2"]
    assert lb["haproxy_backup_hosts"] == []
    assert [s["name"] for s in lb["haproxy_tcp_services"]] == ["k3s-api"]
    assert lb["rehab_app_clients"] == ["t-app1", "t-app2"]


PODS_INVENTORY = (
    WIRING_INVENTORY
    + """
    postgresql:
      children:
        pg_primary: {hosts: {t-pg1: {rehab_address: 10.9.0.41}}}
        pg_replicas: {hosts: {t-pg2: {rehab_address: 10.9.0.42}}}
    redis:
      hosts:
        t-redis1: {rehab_address: 10.9.0.51}
        t-redis2: {rehab_address: 10.9.0.52}
        t-redis3: {rehab_address: 10.9.0.53}
"""
)
BUILD = """
- name: Build the app's objects as playbooks/k3s.yml's preflight does, without a cluster
  hosts: t-srv1
  gather_facts: false
  tasks:
    - name: The build entry point
      ansible.builtin.include_role:
        name: rehab.scale.k8s_app
        tasks_from: build
"""


@pytest.mark.integration
def test_the_pods_get_the_app_servers_settings_shard_document_and_ca(tmp_path):
    """rehab.scale.k8s_app builds the ConfigMap and Secret from rehab.scale.app's settings (one home), the
    same the app servers' rehab-agi.env holds, and mounts the collection's CA where those settings name
    it; the objects pass the pinned Kubernetes schema (the real module). No cluster: nothing is applied."""
    (tmp_path / "hosts.yml").write_text(PODS_INVENTORY)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars/all").symlink_to(ROOT / "inventories/lab/group_vars/all")
    (tmp_path / "build.yml").write_text(BUILD)
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=test CA", "-keyout", str(ca_dir / "ca.key"), "-out", str(ca_dir / "ca.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = {
        "rehab_app_tier": "k3s",
        "rehab_management_networks": ["198.51.100.10/32"],
        "pki_ca_dir": str(ca_dir),
        "k8s_app_image": "rehab-agi:1.0.0",
        "k8s_app_render_to": str(tmp_path / "objects.yml"),
        "k8s_app_env": {"REHAB_AGI_LOG_LEVEL": "DEBUG"},
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
    }
    out = run_playbook(tmp_path / "build.yml", "-e", json.dumps(settings), inventory=tmp_path / "hosts.yml")
    assert out.returncode == 0, out.stdout[-3000:]
    for secret_name in ("vault_rehab_db_password", "vault_rehab_redis_app_password"):
        assert lab_secret(secret_name) not in out.stdout  # never logged
    objects = {
        (o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all((tmp_path / "objects.yml").read_text())
    }
    env = objects["ConfigMap", "rehab-agi"]["data"]
    assert env["REHAB_AGI_DB_WRITE_DSN"] == (
        "host=10.9.0.41,10.9.0.42 port=5432,5432 dbname=rehab user=rehab connect_timeout=3 sslmode=verify-full"
        " sslrootcert=/etc/rehab-scale/tls/ca.pem target_session_attrs=read-write"
    )
    assert env["REHAB_AGI_REDIS_NODES"] == "10.9.0.51:7000,10.9.0.52:7000,10.9.0.53:7000"
    assert env["REHAB_AGI_REDIS_CLUSTER"] == "true"
    assert env["REHAB_AGI_LOG_LEVEL"] == "DEBUG"  # k8s_app_env wins
    assert "REHAB_AGI_BIND" not in env and "REHAB_AGI_DB_PASSWORD" not in env
    secret = objects["Secret", "rehab-agi"]["stringData"]
    assert sorted(secret) == ["REHAB_AGI_DB_PASSWORD", "REHAB_AGI_REDIS_PASSWORD"]  # keys only, filled at apply
    assert objects["ConfigMap", "rehab-agi-ca"]["data"]["ca.pem"] == (ca_dir / "ca.pem").read_text()
    pod = objects["Deployment", "rehab-agi"]["spec"]["template"]["spec"]
    assert {"name": "ca", "mountPath": "/etc/rehab-scale/tls", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    # The inventory's rehab_shards is not the service's document: refused by name, through the role.
    bad = {**settings, "k8s_app_shard_map": [{"name": "shard1", "min_id": 1, "max_id": 100000}]}
    out = run_playbook(tmp_path / "build.yml", "-e", json.dumps(bad), inventory=tmp_path / "hosts.yml")
    assert out.returncode != 0
    assert "shard_map is not the service's shard document (a list" in out.text, out.stdout[-3000:]
