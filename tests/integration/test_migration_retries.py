"""The app role's migration plan against a real PostgreSQL on loopback (connection local): a database
that is not up yet is waited for (a first deployment converges the app beside its database), and a
refusal of the migrations themselves stops at once. Until the module said which is which, the
retries stopped at "Connection refused" as if the migrations had been refused."""

import hashlib
import json
import threading
import time

import pytest
from rehab_testlib import LocalPostgres, run_playbook

pytestmark = pytest.mark.integration

SQL = "CREATE TABLE retried (id int PRIMARY KEY)"
PLAYBOOK = """
- name: Plan and run one release's migrations, as a rollout does
  hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Migrate
      ansible.builtin.include_role:
        name: rehab.scale.app
        tasks_from: migrate_database
"""


def migration(sql=SQL):
    return {
        "id": 1,
        "kind": "expand",
        "name": "create_retried",
        "checksum": hashlib.sha256(sql.encode()).hexdigest(),
        "sql": sql,
        "transaction": True,
    }


def variables(server, sql=SQL):
    return {
        "__app_migration_target": {
            "name": "rehab",
            "cluster": "test",
            "write_dsn": server.dsn("rehab") + " connect_timeout=2",
        },
        "__app_artifact": {"version": "2.0.0", "migrations": [migration(sql)]},
        "app_db_password": "",
        "app_start_timeout": 30,  # up to 15 plans, 2 s apart
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    }


@pytest.fixture(scope="module")
def server():
    pg = LocalPostgres("migrate")
    pg.start()
    pg.sql("CREATE DATABASE rehab")
    pg.stop()
    yield pg
    pg.remove()


def run(tmp_path, server, sql=SQL):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps(variables(server, sql)))
    return run_playbook(tmp_path / "play.yml", "-e", f"@{tmp_path / 'vars.json'}", inventory="localhost,")


def test_a_database_still_starting_is_waited_for(tmp_path, server):
    starter = threading.Timer(6, server.start)
    starter.start()
    started = time.monotonic()
    try:
        out = run(tmp_path, server)
    finally:
        starter.join()
    assert out.returncode == 0, out.stdout[-3000:]
    assert "FAILED - RETRYING: [localhost]: Plan the release's migrations on rehab" in out.stdout
    assert server.sql("SELECT release FROM rehab_schema_migrations WHERE id = 1", db="rehab") == "2.0.0"
    assert server.sql("SELECT to_regclass('retried') IS NOT NULL", db="rehab") == "t"
    print(f"database up after 6 s; the migration ran {time.monotonic() - started:.0f} s after the start")


def test_a_refusal_of_the_migrations_is_final(tmp_path, server):
    """Migration 1 ran (the test above); an edited one is refused on the first plan, not retried."""
    out = run(tmp_path, server, sql=SQL + " -- edited")
    assert out.returncode != 0
    assert "migration 0001_create_retried changed since it ran" in out.text, out.stdout[-3000:]
    assert "RETRYING" not in out.stdout
    assert '"attempts": 1' in out.stdout or "attempts: 1" in out.stdout, out.stdout[-3000:]
