"""What the chart, Dockerfile and .dockerignore tests share: the values sets the chart is rendered
with, a parsed render, and small readers of the Dockerfile and .dockerignore."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "roster"
RELEASE = "roster"
NAMESPACE = "users"
BINARY = "/usr/local/bin/roster"
# Kubernetes versions the manifests are validated against: the chart's kubeVersion floor and the
# newest one kubernetes-validate knows.
KUBE_VERSIONS = ["1.27.0", "latest"]
# API groups of custom resources the chart renders (Prometheus Operator's ServiceMonitor).
CRD_GROUPS = {"monitoring.coreos.com"}

# Distinctive credentials for the values set that proves no secret value leaks out of a Secret.
SENTINEL_DB_PASSWORD = "Pw-SENTINEL-db-7f3a9c1e"
SENTINEL_DB_URL = f"postgres://roster:{SENTINEL_DB_PASSWORD}@pg.example:5432/roster?sslmode=require"
SENTINEL_API_SECRETS = [
    "api-SENTINEL-first-0123456789abcdefghijkl",
    "api-SENTINEL-second-0123456789abcdefghijk",
]

SECRET_ENV = {"ROSTER_DATABASE_URL", "ROSTER_API_SECRETS"}
STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
]

# Every optional part on at once, the credentials mounted as files.
FEATURES: dict[str, Any] = {
    "replicaCount": 2,
    "image": {"repository": "registry.example.com/roster", "digest": "sha256:" + "ab" * 32},
    "imagePullSecrets": [{"name": "regcred"}],
    "secretsAs": "file",
    "database": {"url": "postgres://roster@pg.example:5432/roster"},
    "auth": {"apiSecrets": ["x" * 40]},
    "tls": {"enabled": True, "secretName": "roster-tls", "clientAuth": True},
    "otel": {"endpoint": "http://otel:4317", "extraEnv": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}},
    "service": {"headless": {"enabled": True}, "annotations": {"a": "b"}},
    "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "networkPolicy": {
        "enabled": True,
        "grpcFrom": [{"namespaceSelector": {"matchLabels": {"team": "chat"}}}],
        "egress": {"enabled": True, "rules": [{"ports": [{"port": 5432, "protocol": "TCP"}]}]},
    },
    "serviceAccount": {"create": False, "name": "roster-workload"},
    "podAnnotations": {"example.com/x": "y"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "users", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["general"]}]}}]}},
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}],
    "extraEnv": [{"name": "ROSTER_EXTRA", "value": "1"}],
    "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
    "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    "podDisruptionBudget": {"minAvailable": 1},
}
SENTINELS: dict[str, Any] = {
    "database": {"url": SENTINEL_DB_URL},
    "auth": {"apiSecrets": SENTINEL_API_SECRETS},
}
# Values sets the chart is rendered with: name -> values given on top of the chart's defaults
# (None: values-production.yaml).
RENDERS: dict[str, dict[str, Any] | None] = {
    "default": {},
    "production": None,
    "features": FEATURES,
    "sentinels-env": SENTINELS,
    "sentinels-file": {**SENTINELS, "secretsAs": "file"},
    "no-migration": {"migration": {"enabled": False}},
}


class Render:
    """One offline render: the manifests as text and the parsed objects."""

    def __init__(self, name: str, values: dict[str, Any], texts: dict[str, str]):
        self.name = name
        self.values = values
        self.texts = texts
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(texts.items()):
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__template", path)
                    self.objects.append(doc)

    def notes(self) -> str:
        return next((t for p, t in self.texts.items() if p.endswith("NOTES.txt")), "")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str, predicate: Callable[[dict[str, Any]], bool] = lambda o: True) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if predicate(o)]
        assert len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}"
        return found[0]

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def pod_labels(self) -> dict[str, str]:
        return self.deployment()["spec"]["template"]["metadata"]["labels"]

    def server_container(self) -> dict[str, Any]:
        containers = self.deployment()["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "roster")

    def service(self) -> dict[str, Any]:
        """The main (not headless) Service."""
        return self.one("Service", lambda o: o["spec"].get("clusterIP") != "None")

    def migration_job(self) -> dict[str, Any] | None:
        jobs = self.of_kind("Job")
        assert len(jobs) <= 1, f"{self.name}: more than one Job"
        return jobs[0] if jobs else None

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(object name, pod spec) of every object that makes pods."""
        out = []
        for o in self.objects:
            kind = o.get("kind")
            if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
                out.append((f"{kind}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
            elif kind == "Pod":
                out.append((f"Pod/{o['metadata']['name']}", o["spec"]))
        return out


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def hooks(obj: dict[str, Any]) -> set[str]:
    raw = (obj["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    return {h.strip() for h in raw.split(",") if h.strip()}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def port_of(address: str) -> int:
    """50051 of `0.0.0.0:50051` or `http://127.0.0.1:50051/`."""
    return int(address.rsplit(":", 1)[1].split("/")[0])


class Dockerfile:
    """The Dockerfile's instructions, split into stages, with ARG defaults expanded on request."""

    def __init__(self, text: str):
        self.instructions = dockerfile_instructions(text)
        self.args: dict[str, str] = {}
        for word, rest in self.instructions:
            if word == "ARG" and "=" in rest:
                k, v = rest.split("=", 1)
                self.args.setdefault(k.strip(), v.strip())
        self.stages: list[list[tuple[str, str]]] = []
        for word, rest in self.instructions:
            if word == "FROM":
                self.stages.append([])
            if self.stages:
                self.stages[-1].append((word, rest))

    def expand(self, s: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args.get(m.group(1), m.group(0)), s)

    @property
    def builder(self) -> list[tuple[str, str]]:
        return self.stages[0]

    @property
    def final(self) -> list[tuple[str, str]]:
        return self.stages[-1]

    def base_image(self, stage: list[tuple[str, str]]) -> str:
        return self.expand(stage[0][1]).split()[0]

    def last(self, word: str) -> str | None:
        """The arguments of the final stage's last `word` instruction."""
        found = [rest for w, rest in self.final if w == word]
        return found[-1] if found else None

    def exposed(self) -> set[int]:
        return {int(p.split("/")[0]) for w, rest in self.final if w == "EXPOSE" for p in rest.split()}

    def healthcheck_command(self) -> list[str] | None:
        m = re.search(r"CMD\s+(\[.*\])", self.last("HEALTHCHECK") or "")
        return json.loads(m.group(1)) if m else None


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern that matches the path, or a parent directory of it, wins;
    `!` re-includes."""

    def to_regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + "$")

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = os.path.normpath(pattern[1:] if negate else pattern).lstrip("/")
        regex = to_regex(body)
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded
