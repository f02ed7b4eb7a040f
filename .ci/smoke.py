#!/usr/bin/env python3
"""Runs every `$ ` command shown in the README's ```console blocks (grpcurl, and curl against the
HTTP door) against a fresh roster and
checks that the output matches what the README shows.

The README is the source of truth: a command block is a ```console fence whose lines starting
with `$ ` are commands (a trailing backslash continues a command) and whose other lines are the
expected output. Commands run in bash, in order; `NAME=$(...)` lines set a variable for the
commands after them. Outputs are compared as JSON documents where they are JSON (so map order
does not matter), with timestamps and task ids normalized. For a server stream (several
documents) the README may show only the last ones.
"""
import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

TIMESTAMP = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"')
TASK_ID = re.compile(r'\b[0-9a-f]{32}\b')
# The HTTP door's instants (integer nanoseconds since the epoch) and its `duration`.
NANOS = re.compile(r'\b1\d{18}\b')
DURATION = re.compile(r'"duration": ?"[0-9.]+ms"')
ASSIGNMENT = re.compile(r'^([A-Z_][A-Z0-9_]*)=\$\((.*)\)$', re.S)


def normalize(text: str) -> str:
    text = TIMESTAMP.sub('"<timestamp>"', text)
    text = TASK_ID.sub('<task-id>', text)
    text = NANOS.sub('"<nanos>"', text)
    text = DURATION.sub('"duration": "<duration>"', text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def documents(text: str):
    """The JSON documents in `text`, or None when it is not a sequence of JSON documents."""
    decoder = json.JSONDecoder()
    docs, i = [], 0
    text = text.strip()
    while i < len(text):
        try:
            doc, end = decoder.raw_decode(text, i)
        except ValueError:
            return None
        docs.append(doc)
        i = end
        while i < len(text) and text[i].isspace():
            i += 1
    return docs


def matches(got: str, want: str) -> bool:
    got, want = normalize(got), normalize(want)
    got_docs, want_docs = documents(got), documents(want)
    if got_docs and want_docs:
        return len(want_docs) <= len(got_docs) and got_docs[-len(want_docs):] == want_docs
    return got == want


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
    commands = list(blocks(readme))
    if not commands:
        print("no grpcurl commands found in the README", file=sys.stderr)
        return 1

    port = free_port()
    http_port = free_port()
    workdir = tempfile.mkdtemp(prefix="roster-smoke-")
    log = open(os.path.join(workdir, "roster.log"), "w")
    # The README talks to localhost:50051 (gRPC) and localhost:3030 (the HTTP door); the smoke
    # test uses free ports and rewrites them.
    env = dict(os.environ, ROSTER_LISTEN=f"127.0.0.1:{port}",
               ROSTER_HTTP_LISTEN=f"127.0.0.1:{http_port}", ROSTER_METRICS_LISTEN="127.0.0.1:0")
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
        variables = {}
        for command, expected in commands:
            command = command.replace("localhost:50051", f"127.0.0.1:{port}")
            command = command.replace("localhost:3030", f"127.0.0.1:{http_port}")
            exports = "".join(f"{k}={shlex.quote(v)}; " for k, v in variables.items())
            assignment = ASSIGNMENT.match(command)
            script = exports + (assignment.group(2) if assignment else command)
            result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                    timeout=60)
            if assignment:
                variables[assignment.group(1)] = result.stdout.strip()
                ok = result.returncode == 0 and bool(result.stdout.strip())
                got = result.stdout + result.stderr
            else:
                got = result.stdout + result.stderr
                ok = matches(got, expected)
            print(f"[{'ok' if ok else 'MISMATCH'}] {command.splitlines()[0][:100]}")
            if not ok:
                failures += 1
                print("--- README shows\n" + normalize(expected) + "\n--- roster answered\n"
                      + normalize(got))
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
