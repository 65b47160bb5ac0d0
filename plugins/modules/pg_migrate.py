#!/usr/bin/python
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
DOCUMENTATION = r"""
module: pg_migrate
short_description: Run a release's database migrations of one kind, once, with a record of what ran
version_added: 0.4.0
description:
  - Connects to the database that accepts writes (a libpq multi-host connection string with
    C(target_session_attrs=read-write) finds the current primary) as the role that owns the schema,
    takes an advisory lock so only one runner works at a time, and runs the migrations of
    O(kind) that the record table C(rehab_schema_migrations) does not hold, in id order, each in
    its own transaction together with its record (unless its first line is
    C(-- rehab:no-transaction)).
  - Refuses a recorded migration whose text changed, and an expanding migration that would run
    after a later contracting one already ran.
  - O(state=info) only reads the record; check mode reports what would run.
options:
  dsn:
    description: libpq connection string (the app's write DSN).
    type: str
    required: true
  password:
    description: Password of the role in O(dsn).
    type: str
    no_log: true
  migrations:
    description: The release's migrations (C(rehab.scale.release_artifact) returns them).
    type: list
    elements: dict
    default: []
  kind:
    description: Which migrations to run.
    type: str
    choices: [expand, contract]
    default: expand
  release:
    description: Version of the release carrying them, recorded with each.
    type: str
  state:
    description: C(applied) runs what is pending; C(info) reads the record only.
    type: str
    choices: [applied, info]
    default: applied
  connect_timeout:
    description: Seconds to wait for each connection.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Run the release's expanding migrations
  rehab.scale.pg_migrate:
    dsn: "host=pg1,pg2 port=5432,5432 dbname=rehab user=rehab target_session_attrs=read-write"
    password: "{{ app_db_password }}"
    migrations: "{{ release.migrations }}"
    kind: expand
    release: "{{ release.version }}"
"""

RETURN = r"""
applied:
  description: The migrations run now (id, kind, name), or that would run in check mode.
  returned: always
  type: list
  elements: dict
recorded:
  description: The record before this run (id, name, kind, checksum, release, applied_at).
  returned: always
  type: list
  elements: dict
server:
  description: Address of the server that accepted writes and ran them.
  returned: success
  type: str
refused:
  description:
    - True when the migrations themselves were refused (an edited, missing or out-of-order one, a
      contract before its expand), a final answer, unlike a database that cannot be reached yet,
      which a caller may retry.
  returned: failure
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rehab.scale.plugins.module_utils.migrations import (
    LOCK_KEY,
    RECORD_DDL,
    RECORD_INSERT,
    RECORD_PRESENT,
    RECORD_SELECT,
    MigrationError,
    plan,
)

try:
    import psycopg2
    import psycopg2.extras
except ImportError:  # pragma: no cover - reported by the module
    psycopg2 = None


def read_records(cur):
    cur.execute(RECORD_PRESENT)
    if not cur.fetchone()["present"]:
        return []
    cur.execute(RECORD_SELECT)
    return [dict(r) for r in cur.fetchall()]


def main():
    module = AnsibleModule(
        argument_spec={
            "dsn": {"type": "str", "required": True},
            "password": {"type": "str", "no_log": True},
            "migrations": {"type": "list", "elements": "dict", "default": []},
            "kind": {"type": "str", "choices": ["expand", "contract"], "default": "expand"},
            "release": {"type": "str"},
            "state": {"type": "str", "choices": ["applied", "info"], "default": "applied"},
            "connect_timeout": {"type": "int", "default": 5},
        },
        required_if=[("state", "applied", ["release"])],
        supports_check_mode=True,
    )
    if psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params
    extra = {"password": params["password"]} if params["password"] else {}
    try:
        conn = psycopg2.connect(
            params["dsn"], connect_timeout=params["connect_timeout"], application_name="rehab-scale migrate", **extra
        )
    except psycopg2.Error as exc:
        module.fail_json(msg=f"cannot reach the database that accepts writes: {str(exc).strip()}", refused=False)
    conn.autocommit = True
    applied = []
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            server = conn.get_dsn_parameters().get("host", "")
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            records = read_records(cur)
            if params["state"] == "info":
                module.exit_json(changed=False, applied=[], recorded=records, server=server)
            try:
                pending = plan(params["migrations"], records, params["kind"])["pending"]
            except MigrationError as exc:
                module.fail_json(msg=f"migrations refused: {exc}", recorded=records, refused=True)
            summary = [{"id": m["id"], "kind": m["kind"], "name": m["name"]} for m in pending]
            if module.check_mode or not pending:
                module.exit_json(changed=bool(pending), applied=summary, recorded=records, server=server)
            cur.execute(RECORD_DDL)
            for migration in pending:
                record = (
                    RECORD_INSERT,
                    (migration["id"], migration["name"], migration["kind"], migration["checksum"], params["release"]),
                )
                try:
                    if migration["transaction"]:
                        # One transaction: the migration and its record, or neither.
                        conn.autocommit = False
                        try:
                            with conn, conn.cursor() as tx:
                                tx.execute(migration["sql"])
                                tx.execute(*record)
                        finally:
                            conn.autocommit = True
                    else:
                        cur.execute(migration["sql"])
                        cur.execute(*record)
                except psycopg2.Error as exc:
                    module.fail_json(
                        msg=f"migration {migration['id']:04d}_{migration['name']} failed and was rolled back"
                        f" ({'in a transaction' if migration['transaction'] else 'no transaction: check its effects'}):"
                        f" {str(exc).strip()}",
                        applied=applied,
                        recorded=records,
                    )
                applied.append({"id": migration["id"], "kind": migration["kind"], "name": migration["name"]})
            module.exit_json(changed=True, applied=applied, recorded=records, server=server)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
