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
# What every TLS server of the collection accepts (HAProxy, nginx): TLS 1.2 with the forward-secret
# AEAD ciphers of Mozilla's intermediate profile; TLS 1.3 keeps OpenSSL's defaults.
POLICY = {
    "min_version": "TLSv1.2",
    "ciphers": ":".join(
        [
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305",
        ]
    ),
}


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


def tls_policy(name):
    """'ciphers' | rehab.scale.tls_policy -> the TLS 1.2 cipher list every TLS server uses."""
    try:
        return POLICY[name]
    except (KeyError, TypeError):
        raise AnsibleFilterError(f"rehab.scale.tls_policy: {name!r} is not one of {', '.join(POLICY)}") from None


class FilterModule:
    def filters(self):
        return {"tls_path": tls_path, "tls_policy": tls_policy}
