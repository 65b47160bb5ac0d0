# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Database migrations of a release: what they are, which are pending, and the record of what ran.

A release carries its migrations in the wheel, as ``<package>/migrations/NNNN_<kind>_<name>.sql``:
``expand`` migrations leave the schema usable by the previous release (add a column, a table, an
index) and run during a rollout; ``contract`` ones do not (drop, rename) and run only by an explicit
step. Each runs once, in a transaction unless its first line is ``-- rehab:no-transaction`` (CREATE
INDEX CONCURRENTLY), and is recorded with its checksum and the release that carried it.
"""

from __future__ import annotations

import hashlib
import re

KINDS = ("expand", "contract")
MEMBER_RE = re.compile(
    r"^[A-Za-z0-9_]+/migrations/(?P<id>[0-9]{4})_(?P<kind>expand|contract)_(?P<name>[a-z0-9_]+)\.sql$"
)
NO_TRANSACTION = "-- rehab:no-transaction"
# The record, rehab_schema_migrations, owned by the schema's owner (the role migrations run as).
RECORD_PRESENT = "SELECT to_regclass('rehab_schema_migrations') IS NOT NULL AS present"
RECORD_SELECT = "SELECT id, name, kind, checksum, release, applied_at::text FROM rehab_schema_migrations ORDER BY id"
RECORD_INSERT = "INSERT INTO rehab_schema_migrations (id, name, kind, checksum, release) VALUES (%s, %s, %s, %s, %s)"
RECORD_DDL = """
CREATE TABLE IF NOT EXISTS rehab_schema_migrations (
    id         integer PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('expand', 'contract')),
    checksum   text NOT NULL,
    release    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
# One runner at a time per database, whatever the number of control nodes.
LOCK_KEY = 0x7265686162  # "rehab"


class MigrationError(ValueError):
    """A release's migrations are inconsistent with themselves or with the record; says which."""


def from_members(members: dict[str, bytes]) -> list[dict]:
    """The migrations among a wheel's members ({path: content}), in id order."""
    found = []
    for path, content in members.items():
        match = MEMBER_RE.match(path)
        if not match:
            continue
        sql = content.decode()
        found.append(
            {
                "id": int(match["id"]),
                "kind": match["kind"],
                "name": match["name"],
                "checksum": hashlib.sha256(content).hexdigest(),
                "sql": sql,
                "transaction": not sql.lstrip().startswith(NO_TRANSACTION),
            }
        )
    found.sort(key=lambda m: m["id"])
    ids = [m["id"] for m in found]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise MigrationError(f"migration ids used twice: {duplicated}")
    return found


def plan(migrations: list[dict], records: list[dict], kind: str) -> dict:
    """What to run for ``kind``: the release's migrations of that kind not yet recorded, in order.

    Refused: a recorded migration whose checksum differs (migrations are immutable once run), and an
    expand migration pending after a contract one of a later id already ran (the order would break).
    """
    if kind not in KINDS:
        raise MigrationError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    recorded = {r["id"]: r for r in records}
    for migration in migrations:
        record = recorded.get(migration["id"])
        if record and record["checksum"] != migration["checksum"]:
            raise MigrationError(
                f"migration {migration['id']:04d}_{migration['name']} changed since it ran (release"
                f" {record['release']}, checksum {record['checksum'][:12]}, now {migration['checksum'][:12]});"
                " a migration that ran is never edited: add a new one"
            )
    pending = [m for m in migrations if m["kind"] == kind and m["id"] not in recorded]
    last_contract = max((r["id"] for r in records if r["kind"] == "contract"), default=0)
    late = [m for m in pending if m["id"] < last_contract]
    if late:
        raise MigrationError(
            f"migration {late[0]['id']:04d}_{late[0]['name']} would run after contract migration"
            f" {last_contract:04d}, which has a later id and already ran"
        )
    return {"pending": pending, "recorded": sorted(records, key=lambda r: r["id"])}
