"""Role READMEs list exactly the variables the roles declare, as the defaults describe them."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_role_readmes_are_current():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/role_docs.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_default_is_declared_and_commented():
    for role in sorted((ROOT / "roles").iterdir()):
        defaults = role / "defaults/main.yml"
        if not defaults.exists():
            continue
        declared = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
        lines = defaults.read_text().splitlines()
        for index, line in enumerate(lines):
            if line and line[0].isalpha() and ":" in line:
                name = line.split(":", 1)[0]
                assert name in declared, f"{role.name}: {name} has a default but no argument spec"
                assert name.startswith(role.name + "_"), f"{role.name}: {name} lacks the role prefix"
                assert lines[index - 1].startswith("#"), f"{role.name}: {name} has no comment"
