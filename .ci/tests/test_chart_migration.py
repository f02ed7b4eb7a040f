"""Migrations run once per install or upgrade, in a pre-install,pre-upgrade hook Job running
`roster migrate`, with everything it needs already there; the server then does not migrate."""

from __future__ import annotations

import pytest

from helpers import env_map, hooks


@pytest.mark.parametrize("name", ["default", "production", "features"])
def test_migration_job_is_a_hook_running_roster_migrate(render, name):
    r = render(name)
    job = r.migration_job()
    assert job is not None, "no migration Job"
    annotations = job["metadata"].get("annotations") or {}
    assert hooks(job) == {"pre-install", "pre-upgrade"}, annotations.get("helm.sh/hook")
    policy = {p.strip() for p in annotations.get("helm.sh/hook-delete-policy", "").split(",")}
    assert "before-hook-creation" in policy, f"hook-delete-policy {policy}: a failed Job would block the next upgrade"
    pod = job["spec"]["template"]["spec"]
    assert pod.get("restartPolicy") in ("Never", "OnFailure")
    (c,) = pod["containers"]
    assert c.get("args") == ["migrate"] and not c.get("command"), f"the Job runs {c.get('command')} {c.get('args')}"
    assert c["image"] == r.server_container()["image"], "the Job runs another image than the server"
    assert job["spec"].get("activeDeadlineSeconds"), "no activeDeadlineSeconds: a stuck migration hangs the upgrade"


@pytest.mark.parametrize("name", ["default", "production", "features"])
def test_migration_job_needs_nothing_created_after_the_hooks(render, name):
    """A Secret of the release itself does not exist yet when a pre-install hook runs (it is
    created after the hooks); a hook Secret with a lower weight or a Secret the user made does."""
    r = render(name)
    job = r.migration_job()
    assert job is not None, "no migration Job"
    weight = int((job["metadata"].get("annotations") or {}).get("helm.sh/hook-weight", "0"))
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})]
    for v in pod.get("volumes", []):
        refs += [s["secret"]["name"] for s in v.get("projected", {}).get("sources", []) if "secret" in s]
        if "secret" in v:
            refs.append(v["secret"]["secretName"])
    assert refs, "the Job gets no database URL from a Secret"
    for ref in refs:
        chart_secret = [s for s in r.of_kind("Secret") if s["metadata"]["name"] == ref]
        if chart_secret:
            s = chart_secret[0]
            assert "pre-install" in hooks(s) and "pre-upgrade" in hooks(s), \
                f"the Job reads Secret {ref}, which is not a pre-install/pre-upgrade hook"
            sw = int(s["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
            assert sw < weight, f"hook Secret {ref} (weight {sw}) is not created before the Job ({weight})"
    sa = pod.get("serviceAccountName")
    if sa:
        made = [o for o in r.of_kind("ServiceAccount") if o["metadata"]["name"] == sa and not hooks(o)]
        assert not made, f"the Job uses ServiceAccount {sa}, created by the release after the hooks"


@pytest.mark.parametrize("name", ["default", "production", "features"])
def test_with_the_hook_the_server_serves_without_migrating(render, name):
    c = render(name).server_container()
    assert env_map(c).get("ROSTER_MIGRATE_ON_START", {}).get("value") == "false"
    assert c.get("args") == ["serve"], "the server does not run `serve`"


def test_without_the_hook_the_server_migrates_on_start(render):
    r = render("no-migration")
    assert r.migration_job() is None, "a Job although migration.enabled=false"
    assert not any(hooks(o) & {"pre-install", "pre-upgrade"} for o in r.objects), "pre-install hooks left"
    assert env_map(r.server_container())["ROSTER_MIGRATE_ON_START"].get("value") == "true"
