"""The plays that restart rehab-agi on several app servers roll out one server at a time and stop at
the first failure: release.yml (which the phase2 scenario drives under load) and phase2.yml (which
rolls a new release or setting out through the same role) must keep the same shape."""

from pathlib import Path

import pytest
import yaml

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def app_plays(playbook):
    plays = yaml.safe_load((PLAYBOOKS / playbook).read_text())
    found = []
    for play in plays:
        roles = [r["role"] if isinstance(r, dict) else r for r in play.get("roles", [])]
        included = [  # the role's main entry point (a preflight's tasks_from: validate restarts nothing)
            task["ansible.builtin.include_role"].get("name")
            for task in play.get("tasks", [])
            if "tasks_from" not in task.get("ansible.builtin.include_role", {"tasks_from": None})
        ]
        if "rehab.scale.app" in roles + included:
            found.append(play)
    return found


@pytest.mark.parametrize("playbook", ["phase2.yml", "release.yml"])
def test_the_app_role_runs_in_one_rolling_play(playbook):
    plays = app_plays(playbook)
    assert len(plays) == 1, [p["name"] for p in plays]
    play = plays[0]
    assert play["hosts"] == "app"
    assert play["serial"] == 1
    assert play["max_fail_percentage"] == 0
    assert play.get("strategy") is None  # the linear strategy: one server done before the next
