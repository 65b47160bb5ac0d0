"""Migrations of a release: found in the wheel by name, planned against the record, refused when a
ran migration changed or the order would break."""

import pytest

from ansible_collections.rehab.scale.plugins.module_utils.migrations import (
    MigrationError,
    from_members,
    plan,
)

MEMBERS = {
    "rehab_agi/migrations/0002_expand_programme.sql": b"ALTER TABLE b ADD COLUMN programme text;",
    "rehab_agi/migrations/0001_expand_beneficiaries.sql": b"CREATE TABLE b (id int);",
    "rehab_agi/migrations/0003_contract_drop_program.sql": b"ALTER TABLE b DROP COLUMN program;",
    "rehab_agi/migrations/0004_expand_index.sql": b"-- rehab:no-transaction\nCREATE INDEX CONCURRENTLY i ON b (id);",
    "rehab_agi/migrations/README.sql.txt": b"not a migration",
    "rehab_agi/migrations/5_expand_short_id.sql": b"ignored: the id has four digits",
    "rehab_agi/__init__.py": b"",
}


def record(migration, release):
    return {k: migration[k] for k in ("id", "name", "kind", "checksum")} | {"release": release}


def test_migrations_are_found_by_name_in_id_order():
    found = from_members(MEMBERS)
    assert [(m["id"], m["kind"], m["name"], m["transaction"]) for m in found] == [
        (1, "expand", "beneficiaries", True),
        (2, "expand", "programme", True),
        (3, "contract", "drop_program", True),
        (4, "expand", "index", False),
    ]


def test_an_id_used_twice_is_refused():
    members = {**MEMBERS, "rehab_agi/migrations/0002_contract_other.sql": b"DROP TABLE x;"}
    with pytest.raises(MigrationError, match=r"migration ids used twice: \[2\]"):
        from_members(members)


def test_only_the_kind_asked_for_and_only_what_did_not_run():
    found = from_members(MEMBERS)
    records = [record(found[0], "1.1.0")]
    assert [m["id"] for m in plan(found, records, "expand")["pending"]] == [2, 4]
    assert [m["id"] for m in plan(found, records, "contract")["pending"]] == [3]
    everything = [record(m, "2.0.0") for m in found]
    assert plan(found, everything, "expand")["pending"] == []


def test_a_migration_that_ran_is_never_edited():
    found = from_members(MEMBERS)
    records = [record(found[0], "1.1.0") | {"checksum": "0" * 64}]
    with pytest.raises(MigrationError, match="0001_beneficiaries changed since it ran"):
        plan(found, records, "expand")


def test_an_expand_migration_cannot_run_after_a_later_contract():
    found = from_members(MEMBERS)
    records = [record(found[0], "1.1.0"), record(found[2], "2.0.0")]
    with pytest.raises(MigrationError, match="0002_programme would run after contract migration 0003"):
        plan(found, records, "expand")


def test_an_unknown_kind_is_refused():
    with pytest.raises(MigrationError, match="kind must be one of expand, contract, got 'drop'"):
        plan([], [], "drop")
