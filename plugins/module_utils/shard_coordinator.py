# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The coordinator database of a sharded deployment: what it should hold, read back, and the steps
from one to the other (the pg_shard_coordinator module runs them).

The coordinator holds no beneficiary: a range-partitioned parent table whose partitions are
postgres_fdw foreign tables, one per shard (each its own foreign server, ``async_capable``), the
user mappings the app's role reads them through, and the shard map itself (table rehab_shard_map).
So it is rebuilt from the inventory at any time: drop the database and run the module again.

``desired(...)`` and ``plan(current, desired)`` are pure; ``read(cur, ...)`` reads the catalog.
"""

from __future__ import annotations

import re

from ansible_collections.rehab.scale.plugins.module_utils import shard_map as sm

SERVER_PREFIX = sm.COORDINATOR_SERVER_PREFIX
MAP_TABLE = "rehab_shard_map"
DEFAULT_COLUMNS = (
    {"name": "id", "type": "bigint"},
    {"name": "name", "type": "text"},
    {"name": "program", "type": "text"},
    {"name": "created_at", "type": "timestamp with time zone"},
)
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class CoordinatorError(ValueError):
    """Bad input or a coordinator that cannot be brought to the desired state; says which."""


def ident(value, what):
    """A lower-case SQL identifier, or CoordinatorError naming ``what``."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise CoordinatorError(f"{what} {value!r} is not a plain lower-case SQL name ([a-z_][a-z0-9_]*)")
    return value


def quote_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


def desired(shards, *, table, user, remote_user, remote_password, server_options=None, columns=None):
    """What the coordinator should hold, from the shard map (each shard with host, port, dbname)."""
    try:
        shard_map = sm.load(shards)
    except sm.ShardMapError as err:
        raise CoordinatorError(str(err)) from err
    ident(table, "table")
    columns = [dict(c) for c in (columns or DEFAULT_COLUMNS)]
    names = [ident(c.get("name"), "column") for c in columns]
    if "id" not in names:
        raise CoordinatorError("columns must include id (the partition key)")
    servers, partitions, rows = {}, {}, []
    for shard in shard_map.shards:
        name = ident(shard["name"], "shard name")
        if not shard.get("host"):
            raise CoordinatorError(f"shard {name}: host is missing (the address of its primary)")
        options = {
            "host": str(shard["host"]),
            "port": str(shard.get("port") or 5432),
            "dbname": str(shard.get("dbname") or "rehab"),
            "async_capable": "true",
        }
        options.update({str(k): str(v) for k, v in (server_options or {}).items()})
        server = SERVER_PREFIX + name
        servers[server] = {
            "options": options,
            "mapping": {"user": str(remote_user), "password": str(remote_password)},
        }
        upper = "MAXVALUE" if shard["max_id"] is None else str(shard["max_id"] + 1)
        bound = f"FOR VALUES FROM ({shard['min_id']}) TO ({upper})"
        partitions[f"{table}_{name}"] = {"server": server, "bound": bound}
        rows.append((name, shard["min_id"], shard["max_id"], shard_map.capacities[name]))
    return {
        "table": table,
        "user": ident(user, "user"),
        "columns": [(c["name"], str(c.get("type") or "text")) for c in columns],
        "servers": servers,
        "partitions": partitions,
        "map": rows,
    }


def _options_sql(old, new):
    """ALTER ... OPTIONS (...) clause turning option dict ``old`` into ``new``; None when equal."""
    parts = [f"DROP {k}" for k in sorted(set(old) - set(new))]
    for key in sorted(new):
        if key not in old:
            parts.append(f"ADD {key} {quote_literal(new[key])}")
        elif old[key] != new[key]:
            parts.append(f"SET {key} {quote_literal(new[key])}")
    return f"OPTIONS ({', '.join(parts)})" if parts else None


def _create_options(options):
    return ", ".join(f"{k} {quote_literal(v)}" for k, v in sorted(options.items()))


def _server_steps(current, want):
    steps, user = [], want["user"]
    for server in sorted(set(current["servers"]) - set(want["servers"])):
        steps.append((f"drop server {server} (its shard left the map)", f"DROP SERVER {server} CASCADE"))
    for server, spec in want["servers"].items():
        have = current["servers"].get(server)
        if have is None:
            options = _create_options(spec["options"])
            steps.append((
                f"create server {server} ({spec['options']['host']}:{spec['options']['port']})",
                f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({options})",
            ))  # fmt: skip
        elif clause := _options_sql(have["options"], spec["options"]):
            steps.append((f"alter server {server} options", f"ALTER SERVER {server} {clause}"))
        mapping = None if have is None else have.get("mapping")
        what = f"user mapping for {user} on {server}"
        if mapping is None:
            options = _create_options(spec["mapping"])
            steps.append((f"create {what}", f"CREATE USER MAPPING FOR {user} SERVER {server} OPTIONS ({options})"))
        elif clause := _options_sql(mapping, spec["mapping"]):
            steps.append((f"alter {what}", f"ALTER USER MAPPING FOR {user} SERVER {server} {clause}"))
    return steps


def _table_steps(current, want):
    steps, table, user = [], want["table"], want["user"]
    parent = current["parent"]
    if parent is not None and not parent["partitioned"]:
        raise CoordinatorError(
            f"table {table} exists on the coordinator and is not partitioned: the coordinator holds no"
            " data; drop it (or point the module at an empty database)"
        )
    rebuild = parent is not None and parent["columns"] != want["columns"]
    if rebuild:
        steps.append((f"drop {table} (columns changed; it holds no data)", f"DROP TABLE {table}"))
    if parent is None or rebuild:
        cols = ", ".join(f"{name} {kind}" for name, kind in want["columns"])
        steps.append((f"create partitioned table {table}", f"CREATE TABLE {table} ({cols}) PARTITION BY RANGE (id)"))
    if parent is None or rebuild or not parent["granted"]:
        steps.append((f"grant select on {table} to {user}", f"GRANT SELECT ON {table} TO {user}"))
    have_parts = {} if parent is None or rebuild else current["partitions"]
    for name in sorted(set(have_parts) - set(want["partitions"])):
        steps.append((f"drop partition {name} (its shard left the map)", f"DROP FOREIGN TABLE {name}"))
    for name, spec in want["partitions"].items():
        have = have_parts.get(name)
        if have == spec:
            continue
        if have is not None:
            steps.append((f"drop partition {name} (bounds or server changed)", f"DROP FOREIGN TABLE {name}"))
        steps.append((
            f"create partition {name} {spec['bound']} on {spec['server']}",
            f"CREATE FOREIGN TABLE {name} PARTITION OF {table} {spec['bound']} SERVER {spec['server']}"
            f" OPTIONS (schema_name 'public', table_name {quote_literal(table)})",
        ))  # fmt: skip
    return steps


def _map_steps(current, want):
    if current["map"] == want["map"]:
        return []
    values = ", ".join(
        f"({quote_literal(n)}, {lo}, {'NULL' if hi is None else hi}, {'NULL' if cap is None else cap})"
        for n, lo, hi, cap in want["map"]
    )
    statements = (
        f"CREATE TABLE IF NOT EXISTS {MAP_TABLE} (name text PRIMARY KEY, min_id bigint NOT NULL, max_id bigint,"
        " capacity bigint)",
        f"DELETE FROM {MAP_TABLE}",  # noqa: S608 - constant name
        f"INSERT INTO {MAP_TABLE} VALUES {values}",  # noqa: S608 - validated integers and quoted names
        f"GRANT SELECT ON {MAP_TABLE} TO {want['user']}",
    )
    return [(f"write the shard map ({', '.join(n for n, *_ in want['map'])})", "; ".join(statements))]


def plan(current, want):
    """The steps, in order, as ``(description, sql)``; empty when the coordinator is as wanted.

    Secrets never appear in a description (they are in the SQL only)."""
    steps = [] if current["extension"] else [("create extension postgres_fdw", "CREATE EXTENSION postgres_fdw")]
    return steps + _server_steps(current, want) + _table_steps(current, want) + _map_steps(current, want)


_BOUND = re.compile(r"^FOR VALUES FROM \('?(\d+)'?\) TO \('?(\d+|MAXVALUE)'?\)$")


def normalise_bound(text):
    """pg_get_expr's partition bound in the form plan() writes (quotes around numbers dropped)."""
    match = _BOUND.match(text or "")
    return f"FOR VALUES FROM ({match.group(1)}) TO ({match.group(2)})" if match else text


def _options(array):
    return dict(item.split("=", 1) for item in (array or []))


def read(cur, table, user):
    """The coordinator as it is (``cur``: a psycopg2 cursor, tuples)."""
    cur.execute("SELECT count(*) FROM pg_extension WHERE extname = 'postgres_fdw'")
    extension = cur.fetchone()[0] == 1
    cur.execute(
        "SELECT s.srvname, s.srvoptions, (SELECT um.umoptions FROM pg_user_mappings um"
        " WHERE um.srvid = s.oid AND um.usename = %s) FROM pg_foreign_server s"
        " WHERE starts_with(s.srvname, %s)",
        (user, SERVER_PREFIX),
    )
    servers = {}
    for name, options, mapping in cur.fetchall():
        servers[name] = {"options": _options(options), "mapping": None if mapping is None else _options(mapping)}
    cur.execute(
        "SELECT c.relkind, has_table_privilege(%s, c.oid, 'SELECT') FROM pg_class c WHERE c.oid = to_regclass(%s)",
        (user, f"public.{table}"),
    )
    row = cur.fetchone()
    parent, partitions = None, {}
    if row is not None:
        cur.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (f"public.{table}",),
        )
        parent = {"partitioned": row[0] == "p", "granted": row[1], "columns": [tuple(r) for r in cur.fetchall()]}
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), s.srvname FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid"
            " LEFT JOIN pg_foreign_server s ON s.oid = ft.ftserver WHERE i.inhparent = to_regclass(%s)",
            (f"public.{table}",),
        )
        partitions = {
            name: {"server": server, "bound": normalise_bound(bound)} for name, bound, server in cur.fetchall()
        }
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{MAP_TABLE}",))
    rows = []
    if cur.fetchone()[0]:
        cur.execute(f"SELECT name, min_id, max_id, capacity FROM {MAP_TABLE} ORDER BY min_id")  # noqa: S608 - constant
        rows = [tuple(r) for r in cur.fetchall()]
    return {"extension": extension, "servers": servers, "parent": parent, "partitions": partitions, "map": rows}
