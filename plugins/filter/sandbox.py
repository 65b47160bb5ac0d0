# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""systemd_sandbox: the one list of hardening directives for the services rehab.scale writes units for.

A network daemon that needs no privilege: no capabilities, a read-only system, no devices, no
kernel tunables, modules or logs, only IP and Unix sockets, the @system-service system calls minus
the privileged ones. Paths it must write are named (ReadWritePaths).
"""

from ansible.errors import AnsibleFilterError

FAMILIES = "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"
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
    FAMILIES,
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


# System calls a kind of program needs back from the denied groups. Go programs (the Prometheus
# exporters) raise their own open-file limit when they start (Go 1.19 and later), with setrlimit,
# which @resources denies: without it systemd kills them with SIGSYS before they serve.
RUNTIMES = {"go": ("setrlimit",)}


# What a collector of host metrics (the node exporter) reads beyond a network daemon: network device
# statistics over netlink, and the clock's synchronisation state through adjtimex, which
# ProtectClock denies as a whole (read-only here: without CAP_SYS_TIME it cannot set the clock).
HOST_METRICS = {FAMILIES: f"{FAMILIES} AF_NETLINK"}
HOST_METRICS_DROPPED = ("ProtectClock=true",)
HOST_METRICS_SYSCALLS = ("adjtimex",)


def systemd_sandbox(writable_paths=None, runtime=None, host_metrics=False):
    """[Service] lines; ``writable_paths`` become ReadWritePaths (absolute paths only); ``runtime``
    ('go') allows back what that runtime needs from the denied system call groups; ``host_metrics``
    lets a host-metrics collector read netlink and the clock's state."""
    paths = list(writable_paths or [])
    bad = [p for p in paths if not isinstance(p, str) or not p.startswith("/") or any(c.isspace() for c in p)]
    if bad:
        raise AnsibleFilterError(f"rehab.scale.systemd_sandbox: not absolute paths without spaces: {bad!r}")
    if runtime is not None and runtime not in RUNTIMES:
        known = ", ".join(RUNTIMES)
        raise AnsibleFilterError(f"rehab.scale.systemd_sandbox: runtime {runtime!r} is not one of {known}")
    syscalls = RUNTIMES.get(runtime, ()) + (HOST_METRICS_SYSCALLS if host_metrics else ())
    base = list(BASE)
    if host_metrics:
        base = [HOST_METRICS.get(line, line) for line in base if line not in HOST_METRICS_DROPPED]
    return (
        base
        + ([f"SystemCallFilter={' '.join(syscalls)}"] if syscalls else [])
        + ([f"ReadWritePaths={' '.join(paths)}"] if paths else [])
    )


class FilterModule:
    def filters(self):
        return {"systemd_sandbox": systemd_sandbox}
