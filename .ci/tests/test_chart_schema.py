"""values.schema.json: wrong values are refused before anything reaches a cluster; the shipped
and example values are accepted."""

from __future__ import annotations

import pytest

from helpers import CHART, FEATURES, NAMESPACE, RELEASE, SENTINELS

WRONG_REPLICAS = {"replicaCount": "three"}


def test_schema_validation_rejects_replica_count_as_a_word(chart, helm_sdk):
    with pytest.raises(helm_sdk.HelmValuesError, match="replicaCount"):
        chart.validate_schema(WRONG_REPLICAS)


def test_render_rejects_replica_count_as_a_word(chart, helm_sdk):
    with pytest.raises(helm_sdk.HelmValuesError):
        chart.render(WRONG_REPLICAS, name=RELEASE, namespace=NAMESPACE)


def test_lint_reports_replica_count_as_a_word(helm_sdk):
    report = helm_sdk.lint(str(CHART), WRONG_REPLICAS, strict=True)
    assert any(m.get("severity") == 3 and "replicaCount" in m.get("error", "")
               for m in report.get("messages", [])), report


WRONG = {
    "containerPorts.grpc as a string": {"containerPorts": {"grpc": "50051"}},
    "a port out of range": {"service": {"port": 70000}},
    "unknown top-level key": {"replicas": 3},
    "unknown nested key": {"database": {"password": "x"}},
    "secretsAs not env|file": {"secretsAs": "plain"},
    "an API secret under 32 characters": {"auth": {"apiSecrets": ["short"]}},
    "an API secret with a comma": {"auth": {"apiSecrets": ["a" * 20 + "," + "b" * 20]}},
    "a database URL without a scheme": {"database": {"url": "db:5432/roster"}},
    "probes.liveness.enabled as a string": {"probes": {"liveness": {"enabled": "yes"}}},
    "logFormat not json|pretty": {"config": {"logFormat": "xml"}},
}


@pytest.mark.parametrize("values", WRONG.values(), ids=WRONG.keys())
def test_schema_rejects_wrong_values(chart, helm_sdk, values):
    with pytest.raises(helm_sdk.HelmValuesError):
        chart.validate_schema(values)


@pytest.mark.parametrize("values_set", ["defaults", "values-production.yaml", "every feature", "sentinels"])
def test_schema_accepts_shipped_and_example_values(chart, production_values, values_set):
    values = {"defaults": {}, "values-production.yaml": production_values, "every feature": FEATURES,
              "sentinels": SENTINELS}[values_set]
    chart.validate_schema(values)
