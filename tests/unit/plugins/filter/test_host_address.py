"""host_address: the one rule for a host's address, and its errors."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.host_address import host_address

HOSTVARS = {
    "explicit": {"rehab_address": "2001:db8::5", "ansible_facts": {"default_ipv4": {"address": "10.0.0.5"}}},
    "gathered": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.6"}}, "ansible_host": "192.0.2.6"},
    "ssh_only": {"ansible_host": "192.0.2.7"},
    "bare": {},
}


@pytest.mark.parametrize(
    ("name", "address"),
    [("explicit", "2001:db8::5"), ("gathered", "10.0.0.6"), ("ssh_only", "192.0.2.7"), ("bare", "bare")],
)
def test_rule_order(name, address):
    assert host_address(name, HOSTVARS) == address


@pytest.mark.parametrize(
    ("name", "message"), [("nope", "'nope' is not in the inventory"), (["a"], "expected an inventory name")]
)
def test_errors(name, message):
    with pytest.raises(AnsibleFilterError, match=message):
        host_address(name, HOSTVARS)
