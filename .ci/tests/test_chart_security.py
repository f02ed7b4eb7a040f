"""Every pod the chart makes runs non-root, read-only, unprivileged, with resources set."""

from __future__ import annotations

import pytest

from helpers import RENDERS


@pytest.mark.parametrize("name", list(RENDERS))
def test_every_pod_and_container_is_locked_down(render, name):
    problems = []
    for owner, pod in render(name).pod_specs():
        psc = pod.get("securityContext") or {}
        checks = [
            (psc.get("runAsNonRoot") is True, "pod runAsNonRoot"),
            (psc.get("runAsUser", 0) != 0, "pod runAsUser 0"),
            ((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "seccomp"),
            (pod.get("automountServiceAccountToken") is False, "service account token mounted"),
            (not pod.get("hostNetwork") and not pod.get("hostPID"), "host namespaces"),
        ]
        problems += [f"{owner}: {what}" for ok, what in checks if not ok]
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c.get("securityContext") or {}
            caps = sc.get("capabilities") or {}
            resources = c.get("resources") or {}
            checks = [
                (sc.get("readOnlyRootFilesystem") is True, "root filesystem writable"),
                (sc.get("allowPrivilegeEscalation") is False, "privilege escalation"),
                (sc.get("privileged") is not True, "privileged"),
                ("ALL" in (caps.get("drop") or []), "capabilities not dropped"),
                (not caps.get("add"), "capabilities added"),
                (sc.get("runAsNonRoot", True) is not False and sc.get("runAsUser", 1) != 0, "root"),
                (resources.get("requests") and resources.get("limits"), "no resource requests/limits"),
            ]
            problems += [f"{owner} container {c['name']}: {what}" for ok, what in checks if not ok]
    assert not problems, "\n".join(problems)
