#!/usr/bin/env python3
"""Runs every `$ grpcurl ...` command shown in the README against a fresh roster and checks that
the output matches what the README shows (timestamps and task ids normalized).

The README is the source of truth: a command block is a ```console fence whose lines starting
with `$ ` are commands (a trailing backslash continues a command) and whose other lines are the
expected output.
"""
import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

TIMESTAMP = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"')


def normalize(text: str) -> str:
    text = TIMESTAMP.sub('"<timestamp>"', text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def blocks(readme: str):
    """Yields (command, expected_output) pairs from ```console fences."""
    in_block = False
    command, expected = None, []
    pending = ""
    for line in readme.splitlines():
        if line.startswith("```console"):
            in_block, command, expected, pending = True, None, [], ""
            continue
        if in_block and line.startswith("```"):
            if command is not None:
                yield command, "\n".join(expected)
            in_block = False
            continue
        if not in_block:
            continue
        if pending or line.startswith("$ "):
            part = line[2:] if not pending else line
            if part.endswith("\\"):
                pending += part[:-1] + "\n"
                continue
            full = pending + part
            pending = ""
            if command is not None:
                yield command, "\n".join(expected)
            command, expected = full, []
        else:
            expected.append(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--readme", required=True)
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    readme = open(args.readme, encoding="utf-8").read()
    commands = [(c, e) for c, e in blocks(readme) if c.startswith("grpcurl")]
    if not commands:
        print("no grpcurl commands found in the README", file=sys.stderr)
        return 1

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="roster-smoke-")
    log = open(os.path.join(workdir, "roster.log"), "w")
    # The README talks to localhost:50051; the smoke test uses a free port and rewrites it.
    env = dict(os.environ, ROSTER_LISTEN=f"127.0.0.1:{port}")
    server = subprocess.Popen([binary, "serve"], cwd=workdir, env=env, stdout=log, stderr=log)
    failures = 0
    try:
        deadline = time.time() + 60
        while True:
            probe = subprocess.run(
                ["grpcurl", "-plaintext", f"127.0.0.1:{port}", "grpc.health.v1.Health/Check"],
                capture_output=True, text=True)
            if '"SERVING"' in probe.stdout:
                break
            if time.time() > deadline or server.poll() is not None:
                print("roster did not become SERVING", file=sys.stderr)
                print(open(os.path.join(workdir, "roster.log")).read(), file=sys.stderr)
                return 1
            time.sleep(0.2)
        for command, expected in commands:
            argv = shlex.split(command.replace("localhost:50051", f"127.0.0.1:{port}"))
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            got = normalize(result.stdout + result.stderr)
            want = normalize(expected)
            status = "ok" if got == want else "MISMATCH"
            print(f"[{status}] {command.splitlines()[0][:100]}")
            if got != want:
                failures += 1
                print("--- README shows\n" + want + "\n--- roster answered\n" + got)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    if server.returncode not in (0, None):
        print(f"roster exited with {server.returncode} after SIGTERM", file=sys.stderr)
        failures += 1
    print(f"smoke: {len(commands) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
