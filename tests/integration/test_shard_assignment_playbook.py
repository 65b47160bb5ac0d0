"""The real module and filter, run by ansible-playbook and ad hoc `ansible` on this machine."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from rehab_testlib import run_playbook

ROOT = Path(__file__).resolve().parents[2]
JSON_OUTPUT = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json"}
ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
    "ANSIBLE_NOCOLOR": "1",
}

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Assign
      rehab.scale.shard_assignment:
        ids: [100000, 100001, "200001"]
      register: assigned
    - name: Filter
      ansible.builtin.set_fact:
        via_filter: "{{ 150000 | rehab.scale.shard_for }}"
    - name: Check mode
      rehab.scale.shard_assignment:
        action: plan_split
        shard: shard3
        boundary: 300001
      check_mode: true
      register: planned
    - name: Bad input
      rehab.scale.shard_assignment:
        action: validate
        shards:
          - {name: a, min_id: 1, max_id: 10}
          - {name: b, min_id: 12}
      register: refused
      ignore_errors: true
"""


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    book = tmp_path_factory.mktemp("play") / "shards.yml"
    book.write_text(PLAYBOOK)
    # The implicit localhost runs modules with the controller's Python.
    out = run_playbook(book, env=JSON_OUTPUT, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    tasks = json.loads(out.stdout)["plays"][0]["tasks"]
    return {t["task"]["name"]: t["hosts"]["localhost"] for t in tasks}


def test_assign_through_playbook(play):
    result = play["Assign"]
    assert result["changed"] is False
    assert [a["shard"] for a in result["assignments"]] == ["shard1", "shard2", "shard3"]


def test_filter_through_playbook(play):
    assert play["Filter"]["ansible_facts"]["via_filter"] == "shard2"


def test_check_mode_plan(play):
    assert play["Check mode"]["changed"] is False
    assert play["Check mode"]["shard_map"][-1]["name"] == "shard4"


def test_bad_map_refused_with_named_gap(play):
    assert play["Bad input"]["failed"] is True
    assert "gap between shards[0] (a) and shards[1] (b): ID 11 belong to no shard" in play["Bad input"]["msg"]


def test_ad_hoc_for_on_call():
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible"), "localhost", "-m", "rehab.scale.shard_assignment", "-a", "ids=[123456]"],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "localhost | SUCCESS" in out.stdout
    assert "shard: shard2" in out.stdout or '"shard": "shard2"' in out.stdout


def test_docs_render():
    for args in (["rehab.scale.shard_assignment"], ["-t", "filter", "rehab.scale.shard_for"]):
        out = subprocess.run(
            [str(ROOT / ".venv/bin/ansible-doc"), *args],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "ERROR" not in out.stderr
        assert "rehab-scale maintainers" in out.stdout
