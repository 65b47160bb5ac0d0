"""rehab-agi's objects for Kubernetes: the guide's values from the k8s_app role's defaults, every
object valid against the pinned k3s's Kubernetes schema (strict), bad settings refused by name."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.rehab.scale.plugins.module_utils.k8s_manifests import (
    REQUIRED,
    ManifestError,
    app_manifests,
    kube_state_metrics_path,
    monitoring_manifests,
    validate,
)

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles/k8s_app/defaults/main.yml").read_text())
K3S = yaml.safe_load((ROOT / "roles/k3s_server/defaults/main.yml").read_text())["k3s_server_version"]
KUBERNETES = K3S.lstrip("v").split("+")[0]
# What the app servers' /etc/rehab-agi/shards.json holds (rehab.scale.app), and the service reads.
SHARD_DOCUMENT = {
    "shards": [
        {
            "name": "shard1",
            "min_id": 1,
            "max_id": 100000,
            "write_dsn": "host=10.0.0.5 port=5432 dbname=rehab user=rehab target_session_attrs=read-write",
            "read_dsn": "host=10.0.0.5 port=5432 dbname=rehab user=rehab",
            "redis": {"nodes": ["10.0.0.7:6379"], "cluster": False},
        }
    ],
    "coordinator": None,
}


def role_settings(**changes):
    """What the role passes with its defaults (the guide's values), plus changes."""
    base = {key: DEFAULTS[f"k8s_app_{key}"] for key in REQUIRED if key != "image"}
    return {**copy.deepcopy(base), "image": "rehab-agi:1.0.0", "secret_keys": ["REHAB_AGI_DB_PASSWORD"], **changes}


def by_kind(manifests):
    return {m["kind"]: m for m in manifests}


def test_every_guide_value_is_in_the_objects_built_from_the_role_defaults():
    objects = by_kind(app_manifests(role_settings()))
    deployment = objects["Deployment"]
    assert deployment["metadata"]["name"] == "rehab-agi"
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = spec["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 5001, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/agi/health"
    assert (container["livenessProbe"]["initialDelaySeconds"], container["livenessProbe"]["periodSeconds"]) == (30, 10)
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/agi/health/ready"
    assert (container["readinessProbe"]["initialDelaySeconds"], container["readinessProbe"]["periodSeconds"]) == (5, 5)
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rehab-agi"}
    assert objects["Ingress"]["spec"]["ingressClassName"] == "traefik"
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert objects["Service"]["spec"]["ports"][0]["port"] == 5001


def test_the_objects_pass_the_pinned_kubernetes_schema_strictly():
    validate(app_manifests(role_settings(shard_map=SHARD_DOCUMENT)), KUBERNETES)


def test_an_unknown_field_fails_the_schema_naming_the_object_and_field():
    manifests = app_manifests(role_settings())
    by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(
        ManifestError, match=r"Deployment/rehab-agi: spec\.template\.spec\.containers\.0: .*'livenessprobe'"
    ):
        validate(manifests, KUBERNETES)


def test_the_secret_carries_keys_never_values():
    secret = by_kind(app_manifests(role_settings()))["Secret"]
    assert secret["stringData"] == {"REHAB_AGI_DB_PASSWORD": "set-by-the-role"}


def test_the_shard_map_is_mounted_and_named_to_the_app():
    objects = by_kind(app_manifests(role_settings(shard_map=SHARD_DOCUMENT)))
    assert objects["ConfigMap"]["data"]["REHAB_AGI_SHARDS"] == "/etc/rehab-agi/shards.json"
    assert json.loads(objects["ConfigMap"]["data"]["shards.json"]) == SHARD_DOCUMENT
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "shard-map", "mountPath": "/etc/rehab-agi", "readOnly": True}
    ]


CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_ca_is_mounted_where_the_service_reads_it():
    """The app's settings name the CA by path (sslrootcert=, REHAB_AGI_REDIS_TLS_CA): the pods get it there."""
    manifests = app_manifests(role_settings(ca_certificate=CA, ca_path="/etc/rehab-scale/tls/ca.pem"))
    validate(manifests, KUBERNETES)
    ca = next(o for o in manifests if o["metadata"]["name"] == "rehab-agi-ca")
    assert ca["kind"] == "ConfigMap" and ca["data"] == {"ca.pem": CA}
    assert ca["metadata"]["labels"]["rehab.scale/app"] == "rehab-agi"  # applied and pruned with the app's
    pod = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "ca", "mountPath": "/etc/rehab-scale/tls", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "rehab-agi-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]}} in pod[
        "volumes"
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"autoscaler": {"min": 5, "max": 3, "cpu_percent": 70}}, "autoscaler min 5 and max 3"),
        (
            {"autoscaler": {"min": 3, "max": 10, "cpu_percent": 170}},
            "autoscaler cpu_percent 170 is not between 1 and 100",
        ),
        ({"replicas": 12}, "replicas 12 is outside the autoscaler's 3-10"),
        ({"replicas": "3"}, "replicas '3' is not a whole number"),
        ({"max_surge": 0}, "max_surge 0 and max_unavailable 0"),
        ({"disruption_max_unavailable": 3}, "disruption_max_unavailable 3 must stay below the autoscaler's min 3"),
        ({"requests": {"cpu": "1", "memory": "256Mi"}}, "requests cpu 1 is above limits cpu 500m"),
        ({"requests": {"cpu": "250m", "memory": "1Gi"}}, "requests memory 1Gi is above limits memory 512Mi"),
        ({"limits": {"cpu": "half", "memory": "512Mi"}}, "cpu 'half' is not a CPU quantity"),
        ({"liveness": {"path": "api/agi/health", "initial_delay": 30, "period": 10}}, "liveness path 'api/agi/health'"),
        ({"namespace": "Rehab"}, "namespace 'Rehab' is not a DNS label"),
        ({"image": ""}, "image '' is not an image reference"),
        ({"env": {"REHAB-AGI": "x"}}, "environment variable name 'REHAB-AGI' is not valid"),
        ({"env": {"REHAB_AGI_DB_PASSWORD": "x"}}, "REHAB_AGI_DB_PASSWORD set both in env and in the secret"),
        ({"port": 70000}, "port 70000 is not a TCP port"),
        # The inventory's rehab_shards is not what the service reads: every pod would exit at start.
        (
            {"shard_map": [{"name": "shard1", "min_id": 1, "max_id": 100000}]},
            "shard_map is not the service's shard document (a list",
        ),
        ({"shard_map": {"shards": [{"name": "shard1", "min_id": 1}]}}, "shard_map has no write_dsn for shard1"),
        ({"ca_certificate": "not a pem", "ca_path": "/etc/rehab-scale/tls/ca.pem"}, "ca_certificate is not a PEM"),
        (
            {"ca_certificate": CA, "ca_path": "/etc/rehab-agi/ca.pem"},
            "ca_path '/etc/rehab-agi/ca.pem' is not a file path",
        ),
        ({"ca_certificate": CA, "ca_path": ""}, "ca_path '' is not a file path"),
    ],
)
def test_bad_settings_are_refused_with_their_name(changes, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(")):
        app_manifests(role_settings(**changes))


def test_missing_settings_are_named():
    settings_ = role_settings()
    del settings_["autoscaler"]
    with pytest.raises(ManifestError, match="settings missing: autoscaler"):
        app_manifests(settings_)


@settings(max_examples=10, deadline=None)  # a schema check takes about 0.25 s
@given(
    low=st.integers(1, 20),
    span=st.integers(0, 20),
    cpu=st.integers(1, 100),
    request=st.integers(1, 4000),
)
def test_any_accepted_scaling_passes_the_schema(low, span, cpu, request):
    """Whatever scaling the checks accept, Kubernetes' schema accepts too."""
    built = app_manifests(
        role_settings(
            replicas=low,
            autoscaler={"min": low, "max": low + span, "cpu_percent": cpu},
            disruption_max_unavailable=low - 1,
            requests={"cpu": f"{request}m", "memory": "256Mi"},
            limits={"cpu": f"{request * 2}m", "memory": "512Mi"},
        )
    )
    validate(built, KUBERNETES)
    assert by_kind(built)["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == low + span


# --- The cluster's metrics for the Prometheus outside it -----------------------------------------

KSM_IMAGE = DEFAULTS["k8s_app_kube_state_metrics_image"]


def monitoring_by_name():
    return {(m["kind"], m["metadata"]["name"]): m for m in monitoring_manifests(KSM_IMAGE, "rehab-agi")}


def test_the_monitoring_objects_pass_the_schema_strictly_and_carry_their_label():
    objects = monitoring_manifests(KSM_IMAGE, "rehab-agi")
    validate(objects, KUBERNETES)
    assert {m["metadata"]["labels"]["rehab.scale/app"] for m in objects} == {"rehab-agi-monitoring"}
    assert {m["metadata"].get("namespace", "kube-system") for m in objects} == {"kube-system"}


def test_prometheus_may_read_the_kubelets_metrics_and_kube_state_metrics_only():
    """Least privilege: no nodes/proxy (which reaches the whole kubelet API), no list, no secrets."""
    objects = monitoring_by_name()
    rules = objects[("ClusterRole", "rehab-prometheus")]["rules"]
    assert rules == [
        {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
        {
            "apiGroups": [""],
            "resources": ["services/proxy"],
            "resourceNames": ["kube-state-metrics:http-metrics"],
            "verbs": ["get"],
        },
    ]
    token = objects[("Secret", "rehab-prometheus-token")]
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "rehab-prometheus"}
    bound = objects[("ClusterRoleBinding", "rehab-prometheus")]
    assert bound["subjects"] == [{"kind": "ServiceAccount", "name": "rehab-prometheus", "namespace": "kube-system"}]


def test_the_proxy_path_prometheus_reads_names_the_service_port_the_role_allows():
    objects = monitoring_by_name()
    service = objects[("Service", "kube-state-metrics")]
    port = service["spec"]["ports"][0]["name"]
    allowed = objects[("ClusterRole", "rehab-prometheus")]["rules"][1]["resourceNames"]
    path = f"/api/v1/namespaces/kube-system/services/kube-state-metrics:{port}/proxy/metrics"
    assert kube_state_metrics_path() == path
    assert allowed == [f"kube-state-metrics:{port}"]


def test_kube_state_metrics_watches_only_what_the_pod_rules_read():
    objects = monitoring_by_name()
    container = objects[("Deployment", "kube-state-metrics")]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == KSM_IMAGE
    assert container["args"] == ["--resources=deployments,horizontalpodautoscalers,nodes,pods"]
    rules = objects[("ClusterRole", "kube-state-metrics")]["rules"]
    assert all(rule["verbs"] == ["list", "watch"] for rule in rules)
    assert sorted(r for rule in rules for r in rule["resources"]) == [
        "deployments",
        "horizontalpodautoscalers",
        "nodes",
        "pods",
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("image", ["", "kube-state-metrics", "registry.k8s.io/kube-state-metrics v2", "Upper:1"])
def test_a_kube_state_metrics_image_without_a_tag_is_refused_by_value(image):
    with pytest.raises(ManifestError, match=f"kube-state-metrics image {image!r}"):
        monitoring_manifests(image, "rehab-agi")


def test_prometheus_reads_kube_state_metrics_where_the_objects_publish_it():
    """rehab.scale.monitoring's scrape path (its vars) is the one these objects make reachable."""
    monitoring = yaml.safe_load((ROOT / "roles/monitoring/vars/main.yml").read_text())
    assert monitoring["__monitoring_k8s_kube_state_metrics_path"] == kube_state_metrics_path()
