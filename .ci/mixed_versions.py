#!/usr/bin/env python3
"""Mixed versions: the previous release and the current tree, side by side on one PostgreSQL
database under load, as during a rolling upgrade. Not run by `.ci/run` (a cold build of the old
commit takes about ten minutes); run it by hand before a release:

    .ci/mixed_versions.py                       # old = 9bc3e42, builds both
    .ci/mixed_versions.py --old-commit v0.3.0 --old-target /tmp/old-target

What it does:
- checks the old commit out with `git worktree add` (in target/mixed-versions/old-src unless
  --old-src) and builds its `roster` with its own target dir (nice -n 19); builds the current one;
- creates a fresh database on --pg-url's server and starts the OLD binary on it first (it migrates),
  then the NEW one (it migrates whatever is newer), each on its own loopback port, both running the
  task worker with a short lease;
- drives a small load through both: batches of new users, partial updates, reads through the other
  binary, and DeleteUsers / DeactivateUsers tasks accepted by each, watched to the end through the
  other one;
- checks that every task either binary accepted ends `completed` with every item `ok`, that both
  processes are still alive, that neither spins afterwards (CPU time over a few idle seconds), and
  that neither logged a panic; prints a summary and exits non-zero on any failure.

Needs: cargo, git, a PostgreSQL server, python3 with venv (grpcio and grpcio-tools are installed
into target/mixed-versions/venv on first use).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import importlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "mixed-versions"


def log(msg: str) -> None:
    print(f"[mixed-versions {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kw)


def ensure_grpc(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    probe = subprocess.run([str(py), "-c", "import grpc, grpc_tools"], capture_output=True)
    if probe.returncode != 0:
        run([str(py), "-m", "pip", "install", "--quiet", "grpcio==1.85.3", "grpcio-tools==1.85.1"])
    return py


def generate_stubs(py: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    run([str(py), "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
         f"--python_out={out}", f"--grpc_python_out={out}", *protos])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(admin_url: str, sql: str) -> None:
    run(["psql", "-q", "-v", "ON_ERROR_STOP=1", admin_url, "-c", sql], stdout=subprocess.DEVNULL)


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


class Roster:
    def __init__(self, label: str, binary: Path, url: str, logdir: Path):
        self.label = label
        self.port = free_port()
        self.log_path = logdir / f"{label}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--database-url", url,
             "--metrics-listen", "127.0.0.1:0", "--task-lease-seconds", "5",
             "--task-item-delay-ms", "5", "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=self.log, env={**os.environ, "NO_COLOR": "1"})

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_ticks(self) -> int:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-commit", default="9bc3e42")
    ap.add_argument("--old-src", type=Path, default=WORK / "old-src")
    ap.add_argument("--old-target", type=Path, default=WORK / "old-target")
    ap.add_argument("--pg-url", default=os.environ.get(
        "ROSTER_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--skip-build", action="store_true", help="use the binaries already built")
    args = ap.parse_args()

    # The two binaries.
    if not (args.old_src / "Cargo.toml").exists():
        run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(args.old_src),
             args.old_commit])
    old_head = subprocess.run(["git", "-C", str(args.old_src), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    new_head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    new_target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not args.skip_build:
        run(["nice", "-n", "19", "cargo", "build", "--bin", "roster"], cwd=args.old_src,
            env={**os.environ, "CARGO_TARGET_DIR": str(args.old_target)})
        run(["cargo", "build", "--bin", "roster"], cwd=ROOT)
    old_bin, new_bin = args.old_target / "debug" / "roster", new_target / "debug" / "roster"

    py = ensure_grpc(WORK / "venv")
    if Path(sys.prefix).resolve() != (WORK / "venv").resolve():
        # Continue inside the venv that has grpcio (the builds above are done).
        os.execv(str(py), [str(py), __file__, *sys.argv[1:], "--skip-build"])
    stubs = WORK / "stubs"
    generate_stubs(py, stubs)
    sys.path.insert(0, str(stubs))
    import grpc  # noqa: E402
    from google.protobuf import struct_pb2  # noqa: E402
    us = importlib.import_module("roster.v1.user_service_pb2")
    us_grpc = importlib.import_module("roster.v1.user_service_pb2_grpc")
    ts = importlib.import_module("roster.v1.task_service_pb2")
    ts_grpc = importlib.import_module("roster.v1.task_service_pb2_grpc")
    user_pb = importlib.import_module("roster.v1.user_pb2")

    name = f"roster_mixed_{os.getpid()}_{int(time.time())}"
    psql(args.pg_url, f'CREATE DATABASE "{name}"')
    url = with_database(args.pg_url, name)
    logdir = Path(tempfile.mkdtemp(prefix="roster-mixed-"))
    failures: list[str] = []
    servers: list[Roster] = []
    try:
        old = Roster(f"old-{old_head}", old_bin, url, logdir)
        servers.append(old)
        wait_serving(grpc, old)
        new = Roster(f"new-{new_head}", new_bin, url, logdir)
        servers.append(new)
        wait_serving(grpc, new)
        log(f"serving: {old.label} on {old.addr}, {new.label} on {new.addr}; database {name}")

        chans = {s.label: grpc.insecure_channel(s.addr) for s in servers}
        users = {k: us_grpc.UserServiceStub(c) for k, c in chans.items()}
        tasks = {k: ts_grpc.TaskServiceStub(c) for k, c in chans.items()}
        other = {old.label: new.label, new.label: old.label}

        accepted: list[tuple[str, str, list[str]]] = []  # (task_id, accepted by, user ids)
        counts = {"writes": 0, "partial": 0, "reads": 0}
        lock = threading.Lock()
        watch_ends: dict[str, str] = {}

        def watch(task_id: str, via: str) -> None:
            last = None
            for msg in tasks[via].WatchTask(ts.WatchTaskRequest(task_id=task_id), timeout=120):
                last = msg.task
            with lock:
                watch_ends[task_id] = ts.TaskStatus.Name(last.status) if last else "nothing"

        def round_on(label: str, r: int) -> list[futures.Future]:
            ids = [f"mv-{label}-{r}-{i}" for i in range(60)]
            batch = {i: user_pb.UserRequest(id=i, name=f"Name {i}") for i in ids}
            users[label].UpdateUsers(us.UpdateUsersRequest(users=batch), timeout=30)
            parts = []
            for i in ids[:10]:
                s = struct_pb2.Struct()
                s.update({"custom": {"round": r}})
                parts.append(us.UpdateUserPartialRequest(id=i, set=s))
            users[label].UpdateUsersPartial(us.UpdateUsersPartialRequest(users=parts), timeout=30)
            for i in ids[:10]:
                got = users[other[label]].GetUser(us.GetUserRequest(id=i), timeout=30).user
                if got.name != f"Name {i}":
                    failures.append(f"{i} read through {other[label]}: name {got.name!r}")
            with lock:
                counts["writes"] += len(ids)
                counts["partial"] += len(parts)
                counts["reads"] += 10
            deleted = users[label].DeleteUsers(
                us.DeleteUsersRequest(user_ids=ids[:30], user="soft"), timeout=30).task_id
            deactivated = users[label].DeactivateUsers(
                us.DeactivateUsersRequest(user_ids=ids[30:50]), timeout=30).task_id
            with lock:
                accepted.append((deleted, label, ids[:30]))
                accepted.append((deactivated, label, ids[30:50]))
            return [pool.submit(watch, t, other[label]) for t in (deleted, deactivated)]

        started = time.monotonic()
        with futures.ThreadPoolExecutor(max_workers=16) as pool:
            rounds = [pool.submit(round_on, s.label, r) for r in range(args.rounds) for s in servers]
            watches = [w for f in rounds for w in f.result()]
            for w in watches:
                w.result()
        load_seconds = time.monotonic() - started

        # Every accepted task: completed, each item ok, whoever ran it.
        by_acceptor = {s.label: [0, 0] for s in servers}
        for task_id, label, ids in accepted:
            t = tasks[other[label]].GetTask(ts.GetTaskRequest(task_id=task_id), timeout=30).task
            status = ts.TaskStatus.Name(t.status)
            result = dict(t.result.fields)
            ok = (status == "TASK_STATUS_COMPLETED"
                  and t.progress.done == t.progress.total == len(ids)
                  and set(result) == set(ids)
                  and all(v.struct_value.fields["status"].string_value == "ok"
                          for v in result.values()))
            by_acceptor[label][0] += 1
            by_acceptor[label][1] += ok
            if not ok:
                failures.append(f"task {task_id} accepted by {label}: {status} "
                                f"{t.progress.done}/{t.progress.total} {t.error}")
            if watch_ends.get(task_id) != "TASK_STATUS_COMPLETED":
                failures.append(f"WatchTask {task_id} through {other[label]} ended "
                                f"{watch_ends.get(task_id)}")

        # Neither crashed, neither spins once idle.
        idle = 5.0
        before = {s.label: s.cpu_ticks() for s in servers if s.proc.poll() is None}
        time.sleep(idle)
        hz = os.sysconf("SC_CLK_TCK")
        cpu = {}
        for s in servers:
            if s.proc.poll() is not None:
                failures.append(f"{s.label} exited with {s.proc.returncode}")
                continue
            cpu[s.label] = (s.cpu_ticks() - before[s.label]) / hz / idle
            if cpu[s.label] > 0.25:
                failures.append(f"{s.label} used {cpu[s.label]:.0%} of a core while idle")
        for s in servers:
            text = s.log_path.read_text(errors="replace")
            panics = text.count("panicked")
            errors = text.count('"level":"ERROR"')
            warns = text.count('"level":"WARN"')
            if panics:
                failures.append(f"{s.label} logged {panics} panic(s)")
            log(f"{s.label}: log {len(text.splitlines())} lines, {errors} ERROR, {warns} WARN, "
                f"{panics} panics; idle CPU {cpu.get(s.label, float('nan')):.1%}")

        log(f"load: {args.rounds} rounds per binary in {load_seconds:.1f}s; "
            f"{counts['writes']} users created, {counts['partial']} partial updates, "
            f"{counts['reads']} reads through the other binary")
        for label, (n, ok) in by_acceptor.items():
            log(f"tasks accepted by {label}: {n}, completed ok {ok}, "
                f"watched to the end through {other[label]}")
    finally:
        for s in servers:
            s.stop()
        try:
            psql(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except subprocess.CalledProcessError as e:
            log(f"warning: could not drop {name}: {e}")
        log(f"logs kept in {logdir}")

    if failures:
        for f in failures[:20]:
            log(f"FAIL: {f}")
        log(f"FAILED: {len(failures)} problem(s)")
        return 1
    log("PASSED: both binaries served and completed every task either accepted")
    return 0


def wait_serving(grpc, server: Roster, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.label} exited ({server.proc.returncode}); log:\n"
                             + server.log_path.read_text(errors="replace")[-3000:])
        try:
            grpc.channel_ready_future(grpc.insecure_channel(server.addr)).result(timeout=1)
            # Ready to connect is not yet SERVING: the schema may still be migrating. A
            # GetUser that answers (even NOT_FOUND) says the database is in use.
            return_code = probe(grpc, server)
            if return_code:
                return
        except grpc.FutureTimeoutError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{server.label} not serving within {within}s")


def probe(grpc, server: Roster) -> bool:
    us = importlib.import_module("roster.v1.user_service_pb2")
    us_grpc = importlib.import_module("roster.v1.user_service_pb2_grpc")
    try:
        us_grpc.UserServiceStub(grpc.insecure_channel(server.addr)).GetUser(
            us.GetUserRequest(id="probe"), timeout=2)
        return True
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.NOT_FOUND


if __name__ == "__main__":
    sys.exit(main())
