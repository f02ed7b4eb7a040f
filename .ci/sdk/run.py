#!/usr/bin/env python3
"""Runs an SDK program (.ci/sdk/<language>/...) against a fresh roster binary on SQLite or on a
fresh PostgreSQL database: `run.py --binary target/debug/roster --db sqlite|postgres -- CMD...`.
The program gets STREAM_BASE_URL, STREAM_API_KEY, STREAM_API_SECRET and ROSTER_GRPC. The API
secret doubles as ROSTER_USER_TOKEN_SECRET, so that user tokens the SDK makes locally verify.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

API_KEY = "roster-sdk-check"
API_SECRET = "sdk-check-secret-of-at-least-32-bytes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="roster-sdk-")
    dbname = None
    if args.db == "sqlite":
        url = f"sqlite://{workdir}/roster.db?mode=rwc"
    else:
        dbname = "roster_sdk_" + uuid.uuid4().hex[:12]
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", dbname], check=True)
        url = f"postgres://postgres@127.0.0.1:5432/{dbname}"
    grpc, http = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env.update(ROSTER_DATABASE_URL=url, ROSTER_LISTEN=f"127.0.0.1:{grpc}",
               ROSTER_HTTP_LISTEN=f"127.0.0.1:{http}", ROSTER_METRICS_LISTEN="127.0.0.1:0",
               ROSTER_API_KEY=API_KEY, ROSTER_API_SECRETS=API_SECRET,
               ROSTER_USER_TOKEN_SECRET=API_SECRET)
    log_path = os.path.join(workdir, "roster.log")
    with open(log_path, "w") as log:
        server = subprocess.Popen([os.path.abspath(args.binary), "serve"], cwd=workdir, env=env,
                                  stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/", timeout=2)
            except urllib.error.HTTPError:
                break  # the door answers (404 for `/`)
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                print(open(log_path).read(), file=sys.stderr)
                return 1
            time.sleep(0.2)
        program_env = dict(os.environ, STREAM_BASE_URL=f"http://127.0.0.1:{http}",
                           STREAM_API_KEY=API_KEY, STREAM_API_SECRET=API_SECRET,
                           ROSTER_GRPC=f"127.0.0.1:{grpc}")
        result = subprocess.run(args.command, env=program_env)
        if result.returncode != 0:
            print(f"--- roster log ({args.db})\n" + open(log_path).read()[-5000:], file=sys.stderr)
        return result.returncode
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if dbname:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", dbname])


if __name__ == "__main__":
    sys.exit(main())
