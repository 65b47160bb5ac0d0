"""k3s and the app's objects, up to what these machines allow (molecule/k3s/molecule.yml).

Exercised for real: the sha256 checks (accepting the pinned artifacts; refusing a changed one, a
missing one, a missing pin, before anything is installed), where the binary and the image tarball go,
the rendered configuration and units (systemd-analyze verify), which server creates the cluster and
which join, the kubeconfig's fetch and rewrite, the app's objects against the Kubernetes schema.
Not exercised here: k3s itself (no binary can be obtained and the containers may not run it), so no
cluster forms, no node joins, no image is imported, nothing is applied. No fake API server stands in.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import container_address, docker_exec, haproxy_checks, lab_secret, run_playbook  # noqa: E402

SCENARIO = ROOT / "molecule/k3s"
INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "")).parent
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""))
ARTIFACTS = EPHEMERAL / "k3s-artifacts"
SERVERS = ["k3s-srv1", "k3s-srv2", "k3s-srv3"]
AGENTS = ["k3s-agent1"]
SETTINGS = yaml.safe_load((SCENARIO / "group_vars/k3s/main.yml").read_text())
K3S_DEFAULTS = yaml.safe_load((ROOT / "roles/k3s_server/defaults/main.yml").read_text())
KUBERNETES = K3S_DEFAULTS["k3s_server_version"].lstrip("v").split("+")[0]  # v1.34.1+k3s1 -> 1.34.1
BALANCER = "k3s-lb1"
NODE_RULES = ["kubelet", "flannel VXLAN", "ingress, balancers"]
LAB_SETTINGS = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/main.yml").read_text())
API_PORT = LAB_SETTINGS["rehab_k3s_api_port"]
INGRESS_PORT = LAB_SETTINGS["rehab_k3s_ingress_port"]
FIREWALL_DROPINS = yaml.safe_load((ROOT / "roles/firewall/defaults/main.yml").read_text())["firewall_dropin_dir"]


def registration():
    """The registration address: the balancer's, which passes the API port through to the servers."""
    return f"https://{container_address(BALANCER)}:{API_PORT}"


def pins():
    return yaml.safe_load((ARTIFACTS / "pins.yml").read_text())["k3s_server_sha256"]


def sha256_on(node, path):
    out = docker_exec(node, "sha256sum", path)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


def config_of(node):
    out = docker_exec(node, "cat", "/etc/rancher/k3s/config.yaml")
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def converge(*args):
    return run_playbook(SCENARIO / "converge.yml", *args, inventory=INVENTORY)


def test_the_pinned_artifacts_are_installed_where_k3s_runs_them():
    for node in SERVERS + AGENTS:
        assert sha256_on(node, "/usr/local/bin/k3s") == pins()["binary"]
        assert docker_exec(node, "stat", "-c", "%a %U", "/usr/local/bin/k3s").stdout.split() == ["755", "root"]
        assert "stand-in made by molecule/k3s/prepare.yml" in docker_exec(node, "k3s", "--version").stdout
        images = "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst"
        assert sha256_on(node, images) == pins()["images"]
        # The release image, for nodes that cannot pull it.
        archive = "/var/lib/rancher/k3s/agent/images/rehab-agi-1.0.0.tar"
        assert sha256_on(node, archive) == hashlib.sha256((ARTIFACTS / "rehab-agi-1.0.0.tar").read_bytes()).hexdigest()


def test_each_node_declares_only_the_ports_it_serves_to_the_host_firewall():
    """Servers serve the API, etcd, the kubelet, the overlay and the ingress; agents the last three."""

    def declared(node):
        out = docker_exec(node, "cat", f"{FIREWALL_DROPINS}/k3s.nft")
        assert out.returncode == 0, out.stderr
        return re.findall(r'accept comment "k3s: ([^"]+)"', out.stdout)

    for node in SERVERS:
        assert declared(node) == ["Kubernetes API", "etcd clients and peers", *NODE_RULES], node
    for node in AGENTS:
        assert declared(node) == NODE_RULES, node


def connect(client, address, port, timeout=3):
    """How a TCP connection from the client container ends: open, refused (reset) or timeout."""
    probe = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
        "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except TimeoutError: print('timeout')\n"
    )
    out = docker_exec(client, "python3", "-c", probe, address, str(port), str(timeout))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_balancer_fronts_every_nodes_ingress_through_the_firewall():
    """rehab_app_tier k3s: HAProxy balances over every node's ingress port (Traefik through ServiceLB),
    checking the app's readiness, and each node's firewall lets the balancer, and no other host, in to
    that port. Not exercised here: the ingress itself (k3s does not run), so every server is down with
    "connection refused", which also shows the balancer's packets reached each node through its firewall
    (a dropped packet would be a timeout)."""
    config = docker_exec(BALANCER, "cat", "/etc/haproxy/haproxy.cfg").stdout
    backend = config[config.index("\nbackend rehab_agi") :].split("\n\n")[0]
    servers = dict(re.findall(r"^ +server (\S+) (\S+)$", backend, re.MULTILINE))
    assert servers == {node: f"{container_address(node)}:{INGRESS_PORT}" for node in SERVERS + AGENTS}
    assert "http-check send meth GET uri /api/agi/health/ready" in backend
    checks = haproxy_checks(BALANCER, "rehab_agi")
    assert {node: checks[node] for node in SERVERS + AGENTS} == dict.fromkeys(SERVERS + AGENTS, ("DOWN", "L4CON"))
    for node in SERVERS + AGENTS:
        assert connect(BALANCER, container_address(node), INGRESS_PORT) == "refused", node
    # Another node is not a balancer: the firewall drops its packets to the ingress port.
    assert connect("k3s-agent1", container_address("k3s-srv1"), INGRESS_PORT) == "timeout"


def test_the_balancer_passes_the_api_through_as_the_registration_address():
    """Every node joins through the balancer's address (registration()), where HAProxy passes port 6443
    through to the three servers with an HTTPS check of /readyz. Not exercised here: an API server
    answering (k3s does not run), so the servers are down with "connection refused": the balancer's
    packets reached each server's API port through its firewall."""
    config = docker_exec(BALANCER, "cat", "/etc/haproxy/haproxy.cfg").stdout
    api = config[config.index("\nlisten k3s-api") :].split("\n\n")[0]
    assert f"bind {container_address(BALANCER)}:{API_PORT}\n" in api
    assert "option httpchk GET /readyz" in api and "check check-ssl" in api
    servers = dict(re.findall(r"^ +server (\S+) (\S+)$", api, re.MULTILINE))
    assert servers == {node: f"{container_address(node)}:{API_PORT}" for node in SERVERS}
    checks = haproxy_checks(BALANCER, "k3s-api")
    assert {node: checks[node] for node in SERVERS} == dict.fromkeys(SERVERS, ("DOWN", "L4CON"))
    # The balancer's firewall lets the nodes in to the registration address.
    for node in SERVERS + AGENTS:
        assert connect(node, container_address(BALANCER), API_PORT) == "open", node


def test_the_first_server_creates_the_cluster_and_every_other_node_joins_through_the_registration_address():
    first = config_of("k3s-srv1")
    assert first["cluster-init"] is True and "server" not in first
    for node in SERVERS[1:] + AGENTS:
        config = config_of(node)
        assert config["server"] == registration() and "cluster-init" not in config, (node, config)
    for node in SERVERS + AGENTS:
        config = config_of(node)
        assert config["node-ip"] == container_address(node)
        assert config["token-file"] == "/etc/rancher/k3s/token"
        assert "token" not in config  # the secret lives in its own file
        token = docker_exec(node, "cat", "/etc/rancher/k3s/token").stdout.strip()
        assert token == lab_secret("vault_k3s_token")
        for path in ("/etc/rancher/k3s/token", "/etc/rancher/k3s/config.yaml", "/etc/rancher/k3s/registries.yaml"):
            assert docker_exec(node, "stat", "-c", "%a", path).stdout.strip() == "600", (node, path)
        registries = yaml.safe_load(docker_exec(node, "cat", "/etc/rancher/k3s/registries.yaml").stdout)
        assert registries == SETTINGS["k3s_server_registries"]
    for node in SERVERS:
        config = config_of(node)
        assert container_address(BALANCER) in config["tls-san"]
        assert "metrics-server" not in config.get("disable", [])


@pytest.mark.parametrize(
    ("node", "unit", "command"), [(n, "k3s", "server") for n in SERVERS] + [(n, "k3s-agent", "agent") for n in AGENTS]
)
def test_units_are_valid_and_left_stopped_as_configured(node, unit, command):
    assert docker_exec(node, "systemd-analyze", "verify", f"/etc/systemd/system/{unit}.service").returncode == 0
    assert (
        f"ExecStart=/usr/local/bin/k3s {command}\n"
        in docker_exec(node, "cat", f"/etc/systemd/system/{unit}.service").stdout
    )
    # k3s_server_start / k3s_agent_start: false in this lab; the run said so.
    assert docker_exec(node, "systemctl", "is-enabled", unit).stdout.strip() == "disabled"
    assert docker_exec(node, "systemctl", "is-active", unit).stdout.strip() == "inactive"


def rendered(label):
    documents = yaml.safe_load_all((EPHEMERAL / "rehab-agi-objects.yml").read_text())
    return [o for o in documents if o["metadata"]["labels"]["rehab.scale/app"] == label]


def test_the_app_objects_carry_the_guide_values_and_pass_the_schema_strictly():
    objects = {o["kind"]: o for o in rendered("rehab-agi")}
    assert set(objects) == {
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
    }
    for manifest in objects.values():
        kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = deployment["template"]["spec"]["containers"][0]
    assert container["image"] == "rehab-agi:1.0.0"
    assert container["ports"][0]["containerPort"] == 5001
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert container["livenessProbe"] == {
        "httpGet": {"path": "/api/agi/health", "port": "http"},
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
    }
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/api/agi/health/ready", "port": "http"},
        "initialDelaySeconds": 5,
        "periodSeconds": 5,
    }
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert hpa["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert objects["ConfigMap"]["data"]["REHAB_AGI_LOG_LEVEL"] == "INFO"
    # The vault's value never reaches the file (the role fills it only in the apply task, unlogged).
    assert lab_secret("vault_rehab_db_password") not in (EPHEMERAL / "rehab-agi-objects.yml").read_text()
    assert list(objects["Secret"]["stringData"]) == ["REHAB_AGI_DB_PASSWORD"]


def test_the_objects_prometheus_reads_the_cluster_through_pass_the_schema_strictly():
    """k8s_app_monitoring (on in this scenario, as with a monitoring group): Prometheus's account with
    its token and kube-state-metrics, in kube-system (tests/unit has their permissions)."""
    objects = rendered("rehab-agi-monitoring")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("ClusterRole", "kube-state-metrics"),
        ("ClusterRole", "rehab-prometheus"),
        ("ClusterRoleBinding", "kube-state-metrics"),
        ("ClusterRoleBinding", "rehab-prometheus"),
        ("Deployment", "kube-state-metrics"),
        ("Secret", "rehab-prometheus-token"),
        ("Service", "kube-state-metrics"),
        ("ServiceAccount", "kube-state-metrics"),
        ("ServiceAccount", "rehab-prometheus"),
    ]
    for manifest in objects:
        kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_bad_settings_are_refused_with_their_name_before_anything_changes():
    """Through the preflight, before any host changes, each refusal named (one run: the check reports
    every one). The module's own refusals are in tests/unit/plugins/module_utils/test_k8s_manifests.py,
    and one through the role's build in tests/integration/test_app_tier.py."""
    before = {node: docker_exec(node, "stat", "-c", "%Y", "/etc/rancher/k3s/config.yaml").stdout for node in SERVERS}
    out = converge("-e", json.dumps({"k3s_server_disable": ["metrics-server", "traefik"]}))
    assert out.returncode != 0
    assert "turns off metrics-server, which the app's autoscaler reads" in out.text, out.stdout[-3000:]
    assert "turns off traefik, the ingress the balancers ['k3s-lb1'] forward to" in out.text, out.stdout[-3000:]
    assert {
        node: docker_exec(node, "stat", "-c", "%Y", "/etc/rancher/k3s/config.yaml").stdout for node in SERVERS
    } == before
    assert "PLAY [The balancer" not in out.stdout


@pytest.fixture
def supplied(tmp_path):
    """A copy of the supplied artifacts the test may damage."""
    for name in ("k3s", "k3s-airgap-images-amd64.tar.zst", "rehab-agi-1.0.0.tar"):
        (tmp_path / name).write_bytes((ARTIFACTS / name).read_bytes())
    return tmp_path


def refused(directory, *extra):
    installed = {node: sha256_on(node, "/usr/local/bin/k3s") for node in SERVERS + AGENTS}
    balancer = docker_exec(BALANCER, "stat", "-c", "%Y", "/etc/haproxy/haproxy.cfg").stdout
    out = converge("-e", f"k3s_server_artifact_dir={directory}", *extra)
    assert out.returncode != 0
    # Nothing installed: every node keeps the binary it had; the balancer was not touched either
    # (the artifacts are checked in the preflight).
    assert {node: sha256_on(node, "/usr/local/bin/k3s") for node in SERVERS + AGENTS} == installed
    assert docker_exec(BALANCER, "stat", "-c", "%Y", "/etc/haproxy/haproxy.cfg").stdout == balancer
    assert "PLAY [The balancer" not in out.stdout
    return out


def test_a_changed_binary_is_refused_naming_both_sums(supplied):
    with (supplied / "k3s").open("ab") as binary:
        binary.write(b"# one byte more than the release\n")
    actual = hashlib.sha256((supplied / "k3s").read_bytes()).hexdigest()
    out = refused(supplied)
    assert (
        f"k3s artifact {supplied}/k3s has sha256 {actual}, not k3s_server_sha256.binary {pins()['binary']}" in out.text
    )


def test_a_missing_image_tarball_is_refused_naming_the_file(supplied):
    (supplied / "k3s-airgap-images-amd64.tar.zst").unlink()
    out = refused(supplied)
    assert f"k3s artifact missing: {supplied}/k3s-airgap-images-amd64.tar.zst (images of k3s v1.34.1+k3s1" in out.text


def test_a_release_without_pinned_sums_is_refused(supplied):
    out = refused(supplied, "-e", '{"k3s_server_sha256": {"binary": "' + pins()["binary"] + '"}}')
    assert "k3s_server_sha256.images ('not set', for k3s-airgap-images-amd64.tar.zst)" in out.text


def test_the_users_own_kubeconfig_is_refused():
    home = Path.home() / ".kube/config"
    existed = home.exists()
    out = converge("-e", f"k3s_server_kubeconfig={home}")
    assert out.returncode != 0
    assert f"k3s_server_kubeconfig '{home}' is the user's own kubeconfig" in out.text
    assert home.exists() == existed


def test_check_mode_on_a_fresh_node_reports_the_start_it_cannot_try():
    """Check mode of the whole playbook (this scenario's check step): with the services to be started
    (k3s_server_start, k3s_agent_start), and where a unit is not installed yet (a fresh host: the unit's
    task only reports its change), it says the service would be started instead of failing on a unit
    systemd does not know; it succeeds and nothing changes."""
    unit = "/etc/systemd/system/k3s-agent.service"
    assert docker_exec("k3s-agent1", "mv", unit, "/root/k3s-agent.service.saved").returncode == 0
    docker_exec("k3s-agent1", "systemctl", "daemon-reload")
    files = [(node, "/etc/rancher/k3s/config.yaml") for node in SERVERS + AGENTS] + [
        (BALANCER, "/etc/haproxy/haproxy.cfg"),
        (BALANCER, f"{FIREWALL_DROPINS}/haproxy.nft"),
    ]

    def stamps():
        return {(node, path): docker_exec(node, "stat", "-c", "%Y %s", path).stdout for node, path in files}

    before = stamps()
    try:
        out = converge("--check", "-e", "k3s_server_start=true", "-e", "k3s_agent_start=true")
        assert out.returncode == 0, out.stdout[-3000:]
        assert "Check mode: k3s-agent would be installed, enabled and started on k3s-agent1" in out.text
        assert docker_exec("k3s-agent1", "test", "-e", unit).returncode != 0
        assert stamps() == before
        for node in SERVERS:
            assert docker_exec(node, "systemctl", "is-active", "k3s").stdout.strip() == "inactive", node
    finally:
        docker_exec("k3s-agent1", "mv", "/root/k3s-agent.service.saved", unit)
        docker_exec("k3s-agent1", "systemctl", "daemon-reload")


# Last: it changes the scenario's state (cluster data on srv2, a kubeconfig on srv1).
def test_a_rebuilt_first_server_joins_the_cluster_and_the_kubeconfig_is_fetched_rewritten():
    """k3s-srv2 holds cluster data (as after a join), k3s-srv1 none (rebuilt): srv1 must join through
    the registration address, not create a second cluster. srv1 also has the kubeconfig k3s writes:
    it is copied to the control node into its own file, API address and names rewritten."""
    docker_exec("k3s-srv2", "mkdir", "-p", "/var/lib/rancher/k3s/server/db/etcd/member")
    written_by_k3s = yaml.safe_load((ROOT / "tests/fixtures/k3s-kubeconfig.yaml").read_text())
    subprocess.run(
        ["docker", "exec", "-i", "k3s-srv1", "sh", "-c", "umask 077; cat > /etc/rancher/k3s/k3s.yaml"],
        input=yaml.safe_dump(written_by_k3s), text=True, check=True,
    )  # fmt: skip
    out = converge()
    assert out.returncode == 0, out.stdout[-3000:]
    first = config_of("k3s-srv1")
    assert first["server"] == registration() and "cluster-init" not in first
    assert config_of("k3s-srv2")["server"] == registration()
    kubeconfig_path = Path(SETTINGS["k3s_server_kubeconfig"].replace("{{ __k3s_lab }}", str(EPHEMERAL)))
    assert oct(kubeconfig_path.stat().st_mode & 0o777) == "0o600"
    kubeconfig = yaml.safe_load(kubeconfig_path.read_text())
    assert kubeconfig["clusters"][0] == {
        "name": "rehab",
        "cluster": {"server": registration(), "certificate-authority-data": "Q0E="},
    }
    assert kubeconfig["current-context"] == "rehab"
    assert kubeconfig["users"][0]["user"] == written_by_k3s["users"][0]["user"]
    assert "S0VZ" not in out.stdout  # the client key is not logged
