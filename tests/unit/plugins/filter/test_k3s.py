"""rehab.scale.k3s_kubeconfig: the kubeconfig k3s writes, rewritten for the control node."""

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.k3s import k3s_kubeconfig

# The shape k3s writes to /etc/rancher/k3s/k3s.yaml.
K3S_WRITES = yaml.safe_load((Path(__file__).resolve().parents[3] / "fixtures/k3s-kubeconfig.yaml").read_text())


def test_server_and_names_are_rewritten_and_the_credentials_kept():
    out = k3s_kubeconfig(K3S_WRITES, "https://10.0.0.10:6443", "rehab")
    assert out["clusters"] == [
        {"name": "rehab", "cluster": {"server": "https://10.0.0.10:6443", "certificate-authority-data": "Q0E="}}
    ]
    assert out["contexts"] == [{"name": "rehab", "context": {"cluster": "rehab", "user": "rehab"}}]
    assert out["users"][0] == {"name": "rehab", "user": K3S_WRITES["users"][0]["user"]}
    assert out["current-context"] == "rehab"
    assert K3S_WRITES["clusters"][0]["name"] == "default"  # the input is not modified


@pytest.mark.parametrize(
    ("config", "server", "name", "message"),
    [
        ({"kind": "Pod"}, "https://a:6443", "rehab", "not a kubeconfig"),
        (K3S_WRITES, "http://a:6443", "rehab", "'http://a:6443' is not an https:// URL"),
        (K3S_WRITES, "https://a:6443", "", "name '' is not"),
        ({**K3S_WRITES, "users": []}, "https://a:6443", "rehab", "one entry in users, found 0"),
    ],
)
def test_bad_input_is_refused_by_name(config, server, name, message):
    with pytest.raises(AnsibleFilterError, match=message):
        k3s_kubeconfig(config, server, name)
