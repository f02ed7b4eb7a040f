"""Ports and addresses in the chart and the image are the binary's own defaults, as
`roster config --defaults` prints them from its command-line definition."""

from __future__ import annotations

import pytest

from helpers import env_map, port_of


def test_the_binary_prints_its_defaults(binary_defaults):
    serve = {f["env"]: f for f in binary_defaults.raw["serve"]}
    assert {"ROSTER_LISTEN", "ROSTER_METRICS_LISTEN", "ROSTER_HTTP_LISTEN"} <= serve.keys()
    assert binary_defaults.grpc_port and binary_defaults.metrics_port and binary_defaults.http_port


def test_healthcheck_asks_the_default_listen_port(binary_defaults):
    addr = binary_defaults.default("healthcheck", "ROSTER_HEALTHCHECK_ADDR")
    assert addr and port_of(addr) == binary_defaults.grpc_port, \
        f"`roster healthcheck` asks {addr}, `roster serve` listens on {binary_defaults.grpc_port}"


@pytest.mark.parametrize("name", ["default", "production"])
def test_container_ports_are_the_binary_defaults(render, binary_defaults, name):
    ports = {p["name"]: p["containerPort"] for p in render(name).server_container()["ports"]}
    assert ports == {"grpc": binary_defaults.grpc_port, "metrics": binary_defaults.metrics_port,
                     "http": binary_defaults.http_port}


@pytest.mark.parametrize("name", ["default", "production"])
def test_listen_variables_name_the_container_ports(render, name):
    c = render(name).server_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = env_map(c)
    assert port_of(env["ROSTER_LISTEN"]["value"]) == ports["grpc"]
    assert port_of(env["ROSTER_METRICS_LISTEN"]["value"]) == ports["metrics"]
    assert port_of(env["ROSTER_HTTP_LISTEN"]["value"]) == ports["http"]


@pytest.mark.parametrize("name", ["default", "production"])
def test_service_ports_are_the_binary_defaults(render, binary_defaults, name):
    sp = {p["name"]: p for p in render(name).service()["spec"]["ports"]}
    assert sp["grpc"]["port"] == binary_defaults.grpc_port
    assert sp["metrics"]["port"] == binary_defaults.metrics_port
    assert sp["http"]["port"] == binary_defaults.http_port
    assert sp["http"]["targetPort"] == "http", "the HTTP door is a named Service port"


def test_image_exposes_the_default_ports(dockerfile, binary_defaults):
    wanted = {binary_defaults.grpc_port, binary_defaults.metrics_port, binary_defaults.http_port}
    assert wanted <= dockerfile.exposed(), f"EXPOSE {sorted(dockerfile.exposed())}"


def test_image_healthcheck_asks_the_default_port(dockerfile, binary_defaults):
    cmd = dockerfile.healthcheck_command() or []
    addr = next((a for a in cmd if "://" in a), None)
    if addr:  # without --addr, roster healthcheck's own default: test_healthcheck_asks_the_default_listen_port
        assert port_of(addr) == binary_defaults.grpc_port, f"HEALTHCHECK asks port {port_of(addr)}"
