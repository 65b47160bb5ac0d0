"""rehab.scale.warm_jinja_plugins: after it ran, resolving the filters and tests the roles use imports
nothing more, which is what a forked worker inherits (run in a fresh interpreter: the plugin loader's
state is process-wide)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]

PROBE = r"""
import json, sys
from ansible.plugins.loader import filter_loader, init_plugin_loader, test_loader
init_plugin_loader([sys.argv[1]])
from ansible_collections.rehab.scale.plugins.callback.warm_jinja_plugins import warm

def resolve():
    for name in ("rehab.scale.shard_for", "rehab.scale.network_refusals", "rehab.scale.pg_nodes",
                 "ansible.utils.ipaddr", "to_json", "regex_replace", "ansible.builtin.to_yaml"):
        assert filter_loader.get(name) is not None, name
    for name in ("version", "ansible.utils.in_network"):
        assert test_loader.get(name) is not None, name

collections = json.loads(sys.argv[2])
before = set(sys.modules)
problems = warm(collections)
warmed = set(sys.modules)
resolve()
print(json.dumps({"problems": problems, "warmed": sorted(warmed - before), "after": sorted(set(sys.modules) - warmed)}))
"""


def probe(collections):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "collections"), json.dumps(collections)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_after_warming_resolving_the_roles_filters_and_tests_imports_nothing():
    got = probe(["ansible.builtin", "ansible.utils", "rehab.scale"])
    assert got["problems"] == []
    assert got["after"] == []
    for module in ("netaddr", "ansible_collections.rehab.scale.plugins.filter.networks"):
        assert module in got["warmed"]


def test_without_a_collection_its_filters_are_still_loaded_on_demand():
    """The probe can fail: leave rehab.scale out and the lookups import its files."""
    got = probe(["ansible.builtin"])
    assert "ansible_collections.rehab.scale.plugins.filter.shard_for" in got["after"]


def test_a_collection_that_is_not_installed_is_a_warning_not_a_failure():
    got = probe(["ansible.builtin", "no_such.collection"])
    assert got["problems"]
    assert all("no_such.collection" in problem for problem in got["problems"])
