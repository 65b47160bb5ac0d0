#!/usr/bin/python
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
DOCUMENTATION = r"""
module: pg_shard_coordinator
short_description: Build the coordinator database of a sharded deployment (postgres_fdw, range partitions)
version_added: 0.4.0
description:
  - Makes a database the coordinator of the shards in O(shards) for cross-shard reads. A
    range-partitioned parent table O(table) whose partitions are C(postgres_fdw) foreign tables, one
    per shard, each on a foreign server C(rehab_shard_<name>) with C(async_capable). A query for one
    ID prunes to one shard; a listing or a count fans out.
  - Also the user mapping through which O(user) (the app's role) reads each shard as O(remote_user),
    C(SELECT) on the parent for O(user), and the shard map in the table C(rehab_shard_map).
  - The coordinator holds no beneficiary. A partition whose bounds or server changed, a parent whose
    columns changed, and the objects of a shard that left the map are dropped and created again.
    Dropping the database and running the module again rebuilds it.
  - Everything in one transaction. Check mode and diff list the steps without running them.
  - It gives no atomic commit across shards. Writes go to each shard directly.
  - Connects as a superuser (C(CREATE EXTENSION postgres_fdw) and user mappings need one), usually
    the C(postgres) user over the local socket.
options:
  dsn:
    description: libpq connection string of the coordinator database, as a superuser.
    type: str
    default: dbname=rehab_coordinator
  shards:
    description:
      - The shard map (validated as by M(rehab.scale.shard_assignment)). Besides C(name), C(min_id),
        C(max_id) and C(capacity), each shard has C(host) (the address of its primary, or a
        libpq multi-host list), optional C(port) (5432) and C(dbname) (rehab).
    type: list
    elements: dict
    required: true
  table:
    description: Name of the parent table, the same as the shards' table.
    type: str
    default: beneficiaries
  columns:
    description:
      - Columns of the parent table, C(name) and C(type), as in the shards' table. The default is the
        reference service's 1.x schema.
      - When a release changes the shards' columns, give the new list. The parent is then rebuilt.
    type: list
    elements: dict
  user:
    description: The coordinator role the app connects as. It gets the user mappings and C(SELECT).
    type: str
    required: true
  remote_user:
    description: Role on each shard the coordinator reads as (it needs C(SELECT) on O(table)).
    type: str
    required: true
  remote_password:
    description: Its password.
    type: str
    required: true
    no_log: true
  server_options:
    description:
      - Extra options of every foreign server, such as C(sslmode), C(sslrootcert), C(fetch_size).
    type: dict
    default: {}
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Build the coordinator of the three shards
  rehab.scale.pg_shard_coordinator:
    shards:
      - {name: shard1, min_id: 1, max_id: 100000, host: 10.0.1.11}
      - {name: shard2, min_id: 100001, max_id: 200000, host: 10.0.1.12}
      - {name: shard3, min_id: 200001, capacity: 100000, host: 10.0.1.13}
    user: rehab
    remote_user: rehab_reader
    remote_password: "{{ vault_rehab_reader_password }}"
    server_options: {sslmode: verify-full, sslrootcert: /etc/rehab-scale/tls/ca.pem}
  become: true
  become_user: postgres
"""

RETURN = r"""
steps:
  description: What was (or in check mode would be) done, in order. Secrets are left out.
  returned: always
  type: list
  elements: str
  sample: ["create extension postgres_fdw", "create server rehab_shard_shard1 (10.0.1.11:5432)"]
partitions:
  description: The partitions the coordinator holds afterwards, with their bounds and servers.
  returned: always
  type: dict
  sample: {"beneficiaries_shard1": {"server": "rehab_shard_shard1", "bound": "FOR VALUES FROM (1) TO (100001)"}}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rehab.scale.plugins.module_utils.shard_coordinator import CoordinatorError, desired, plan, read

try:
    import psycopg2
except ImportError:  # reported by main()
    psycopg2 = None


def main():
    module = AnsibleModule(
        argument_spec={
            "dsn": {"type": "str", "default": "dbname=rehab_coordinator"},
            "shards": {"type": "list", "elements": "dict", "required": True},
            "table": {"type": "str", "default": "beneficiaries"},
            "columns": {"type": "list", "elements": "dict"},
            "user": {"type": "str", "required": True},
            "remote_user": {"type": "str", "required": True},
            "remote_password": {"type": "str", "required": True, "no_log": True},
            "server_options": {"type": "dict", "default": {}},
            "connect_timeout": {"type": "int", "default": 5},
        },
        supports_check_mode=True,
    )
    if psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    p = module.params
    try:
        want = desired(
            p["shards"],
            **{key: p[key] for key in ("table", "user", "remote_user", "remote_password", "server_options", "columns")},
        )
    except CoordinatorError as exc:
        module.fail_json(msg=f"coordinator refused: {exc}")
    try:
        conn = psycopg2.connect(
            p["dsn"], connect_timeout=p["connect_timeout"], application_name="rehab-scale coordinator"
        )
    except psycopg2.Error as exc:
        module.fail_json(msg=f"cannot reach the coordinator database ({p['dsn']}): {str(exc).strip()}")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if not cur.fetchone()[0]:
                module.fail_json(msg="the coordinator needs a superuser connection (postgres_fdw, user mappings)")
            cur.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (want["user"],))
            if cur.fetchone()[0] == 0:
                module.fail_json(msg=f"role {want['user']} does not exist on the coordinator; create it first")
            before = read(cur, want["table"], want["user"])
            steps = plan(before, want)
            if not module.check_mode:
                for _, sql in steps:
                    cur.execute(sql)
            after = read(cur, want["table"], want["user"]) if steps and not module.check_mode else before
            if module.check_mode:
                conn.rollback()
    except CoordinatorError as exc:
        module.fail_json(msg=f"coordinator refused: {exc}")
    except psycopg2.Error as exc:
        module.fail_json(msg=f"coordinator not changed (rolled back): {str(exc).strip()}")
    finally:
        conn.close()
    described = [description for description, _ in steps]
    result = {"changed": bool(steps), "steps": described, "partitions": after["partitions"]}
    if module._diff:
        result["diff"] = {"before": "", "after": "\n".join(described) + ("\n" if described else "")}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
