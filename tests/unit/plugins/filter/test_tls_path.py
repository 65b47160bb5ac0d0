"""tls_path: one home for the TLS file paths."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.tls_path import tls_path, tls_policy


def test_key_sits_beside_the_certificate_where_haproxy_looks():
    assert tls_path("key") == tls_path("certificate") + ".key"
    assert tls_path("ca").startswith(tls_path("dir") + "/")
    assert tls_path("group") == "rehab-tls"


def test_unknown_name_is_named():
    with pytest.raises(AnsibleFilterError, match="'cert' is not one of dir, ca, certificate, key, csr, group"):
        tls_path("cert")


def test_policy_offers_only_forward_secret_aead_ciphers():
    ciphers = tls_policy("ciphers").split(":")
    assert ciphers and all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in ciphers)
    assert tls_policy("min_version") == "TLSv1.2"
    with pytest.raises(AnsibleFilterError, match="'weak' is not one of min_version, ciphers"):
        tls_policy("weak")
