"""What the chart renders: valid Kubernetes objects, labelled, and wired to each other (Services,
PDB, HPA, ServiceMonitor and NetworkPolicy select the server pods); NOTES.txt."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from helpers import CRD_GROUPS, KUBE_VERSIONS, NAMESPACE, RELEASE, RENDERS, STANDARD_LABELS, selects

ALL = list(RENDERS)
WITH_OPTIONAL_OBJECTS = ["production", "features"]


@pytest.mark.parametrize("name", ALL)
def test_values_set_renders(render, name):
    r = render(name)
    assert r.objects, "nothing rendered"
    assert r.deployment()


@pytest.mark.parametrize("name", ALL)
def test_every_object_is_valid_against_the_kubernetes_api(render, name):
    """Strict (unknown fields fail), at the chart's kubeVersion floor and the newest Kubernetes
    kubernetes-validate knows. ServiceMonitor has no schema there; its own test checks it."""
    problems = []
    for o in render(name).objects:
        doc = {k: v for k, v in o.items() if k != "__template"}
        if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        for version in KUBE_VERSIONS:
            v = kubernetes_validate.latest_version() if version == "latest" else version
            try:
                kubernetes_validate.validate(doc, v, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} (k8s {v}): {exc.message} "
                                f"at {list(exc.path)}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{doc['kind']} {doc['apiVersion']}: {exc}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ALL)
def test_every_object_carries_the_standard_labels(render, name):
    missing = []
    for o in render(name).objects:
        labels = o["metadata"].get("labels") or {}
        gaps = [label for label in STANDARD_LABELS if label not in labels]
        if gaps:
            missing.append(f"{o['kind']}/{o['metadata']['name']} lacks {gaps}")
        if labels.get("app.kubernetes.io/instance") != RELEASE:
            missing.append(f"{o['kind']}/{o['metadata']['name']} instance label")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", ["default", "production"])
def test_service_selects_the_server_pods_and_not_the_migration_pods(render, name):
    r = render(name)
    svc = r.service()
    assert selects(svc["spec"]["selector"], r.pod_labels()), "the Service does not select the server pods"
    job = r.migration_job()
    if job:
        assert not selects(svc["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"]), \
            "the Service would send traffic to migration pods"


@pytest.mark.parametrize("name", ["default", "production"])
def test_service_ports_are_named_grpc_h2c_metrics_and_http(render, name):
    sp = {p["name"]: p for p in render(name).service()["spec"]["ports"]}
    assert set(sp) == {"grpc", "metrics", "http"}
    assert sp["grpc"]["targetPort"] == "grpc"
    assert sp["grpc"].get("appProtocol") == "kubernetes.io/h2c"
    assert sp["metrics"]["targetPort"] == "metrics"
    # The Stream-compatible HTTP door, a base URL for Stream's SDKs.
    assert sp["http"]["targetPort"] == "http"
    assert sp["http"].get("appProtocol") == "http"


@pytest.mark.parametrize("name", ["default", "production", "features"])
def test_pdb_selects_the_server_pods(render, name):
    r = render(name)
    pdb = r.one("PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], r.pod_labels())
    assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), pdb["spec"]


def test_default_pdb_lets_a_single_replica_be_drained(render):
    assert render("default").one("PodDisruptionBudget")["spec"].get("maxUnavailable") == 1


@pytest.mark.parametrize("kind", ["HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"])
def test_default_values_render_no_optional_object(render, kind):
    assert not render("default").of_kind(kind)


@pytest.mark.parametrize("name", WITH_OPTIONAL_OBJECTS)
def test_hpa_owns_the_deployment_replicas(render, name):
    r = render(name)
    dep = r.deployment()
    hpa = r.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": dep["metadata"]["name"]}
    assert "replicas" not in dep["spec"], "replicas set although the HPA owns them"


@pytest.mark.parametrize("name", WITH_OPTIONAL_OBJECTS)
def test_service_monitor_scrapes_the_metrics_port(render, name):
    r = render(name)
    sm = r.one("ServiceMonitor")
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "metrics" and ep.get("path") == "/metrics", ep
    assert selects(sm["spec"]["selector"]["matchLabels"], r.service()["metadata"]["labels"]), \
        "the ServiceMonitor does not select the Service"
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


@pytest.mark.parametrize("name", WITH_OPTIONAL_OBJECTS)
def test_network_policy_opens_the_container_ports_and_dns(render, name):
    r = render(name)
    np = r.one("NetworkPolicy")
    assert selects(np["spec"]["podSelector"]["matchLabels"], r.pod_labels())
    container_ports = {p["name"] for p in r.server_container()["ports"]}
    for rule in np["spec"]["ingress"]:
        for p in rule["ports"]:
            assert p["port"] in container_ports, f"NetworkPolicy port {p['port']}"
    assert "Egress" in np["spec"]["policyTypes"]
    assert any(any(p.get("port") == 53 for p in e.get("ports", [])) for e in np["spec"]["egress"]), \
        "egress restricted without DNS"


@pytest.mark.parametrize("name", WITH_OPTIONAL_OBJECTS)
def test_headless_service_serves_grpc_only(render, name):
    headless = render(name).one("Service", lambda o: o["spec"].get("clusterIP") == "None")
    assert [p["name"] for p in headless["spec"]["ports"]] == ["grpc"]


def test_topology_spread_selects_the_server_pods(render):
    r = render("features")
    tsc = r.deployment()["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert selects(tsc["labelSelector"]["matchLabels"], r.pod_labels()), "topology spread selector not filled in"


def test_an_existing_service_account_is_used_by_server_and_migration(render):
    r = render("features")
    assert r.deployment()["spec"]["template"]["spec"]["serviceAccountName"] == "roster-workload"
    assert not r.of_kind("ServiceAccount"), "serviceAccount.create=false made one"
    assert r.migration_job()["spec"]["template"]["spec"].get("serviceAccountName") == "roster-workload"


def test_image_digest_and_placement_values_are_applied(render):
    r = render("features")
    assert r.server_container()["image"] == "registry.example.com/roster@sha256:" + "ab" * 32
    spec = r.deployment()["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert spec.get(key), f"{key} not applied"


@pytest.mark.parametrize("name", ["default", "production"])
def test_notes_show_grpcurl_through_a_port_forward(render, name):
    text = render(name).notes()
    assert re.search(r"grpcurl -plaintext localhost:50051 (list|grpc\.health\.v1\.Health/Check)", text), text
    assert "port-forward" in text


def test_notes_under_tls_use_grpcurl_insecure(render):
    assert "-insecure" in render("features").notes()
