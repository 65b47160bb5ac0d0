"""The lab lifecycle (playbooks/lab.yml) on this machine's Docker engine: up, again, status, down."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from rehab_testlib import run_playbook

ROOT = Path(__file__).resolve().parents[2]
NETWORK = "rehab-itest-lab"
HOSTS = ["itest-lab1", "itest-lab2"]

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode,
    reason="no Docker engine answers (make integration starts one)",
)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("lab") / "hosts.yml"
    # Lab settings live in `all` vars, where the playbook's localhost sees them (as in inventories/lab).
    hosts = "".join(f"        {h}:\n" for h in HOSTS)
    path.write_text(
        "all:\n  vars:\n"
        f"    lab_network: {NETWORK}\n    lab_network_subnet: 172.30.31.0/24\n"
        "    lab_labels: {rehab-scale.itest: 'true'}\n"
        "  children:\n    lab:\n      hosts:\n" + hosts
    )
    yield path
    lab(path, "down")


def lab(inventory, action):
    json_output = {
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
    }
    out = run_playbook(ROOT / "playbooks/lab.yml", "-e", f"lab_action={action}", inventory=inventory, env=json_output)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    return json.loads(out.stdout)["stats"]["localhost"]


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def test_up_creates_systemd_containers(inventory):
    stats = lab(inventory, "up")
    assert stats["changed"] > 0
    for host in HOSTS:
        assert docker("exec", host, "systemctl", "is-system-running").stdout.strip() in ("running", "degraded")
        assert docker("exec", host, "cat", "/proc/1/comm").stdout.strip() == "systemd"
    # Hosts reach each other by name on the lab's own network.
    assert docker("exec", HOSTS[0], "getent", "hosts", HOSTS[1]).stdout.startswith("172.30.31.")


def test_up_again_changes_nothing(inventory):
    assert lab(inventory, "up")["changed"] == 0


def test_status_reports(inventory):
    assert lab(inventory, "status")["failures"] == 0


def test_down_removes_only_the_lab(inventory):
    # A container outside this lab's inventory, carrying the same label, must survive.
    bystander = "itest-bystander"
    docker("rm", "-f", bystander)
    docker(
        "run",
        "-d",
        "--name",
        bystander,
        "--label",
        "rehab-scale.itest=true",
        "rehab-scale/lab-base:bookworm",
        "sleep",
        "300",
    )
    try:
        lab(inventory, "down")
        assert docker("inspect", bystander).returncode == 0
    finally:
        docker("rm", "-f", bystander)
    for host in HOSTS:
        assert docker("inspect", host).returncode != 0
    assert docker("network", "inspect", NETWORK).returncode != 0
