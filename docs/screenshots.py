"""Regenerate the README's screenshots from a real sweep.

    python docs/screenshots.py

Starts `hpsearch up` (its own Redis, SQLite, the master, 2 workers and the dashboard) in a
temporary directory, submits examples/digits.yaml, photographs the sweep page while it runs,
then every page once it has finished, into docs/images/. Needs Debian's chromium
(apt-get install -y chromium) and playwright (in the test extra).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from master.up import free_port, http_answers  # noqa: E402

IMAGES = REPO / "docs" / "images"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def shoot(page: Page, url: str, name: str, *, full_page: bool = True) -> None:
    page.goto(url)
    if page.evaluate("Boolean(document.body.dataset.figures)"):
        page.wait_for_function("Number(document.body.dataset.figuresDrawn || 0) >= 1")
    page.wait_for_timeout(500)  # Plotly's transitions
    page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=full_page)
    print(f"  docs/images/{name}.png", flush=True)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    api_port, dashboard_port = free_port(), free_port()
    api, board = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dashboard_port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        up = subprocess.Popen(
            [sys.executable, "-m", "master.cli", "up", "--workers", "2", "--port", str(api_port),
             "--dashboard-port", str(dashboard_port), "--data-dir", tmp],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait(lambda: http_answers(board + "/healthz"), 60, "hpsearch up")
            spec = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
            sweep = call("POST", api + "/api/sweeps", spec)["id"]
            print(f"sweep {sweep} submitted; photographing into {IMAGES}", flush=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1400, "height": 900})

                def stage_running(index: int) -> bool:
                    stages = call("GET", f"{api}/api/sweeps/{sweep}")["stages"]
                    return bool(stages[index]["status"] == "running")

                wait(lambda: stage_running(1), 300, "the second stage")
                shoot(page, f"{board}/sweeps/{sweep}", "sweep-running")

                def finished() -> bool:
                    return bool(call("GET", f"{api}/api/sweeps/{sweep}")["status"] != "running")

                wait(finished, 600, "the sweep to end")
                best = call("GET", f"{api}/api/leaderboard?sweep={sweep}&limit=1")["data"][0]
                shoot(page, f"{board}/?sweep={sweep}", "leaderboard", full_page=False)
                shoot(page, f"{board}/sweeps/{sweep}", "sweep")
                shoot(page, f"{board}/trials/{best['id']}", "trial")
                shoot(page, f"{board}/workers", "workers", full_page=False)
                browser.close()
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
