# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""k3s_kubeconfig: the kubeconfig k3s writes on a server, made fit for the control node.

k3s writes /etc/rancher/k3s/k3s.yaml with its API at https://127.0.0.1:6443 and every name
"default". On the control node it must reach the cluster through its registration address, and its
names must not collide with another cluster's when a user merges kubeconfigs (KUBECONFIG=a:b).
"""

import copy

from ansible.errors import AnsibleFilterError


def k3s_kubeconfig(config, server, name):
    """Rewrite every cluster's server to ``server`` and rename the clusters, contexts and users
    to ``name`` (a kubeconfig from k3s has one of each); the current context follows."""
    if not isinstance(config, dict) or config.get("kind") != "Config":
        raise AnsibleFilterError("rehab.scale.k3s_kubeconfig: the input is not a kubeconfig (kind: Config)")
    if not str(server).startswith("https://"):
        raise AnsibleFilterError(f"rehab.scale.k3s_kubeconfig: server {server!r} is not an https:// URL")
    if not name or not isinstance(name, str):
        raise AnsibleFilterError(f"rehab.scale.k3s_kubeconfig: name {name!r} is not a non-empty string")
    out = copy.deepcopy(config)
    sections = {"clusters": "cluster", "users": "user", "contexts": "context"}
    for section in sections:
        entries = out.get(section) or []
        if len(entries) != 1:
            raise AnsibleFilterError(
                f"rehab.scale.k3s_kubeconfig: expected one entry in {section}, found {len(entries)}"
            )
    out["clusters"][0]["name"] = name
    out["clusters"][0]["cluster"]["server"] = server
    out["users"][0]["name"] = name
    context = out["contexts"][0]
    context["name"] = name
    context["context"] = {**context.get("context", {}), "cluster": name, "user": name}
    out["current-context"] = name
    return out


class FilterModule:
    def filters(self):
        return {"k3s_kubeconfig": k3s_kubeconfig}
