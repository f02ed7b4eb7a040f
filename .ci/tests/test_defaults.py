"""Ports and addresses in the chart and the image are the binary's own defaults, as
`roster config --defaults` prints them from its command-line definition."""

from __future__ import annotations

import pytest
import yaml

from helpers import CHART, env_map, port_of


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



def test_statement_cache_default_is_the_binary_default(binary_defaults):
    """The chart's database.statementCache is `roster serve`'s own default, and `roster migrate`
    (the migration Job) reads the same variable with the same default."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    serve = binary_defaults.default("serve", "ROSTER_DATABASE_STATEMENT_CACHE")
    assert str(values["database"]["statementCache"]) == serve
    assert binary_defaults.default("migrate", "ROSTER_DATABASE_STATEMENT_CACHE") == serve


@pytest.mark.parametrize("name", ["default", "production"])
def test_statement_cache_reaches_the_server_and_the_migration_job(render, name):
    """Behind PgBouncer both need 0: one value sets both."""
    r = render(name)
    server = env_map(r.server_container())["ROSTER_DATABASE_STATEMENT_CACHE"]["value"]
    job = r.migration_job()
    assert job is not None, "no migration Job"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert env_map(c)["ROSTER_DATABASE_STATEMENT_CACHE"]["value"] == server
