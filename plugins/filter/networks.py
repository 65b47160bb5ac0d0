# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Allow-list checks on addresses and networks, parsed with ansible.utils' ipaddr (netaddr).

Each filter returns the refusals as sentences naming the variable and the bad value, so a role's
validate step can assert the list is empty and print it. Nothing is pattern-matched: '0.0.0.0/1'
is as wide as it looks, '0.0.0.0 ::' is not one address, an IPv6 host is a /128.
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ansible.utils.plugins.plugin_utils.base.ipaddr_utils import ipaddr

DEFAULT_MIN_PREFIX = 8
DEFAULT_MIN_PREFIX_V6 = 32


def _prefix(value):
    """The prefix length of an address or network string, or None when it is neither."""
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        return None
    prefix = ipaddr(value, "prefix")
    return None if prefix is False or prefix is None else int(prefix)


def _is_v6(value):
    return ":" in value


def network_refusals(values, what, min_prefix=DEFAULT_MIN_PREFIX, min_prefix_v6=DEFAULT_MIN_PREFIX_V6):
    """Networks allowed to reach a service: each an IPv4/IPv6 address or CIDR, none wider than the bound.

    ['0.0.0.0/1'] | rehab.scale.network_refusals('rehab_client_networks') ->
    ['rehab_client_networks: 0.0.0.0/1 is wider than /8 (a /1 allows 2147483648 addresses)'].
    """
    if isinstance(values, str) or not isinstance(values, list):
        return [f"{what}: expected a list of networks, got {values!r}"]
    refusals = []
    for value in values:
        prefix = _prefix(value)
        if prefix is None:
            refusals.append(f"{what}: {value!r} is not an IP address or network (CIDR)")
            continue
        bound = min_prefix_v6 if _is_v6(value) else min_prefix
        if prefix < bound:
            size = 2 ** ((128 if _is_v6(value) else 32) - prefix)
            refusals.append(f"{what}: {value} is wider than /{bound} (a /{prefix} allows {size} addresses)")
    return refusals


def bind_refusals(values, what):
    """Listen addresses: each one concrete IPv4 or IPv6 address, never a wildcard (0.0.0.0, ::, *)."""
    if isinstance(values, str) or not isinstance(values, list):
        return [f"{what}: expected a list of addresses, got {values!r}"]
    refusals = []
    for value in values:
        address = ipaddr(value, "address") if isinstance(value, str) and value == value.strip() else False
        if not address or address != value:
            refusals.append(f"{what}: {value!r} is not one IP address")
        elif ipaddr(value, "int") == 0:  # 0.0.0.0 or ::
            refusals.append(f"{what}: {value} listens on every interface; name the addresses instead")
    return refusals


def cidr(value):
    """One host or network in CIDR form: '10.0.0.5' -> '10.0.0.5/32', 'fd00::5' -> 'fd00::5/128',
    '10.0.0.0/24' -> '10.0.0.0/24' (pg_hba and firewall entries). Fails on anything else."""
    if isinstance(value, str) and "/" in value:
        result = ipaddr(value, "net") or ipaddr(value, "host")
    else:
        result = ipaddr(value, "host") if isinstance(value, str) else False
    if not result:
        raise AnsibleFilterError(f"rehab.scale.cidr: {value!r} is not an IP address or network")
    return result


class FilterModule:
    def filters(self):
        return {"network_refusals": network_refusals, "bind_refusals": bind_refusals, "cidr": cidr}
