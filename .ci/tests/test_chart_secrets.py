"""Credentials: taken only by reference (secretKeyRef or a mounted Secret), never inline anywhere
else in what the chart renders, NOTES.txt included."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from helpers import (RENDERS, SECRET_ENV, SENTINEL_API_SECRETS, SENTINEL_DB_PASSWORD, SENTINEL_DB_URL,
                     env_map, hooks)


@pytest.mark.parametrize("name", list(RENDERS))
def test_deployment_job_and_test_pod_take_secrets_only_by_reference(render, name):
    r = render(name)
    problems = []
    for owner, pod in r.pod_specs():
        secret_volumes = {
            v["name"] for v in pod.get("volumes", [])
            if "secret" in v or any("secret" in s for s in v.get("projected", {}).get("sources", []))
        }
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for e in c.get("env", []):
                var = e["name"]
                where = f"{owner} container {c['name']} env {var}"
                looks_secret = re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL$", var)
                if var in SECRET_ENV or (looks_secret and not var.endswith("_FILE")):
                    if "value" in e or "secretKeyRef" not in e.get("valueFrom", {}):
                        problems.append(f"{where} is not a secretKeyRef: {e}")
                if var.endswith("_FILE") and var.startswith("ROSTER_"):
                    path = e.get("value", "")
                    mount = next((m for m in mounts if path.startswith(m.rstrip("/") + "/")), None)
                    if not (mount and mounts[mount] in secret_volumes):
                        problems.append(f"{where}={path} is not in a mounted Secret volume")
                if re.search(r"://[^/@\s]*:[^/@\s]*@", str(e.get("value", ""))):
                    problems.append(f"{where} has credentials inline")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["sentinels-env", "sentinels-file"])
def test_no_secret_value_appears_outside_a_secret(render, name):
    r = render(name)
    secrets = r.of_kind("Secret")
    assert secrets, "no Secret rendered: the positive control is missing"
    needles = {SENTINEL_DB_PASSWORD, SENTINEL_DB_URL, ",".join(SENTINEL_API_SECRETS), *SENTINEL_API_SECRETS}
    needles |= {base64.b64encode(n.encode()).decode() for n in list(needles)}
    # positive control: the values did reach the chart's Secrets
    stored = set()
    for s in secrets:
        for v in (s.get("data") or {}).values():
            stored.add(base64.b64decode(v).decode())
        stored |= set((s.get("stringData") or {}).values())
    assert SENTINEL_DB_URL in stored and ",".join(SENTINEL_API_SECRETS) in stored, \
        f"the sentinel credentials are not in the Secrets: {sorted(stored)}"
    leaks = []
    for path, text in r.texts.items():
        docs = [d for d in yaml.safe_load_all(text) if d] if path.endswith(".yaml") else []
        outside = "\n".join(yaml.safe_dump(d) for d in docs if d.get("kind") != "Secret") if docs else text
        leaks += [f"{path} contains {needle!r}" for needle in needles if needle in outside]
    assert not leaks, "\n".join(leaks)


def test_default_values_make_a_secret_with_a_postgres_url_and_a_generated_api_secret(render):
    r = render("default")
    (secret,) = [s for s in r.of_kind("Secret") if not hooks(s)]
    api = base64.b64decode(secret["data"]["api-secrets"]).decode()
    assert len(api) >= 32, f"generated API secret is {len(api)} characters"
    db = base64.b64decode(secret["data"]["database-url"]).decode()
    assert db.startswith("postgres://"), f"default database URL is {db!r}: not PostgreSQL"
    for path, text in r.texts.items():
        if path.endswith("secret.yaml"):
            continue
        assert api not in text and secret["data"]["api-secrets"] not in text, f"{path} has the API secret"
    env = env_map(r.server_container())
    for var, key in [("ROSTER_DATABASE_URL", "database-url"), ("ROSTER_API_SECRETS", "api-secrets")]:
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": key}, f"{var} refers to {ref}"


def test_production_takes_credentials_from_the_existing_secret_only(render, production_values):
    r = render("production")
    name = production_values["database"]["existingSecret"]
    assert not r.of_kind("Secret"), \
        f"the chart made Secrets although existingSecret is set: {[s['metadata']['name'] for s in r.of_kind('Secret')]}"
    for owner, pod in r.pod_specs():
        if owner.startswith("Pod/"):
            continue
        sources = [s["secret"] for v in pod.get("volumes", [])
                   for s in v.get("projected", {}).get("sources", []) if "secret" in s]
        assert sources and all(s["name"] == name for s in sources), f"{owner} mounts {sources}"
    env = env_map(r.server_container())
    assert env["ROSTER_DATABASE_URL_FILE"]["value"] == "/etc/roster/secrets/database-url"
    assert env["ROSTER_API_SECRETS_FILE"]["value"] == "/etc/roster/secrets/api-secrets"
    assert production_values["database"].get("url") in (None, "", "postgres://roster@postgresql:5432/roster"), \
        "values-production.yaml carries a database URL"
