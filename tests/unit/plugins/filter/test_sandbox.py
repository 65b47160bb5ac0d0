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


def test_go_programs_get_setrlimit_back_after_the_denied_groups():
    lines = systemd_sandbox([], runtime="go")
    assert lines.index("SystemCallFilter=setrlimit") > lines.index("SystemCallFilter=~@privileged @resources")
    assert "SystemCallFilter=setrlimit" not in systemd_sandbox([])
    with pytest.raises(AnsibleFilterError, match="runtime 'java' is not one of go"):
        systemd_sandbox([], runtime="java")


def test_host_metrics_read_netlink_and_the_clock_state_and_nothing_else_changes():
    plain, host = systemd_sandbox([]), systemd_sandbox([], host_metrics=True)
    assert "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK" in host
    assert "ProtectClock=true" in plain and "ProtectClock=true" not in host
    assert set(plain) - set(host) == {"ProtectClock=true", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"}
    assert set(host) - set(plain) == {
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "SystemCallFilter=adjtimex",
    }
    assert "CapabilityBoundingSet=" in host  # still no capability: adjtimex cannot set the clock
