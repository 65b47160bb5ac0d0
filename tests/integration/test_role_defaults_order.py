"""Lists the roles render into files keep one order from run to run.

Ansible's set filters (intersect, difference, union) return the order of a Python set, which follows
each process's hash seed: a list built with them and rendered into a file (synchronous_standby_names
was) changes between two runs of the same playbook, and the second run is not idempotent. The
postgresql role's cluster members are evaluated here by ansible-playbook under several hash seeds,
over an inventory of two clusters (a shard's and Phase 2's shape), and must come out the same and
in inventory order every time.
"""

import json
from pathlib import Path

import pytest
from rehab_testlib import run_playbook

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = """
all:
  children:
    postgresql:
      children:
        shard1_postgresql:
          hosts: {s1a: {}, s1b: {}, s1c: {}, s1d: {}}
        shard2_postgresql:
          hosts: {s2a: {}, s2b: {}}
    pg_primary:
      hosts: {s1a: {}, s2a: {}}
    pg_replicas:
      hosts: {s1b: {}, s1c: {}, s1d: {}, s2b: {}}
"""
PLAYBOOK = f"""
- hosts: s1a, s2a
  gather_facts: false
  vars_files: [{ROOT}/roles/postgresql/defaults/main.yml]
  tasks:
    - name: This node's cluster, as the lab's rehab_pg_cluster gives it
      ansible.builtin.set_fact:
        postgresql_cluster: "{{{{ (group_names | select('match', '^shard[0-9]+_postgresql$') | list)[0] }}}}"
    - name: The cluster's members as the role sees them
      ansible.builtin.debug:
        msg: "{{{{ [postgresql_primary] + postgresql_replicas }}}}"
"""


def members(tmp_path, seed):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = {
        "PYTHONHASHSEED": str(seed),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
    }
    out = run_playbook(tmp_path / "play.yml", inventory=tmp_path / "hosts.yml", env=env, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # One entry per task, or (Mitogen's strategy, as the Makefile runs it) one per task and host.
    tasks = json.loads(out.stdout)["plays"][0]["tasks"]
    wanted = [task for task in tasks if task["task"]["name"] == "The cluster's members as the role sees them"]
    return {host: result["msg"] for task in wanted for host, result in task["hosts"].items()}


def test_a_cluster_members_keep_inventory_order_whatever_the_hash_seed(tmp_path):
    seen = [members(tmp_path, seed) for seed in (1, 2, 3, 4)]
    assert seen[0] == {"s1a": ["s1a", "s1b", "s1c", "s1d"], "s2a": ["s2a", "s2b"]}
    assert all(result == seen[0] for result in seen), seen
