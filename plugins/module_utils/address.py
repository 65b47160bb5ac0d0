# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The one rule for a host's address, as every other host and the control node reach it.

``rehab_address`` when the inventory sets it (hosts with several interfaces, NAT, IPv6), else the
gathered default IPv4 address, else ``ansible_host``, else the inventory name itself (a host that is
down may have no facts in this run; the fact cache usually still has them).
Used by the ``rehab.scale.host_address`` and ``rehab.scale.pg_nodes`` filters, so pg_hba, replica
settings, HAProxy, Redis, Prometheus and the on-call probes all agree.
"""


def host_address(name, hostvars):
    """Address of inventory host ``name``; KeyError when it is not in ``hostvars``."""
    host = hostvars[name]
    explicit = host.get("rehab_address")
    if explicit:
        return str(explicit)
    facts = host.get("ansible_facts") or {}
    gathered = (facts.get("default_ipv4") or {}).get("address")
    return str(gathered or host.get("ansible_host") or name)
