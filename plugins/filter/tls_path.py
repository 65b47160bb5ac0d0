# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""tls_path: the one home of the paths of a host's TLS files (rehab.scale.pki writes them, every
role that serves or verifies TLS reads them).

The key sits beside the certificate as ``<certificate>.key``: HAProxy loads it from there by
itself (ssl-load-extra-files), PostgreSQL, Redis and Prometheus are given both paths.
"""

from ansible.errors import AnsibleFilterError

DIRECTORY = "/etc/rehab-scale/tls"
PATHS = {
    "dir": DIRECTORY,
    "ca": f"{DIRECTORY}/ca.pem",
    "certificate": f"{DIRECTORY}/host.pem",
    "key": f"{DIRECTORY}/host.pem.key",
    "csr": f"{DIRECTORY}/host.csr",
}
KEY_GROUP = "rehab-tls"


def tls_path(name):
    """'certificate' | rehab.scale.tls_path -> '/etc/rehab-scale/tls/host.pem'."""
    if name == "group":
        return KEY_GROUP
    try:
        return PATHS[name]
    except (KeyError, TypeError):
        raise AnsibleFilterError(
            f"rehab.scale.tls_path: {name!r} is not one of {', '.join([*PATHS, 'group'])}"
        ) from None


class FilterModule:
    def filters(self):
        return {"tls_path": tls_path}
