"""Bad input fails in the preflight, naming the group or variable, before any host changes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import run_playbook  # noqa: E402

HOSTS = {"app": "p1-app1", "pg_primary": "p1-pg1", "redis": "p1-redis1", "monitoring": "p1-mon1"}
WATCHED = {
    "p1-pg1": "/etc/postgresql/15/main/conf.d/10-rehab.conf",
    "p1-redis1": "/etc/redis/redis.conf",
    "p1-app1": "/etc/rehab-agi/rehab-agi.env",
}


def inventory(tmp_path, groups):
    # Under the lab group, whose group_vars say how to reach a lab container.
    lines = ["all:", "  children:", "    lab:", "      children:"]
    for group in groups:
        lines += [f"        {group}:", "          hosts:", f"            {HOSTS[group]}:"]
    path = tmp_path / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    # The real group_vars of the lab, as Molecule uses them.
    (tmp_path / "group_vars").symlink_to(ROOT / "inventories/lab/group_vars")
    return path


def state():
    """Modification times of config files the playbook would rewrite."""
    return {
        host: subprocess.run(
            ["docker", "exec", host, "stat", "-c", "%Y", path], capture_output=True, text=True, check=True
        ).stdout
        for host, path in WATCHED.items()
    }


def run_phase1(inv, *extra):
    return run_playbook(ROOT / "playbooks/phase1.yml", *extra, inventory=inv, timeout=300)


@pytest.fixture
def unchanged():
    before = state()
    yield
    assert state() == before, "a config file changed although the run was refused"


def test_missing_group_named(tmp_path, unchanged):
    out = run_phase1(inventory(tmp_path, ["app", "pg_primary", "monitoring"]))
    assert out.returncode != 0
    assert "Inventory group 'redis' is missing or empty" in out.stdout
    assert "TASK [rehab.scale.postgresql : Install PostgreSQL packages]" not in out.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("postgresql_port", "not-a-port", "postgresql_port"),
        ("redis_maxmemory_policy", "keep-everything", "redis_maxmemory_policy"),
        ("app_db_hosts", "{}", "app_db_hosts"),
        ("nginx_gzip", "sometimes", "nginx_gzip"),
    ],
)
def test_wrong_typed_variable_named(tmp_path, unchanged, variable, value, message):
    out = run_phase1(inventory(tmp_path, list(HOSTS)), "-e", f"{variable}={value}")
    assert out.returncode != 0
    assert message in out.stdout
    assert "Preflight" in out.stdout
    # Nothing past the preflight ran.
    assert "PLAY [Phase 1 services]" not in out.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # Two halves of the internet passed the old deny-list; the allow-list parses them.
        (
            '{"rehab_client_networks": ["0.0.0.0/1", "128.0.0.0/1"]}',
            "postgresql_hba_entries: 0.0.0.0/1 is wider than /8",
        ),
        ('{"postgresql_monitor_networks": ["fd00::/16"]}', "postgresql_monitor_networks: fd00::/16 is wider than /32"),
        ('{"redis_bind": ["127.0.0.1", "0.0.0.0 ::"]}', "redis_bind: '0.0.0.0 ::' is not one IP address"),
        ('{"app_bind": ["::"]}', "app_bind: :: listens on every interface"),
        # TLS is required: a plaintext pg_hba entry contradicts it.
        (
            '{"postgresql_hba_entries": [{"type": "host", "database": "rehab", "user": "rehab",'
            ' "address": "10.1.2.3"}]}',
            "the entries for 10.1.2.3 have type host, but TLS is required",
        ),
    ],
)
def test_bad_network_named(tmp_path, unchanged, extra, message):
    out = run_phase1(inventory(tmp_path, list(HOSTS)), "-e", extra)
    assert out.returncode != 0
    assert message in out.text
    assert "PLAY [Phase 1 services]" not in out.stdout


def test_plaintext_vault_outside_the_lab_refused(tmp_path, unchanged):
    # The lab's settings, but a vault.yml without the lab's "plaintext is fine here" line: refused,
    # naming the file, before anything changes.
    lab = ROOT / "inventories/lab/group_vars"
    inv = inventory(tmp_path, list(HOSTS))
    (tmp_path / "group_vars").unlink()
    (tmp_path / "group_vars/all").mkdir(parents=True)
    (tmp_path / "group_vars/lab").symlink_to(lab / "lab")
    for name in ("main.yml", "lab.yml"):
        (tmp_path / "group_vars/all" / name).symlink_to(lab / "all" / name)
    vault = (lab / "all/vault.yml").read_text()
    assert "rehab_vault_plaintext_ok: true" in vault
    (tmp_path / "group_vars/all/vault.yml").write_text(vault.replace("rehab_vault_plaintext_ok: true", ""))
    out = run_phase1(inv)
    assert out.returncode != 0
    assert "unencrypted vault file(s)" in out.stdout
    assert f"{tmp_path}/group_vars/all/vault.yml" in out.stdout.replace("\n", "").replace(" ", "")
    assert "PLAY [Phase 1 services]" not in out.stdout
