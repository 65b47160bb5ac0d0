"""Bad release input is refused by playbooks/release.yml's preflight, with the bad value named, before
the rollout play starts. The app server is this machine (connection local): the preflight reads the
release on the control node and checks the inputs; nothing reaches a host."""

import json

import pytest
from rehab_testlib import ROOT, build_release, run_playbook

INVENTORY = """
app:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
      app_bind: [127.0.0.1]
      app_db_hosts: [127.0.0.1]
      app_db_password: not-used
      app_redis_nodes: ["127.0.0.1:6379"]
      app_redis_password: not-used
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("release")
    (directory / "hosts.yml").write_text(INVENTORY)
    return directory / "hosts.yml", build_release("2.0.0", directory)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("release", "message"),
    [
        ({"url": "http://127.0.0.1:9/rehab_agi.whl"}, "missing parameter(s) required by 'url': sha256"),
        ({"src": "WHEEL", "sha256": "0" * 64}, "checksum mismatch for WHEEL: sha256 is "),
        ({"src": "WHEEL", "version": "2.0.1"}, "WHEEL carries version 2.0.0, app_release.version says 2.0.1"),
        ({"src": "/nonexistent/r.whl"}, "release artifact /nonexistent/r.whl not found on the control node"),
        ({"src": "WHEEL", "url": "http://x/y.whl", "sha256": "0" * 64}, "parameters are mutually exclusive: src|url"),
    ],
    ids=["url-without-sha256", "checksum-mismatch", "version-mismatch", "missing-file", "src-and-url"],
)
def test_bad_release_input_is_refused_in_the_preflight(setup, release, message):
    inventory, wheel = setup
    release = {k: (str(wheel) if v == "WHEEL" else v) for k, v in release.items()}
    out = run_playbook(ROOT / "playbooks/release.yml", "-e", json.dumps({"app_release": release}), inventory=inventory)
    assert out.returncode != 0
    assert message.replace("WHEEL", str(wheel)) in out.text, out.text[-2000:]
    assert "PLAY [Roll out, one app server at a time]" not in out.stdout
