"""`helm lint --strict` and the chart's metadata."""

from __future__ import annotations

import json
import tomllib

import pytest
import yaml

from helpers import CHART, FEATURES, NAMESPACE, ROOT


@pytest.mark.parametrize("values_set", ["default", "production", "features"])
def test_helm_lint_strict_finds_nothing(helm_sdk, production_values, values_set):
    values = {"default": None, "production": production_values, "features": FEATURES}[values_set]
    report = helm_sdk.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    assert report.get("total_charts_linted") == 1
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    assert not bad and not report.get("errors"), \
        "lint findings: " + json.dumps(bad + report.get("errors", []), indent=1)


def test_chart_app_version_is_the_crate_version():
    """appVersion is the default image tag: it must name the release the chart was made with."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert str(chart_meta["appVersion"]) == cargo["package"]["version"]
    assert chart_meta["apiVersion"] == "v2"
    assert chart_meta["type"] == "application"
