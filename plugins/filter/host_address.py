# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The host_address filter: the one rule for a host's address (see module_utils/address.py)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.module_utils.address import host_address as _host_address


def host_address(name, hostvars):
    """'lab-pg1' | rehab.scale.host_address(hostvars) -> '172.30.10.5'."""
    if not isinstance(name, str):
        raise AnsibleFilterError(f"rehab.scale.host_address: expected an inventory name, got {name!r}")
    try:
        return _host_address(name, hostvars)
    except KeyError:
        raise AnsibleFilterError(f"rehab.scale.host_address: {name!r} is not in the inventory") from None


class FilterModule:
    def filters(self):
        return {"host_address": host_address}
