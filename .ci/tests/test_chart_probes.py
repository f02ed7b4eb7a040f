"""Probes: the kubelet's gRPC probe on the gRPC port, or, under TLS (which that probe cannot
speak), `roster healthcheck` over https."""

from __future__ import annotations

import pytest

from helpers import BINARY, env_map

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.mark.parametrize("name", ["default", "production"])
def test_startup_readiness_and_liveness_are_grpc_probes_on_the_grpc_port(render, name):
    c = render(name).server_container()
    grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    for probe in PROBES:
        assert probe in c, f"no {probe}"
        spec = c[probe]
        assert "grpc" in spec, f"{probe} is not a gRPC probe: {spec}"
        assert spec["grpc"]["port"] == grpc_port, f"{probe} probes another port than gRPC's {grpc_port}"
        assert not spec["grpc"].get("service"), f"{probe} asks a named health service"
        for other in ("httpGet", "tcpSocket", "exec"):
            assert other not in spec, f"{probe} has {other} too"


@pytest.mark.parametrize("name", ["default", "production"])
def test_probes_leave_time_for_database_retries(render, name):
    c = render(name).server_container()
    startup = c["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert budget >= 60, f"the startup probe gives up after {budget}s (database retries need time)"
    live = c["livenessProbe"]
    assert live.get("failureThreshold", 3) * live.get("periodSeconds", 10) >= 30, \
        "liveness would restart a pod after less than 30s of failures"


def test_under_tls_probes_run_roster_healthcheck_over_https(render):
    c = render("features").server_container()
    for probe in PROBES:
        command = c[probe].get("exec", {}).get("command", [])
        assert command[:2] == [BINARY, "healthcheck"], f"{probe} under TLS: {c[probe]}"
        assert any(a.startswith("https://127.0.0.1:") for a in command), f"{probe}: not https: {command}"


def test_under_tls_the_certificate_files_are_mounted_from_the_secret(render):
    r = render("features")
    c = r.server_container()
    env = env_map(c)
    for var, path in [("ROSTER_TLS_CERT", "/etc/roster/tls/tls.crt"),
                      ("ROSTER_TLS_KEY", "/etc/roster/tls/tls.key"),
                      ("ROSTER_TLS_CLIENT_CA", "/etc/roster/tls/ca.crt")]:
        assert env.get(var, {}).get("value") == path, f"{var} is {env.get(var)}"
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    assert "/etc/roster/tls" in mounts and mounts["/etc/roster/tls"].get("readOnly"), "TLS not mounted read-only"
    vols = {v["name"]: v for v in r.deployment()["spec"]["template"]["spec"]["volumes"]}
    assert vols[mounts["/etc/roster/tls"]["name"]].get("secret", {}).get("secretName") == "roster-tls"


def test_under_tls_the_grpc_port_is_not_announced_as_cleartext_h2c(render):
    r = render("features")
    port = next(p for p in r.one("Service", lambda o: not o["spec"].get("clusterIP"))["spec"]["ports"]
                if p["name"] == "grpc")
    assert port.get("appProtocol") != "kubernetes.io/h2c"
