# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""systemd_sandbox: the one list of hardening directives for the services rehab.scale writes units for.

A network daemon that needs no privilege: no capabilities, a read-only system, no devices, no
kernel tunables, modules or logs, only IP and Unix sockets, the @system-service system calls minus
the privileged ones. Paths it must write are named (ReadWritePaths).
"""

from ansible.errors import AnsibleFilterError

BASE = (
    "NoNewPrivileges=true",
    "ProtectSystem=strict",
    "ProtectHome=true",
    "PrivateTmp=true",
    "PrivateDevices=true",
    "ProtectKernelTunables=true",
    "ProtectKernelModules=true",
    "ProtectKernelLogs=true",
    "ProtectControlGroups=true",
    "ProtectClock=true",
    "ProtectHostname=true",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=true",
    "RestrictRealtime=true",
    "RestrictSUIDSGID=true",
    "LockPersonality=true",
    "MemoryDenyWriteExecute=true",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources",
    "UMask=0077",
)


def systemd_sandbox(writable_paths=None):
    """[Service] lines; ``writable_paths`` become ReadWritePaths (absolute paths only)."""
    paths = list(writable_paths or [])
    bad = [p for p in paths if not isinstance(p, str) or not p.startswith("/") or any(c.isspace() for c in p)]
    if bad:
        raise AnsibleFilterError(f"rehab.scale.systemd_sandbox: not absolute paths without spaces: {bad!r}")
    return list(BASE) + ([f"ReadWritePaths={' '.join(paths)}"] if paths else [])


class FilterModule:
    def filters(self):
        return {"systemd_sandbox": systemd_sandbox}
