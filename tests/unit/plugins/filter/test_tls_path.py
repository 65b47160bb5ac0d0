"""tls_path: one home for the TLS file paths."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.tls_path import tls_path


def test_key_sits_beside_the_certificate_where_haproxy_looks():
    assert tls_path("key") == tls_path("certificate") + ".key"
    assert tls_path("ca").startswith(tls_path("dir") + "/")
    assert tls_path("group") == "rehab-tls"


def test_unknown_name_is_named():
    with pytest.raises(AnsibleFilterError, match="'cert' is not one of dir, ca, certificate, key, csr, group"):
        tls_path("cert")
