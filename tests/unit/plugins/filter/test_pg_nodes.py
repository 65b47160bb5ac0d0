"""pg_nodes: addresses from facts, fallbacks for hosts without facts, clear errors."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.pg_nodes import lsn_int, pg_nodes

HOSTVARS = {
    "pg1": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.1"}}, "postgresql_port": 5433},
    "pg2": {"ansible_host": "192.0.2.2", "postgresql_failover_priority": 200},
    "pg3": {},
    "pg4": {"rehab_address": "10.9.9.9", "ansible_facts": {"default_ipv4": {"address": "10.0.0.4"}}},
}


def test_addresses_and_fallbacks():
    assert pg_nodes(["pg1", "pg2", "pg3", "pg4"], HOSTVARS) == [
        {"name": "pg1", "host": "10.0.0.1", "port": 5433, "priority": 100},
        {"name": "pg2", "host": "192.0.2.2", "port": 5432, "priority": 200},
        {"name": "pg3", "host": "pg3", "port": 5432, "priority": 100},
        {"name": "pg4", "host": "10.9.9.9", "port": 5432, "priority": 100},
    ]


@pytest.mark.parametrize(("names", "message"), [(["pg9"], "'pg9' is not in the inventory"), ("pg1", "expected a list")])
def test_errors(names, message):
    with pytest.raises(AnsibleFilterError, match=message):
        pg_nodes(names, HOSTVARS)


def test_lsn_int():
    assert lsn_int("1/0") == 2**32
    with pytest.raises(AnsibleFilterError, match=r"rehab\.scale\.lsn_int: 'x' is not a PostgreSQL LSN"):
        lsn_int("x")
