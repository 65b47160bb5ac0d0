"""systemd_sandbox: one list of hardening directives, paths checked."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.sandbox import systemd_sandbox


def test_no_capabilities_read_only_system_ip_and_unix_only():
    lines = systemd_sandbox([])
    for directive in ("CapabilityBoundingSet=", "ProtectSystem=strict", "PrivateDevices=true", "NoNewPrivileges=true"):
        assert directive in lines
    assert "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" in lines
    assert not any(line.startswith("ReadWritePaths") for line in lines)


def test_writable_paths_are_named_and_checked():
    assert systemd_sandbox(["/var/lib/x", "/run/x"])[-1] == "ReadWritePaths=/var/lib/x /run/x"
    with pytest.raises(AnsibleFilterError, match="not absolute"):
        systemd_sandbox(["var/lib/x"])
