"""The app tier (rehab_app_tier) is checked by the preflights of playbooks/phase2.yml and
playbooks/k3s.yml before any host changes: a wrong value, k3s without a cluster, and k3s outside
Phase 3 are refused by name. The lab inventory's hosts are this machine here (connection local), in
check mode, so nothing would change even past a preflight; the tests also assert no later play ran."""

import sys

import pytest
from rehab_testlib import ROOT, run_playbook

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
