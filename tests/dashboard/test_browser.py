"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) over a
real system: our Redis, the master, two workers and `hpsearch dashboard`, on SQLite.

Screenshots of each page go to test-output/dashboard/ (docs/screenshots.py makes the
README's from a bigger sweep). With CI=true a missing browser fails these tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.master.factories import example_spec
from tests.servers import REPO, free_port, http_answers, wait_for
from tests.system.conftest import System, running_system

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = REPO / "test-output" / "dashboard"


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI must install it (.ci/run does)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Site:
    def __init__(self, system: System, url: str) -> None:
        self.system = system
        self.url = url


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("browser")
    with running_system(root, "sqlite", workers=2) as system:
        port = free_port()
        system.processes.hpsearch(
            "dashboard", "dashboard", "--port", str(port), HPSEARCH_MASTER_URL=system.url
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_answers(url + "/healthz"), 30, "the dashboard to answer")
        yield Site(system, url)


@pytest.fixture(scope="module")
def finished_sweep(site: Site) -> dict[str, Any]:
    spec = example_spec(
        stages=[{"trials": 16, "epochs": 1}, {"trials": 6, "epochs": 3, "keep_top": 4}]
    )
    sweep_id = site.system.submit(spec)
    return site.system.wait_until_done(sweep_id, timeout=120)


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A failed load's message does not name the resource; its location does.
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{msg.text} ({msg.location.get('url')})")
            if msg.type == "error"
            else None
        ),
    )
    page.goto(url)
    page.errors = errors
    return page


def screenshot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_leaderboard_shows_trials_in_rank_order(
    browser: Any, site: Site, finished_sweep: dict[str, Any]
) -> None:
    sweep_id = finished_sweep["id"]
    page = open_page(browser, f"{site.url}/?sweep={sweep_id}")
    rows = page.locator("#leaderboard tbody tr")
    expected = site.system.get("/api/leaderboard", sweep=sweep_id, limit=50)["data"]
    assert rows.count() == min(50, finished_sweep["total_trials"])
    shown = [int(rows.nth(k).get_attribute("data-trial")) for k in range(len(expected))]
    assert shown == [t["id"] for t in expected]
    accuracies = [float(a) for a in page.locator("td.val-acc").all_inner_texts() if a != "-"]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > 0.5
    # The filter form works without script: choose a status and submit.
    page.select_option("select[name=status]", "exploded")
    page.click("form.filters button")
    page.wait_for_url("**status=exploded**")
    statuses = page.locator("#leaderboard tbody .status").all_inner_texts()
    exploded = [t for t in site.system.trials(sweep_id) if t["status"] == "exploded"]
    # Exactly the sweep's exploded trials (none would also be right; all 22 would not).
    assert [s.split()[0] for s in statuses] == ["exploded"] * min(50, len(exploded))
    screenshot(page, "leaderboard")
    assert page.errors == []
    page.close()


def test_sweep_page_draws_its_plots(
    browser: Any, site: Site, finished_sweep: dict[str, Any]
) -> None:
    sweep_id = finished_sweep["id"]
    trials = site.system.trials(sweep_id)
    scored = [t for t in trials if t["best_val_acc"] is not None]
    page = open_page(browser, f"{site.url}/sweeps/{sweep_id}")
    page.wait_for_function("Number(document.body.dataset.figuresDrawn || 0) >= 1", timeout=20_000)
    for plot in ("plot-val-learning_rate", "plot-val-reg"):
        # The SVG markers Plotly drew: one per trial with a validation accuracy.
        assert page.locator(f"#{plot} .scatterlayer .point").count() == len(scored), plot
        assert page.evaluate(f"document.getElementById('{plot}').layout.xaxis.type") == "log"
    pair = page.locator("#plot-pair .scatterlayer .trace").first.locator(".point")
    assert pair.count() == len(scored)
    # One rectangle per planned stage, each a closed line of 5 corners.
    ranges = page.evaluate(
        "document.getElementById('plot-pair').data.filter(t => t.name.endsWith('range')).length"
    )
    assert ranges == len(finished_sweep["stages"])
    assert page.locator("#plot-parallel .parcoords").count() == 1
    dimensions = page.evaluate("document.getElementById('plot-parallel').data[0].dimensions")
    assert all(len(d["values"]) == len(scored) for d in dimensions)
    assert page.locator("#stage-1 .bar .segment").count() >= 1
    # Every scored trial's validation curve, one trace per stage, drawn as SVG paths.
    curves = page.evaluate(
        "document.getElementById('plot-curves').data"
        ".map(t => new Set(t.customdata.filter(i => i !== null)).size)"
    )
    # (A trial that exploded within its first epoch has a score from its early checkpoint,
    # but no epoch ended: no curve.)
    with_epochs = [t for t in scored if site.system.get(f"/api/trials/{t['id']}")["history"]]
    assert sum(curves) == len(with_epochs) and len(curves) == len(finished_sweep["stages"])
    # One SVG path per trial: the gaps split a stage's trace into its trials' curves.
    assert page.locator("#plot-curves .scatterlayer path.js-line").count() == sum(curves)
    # Importance: one bar per searched hyperparameter, the shares summing to 1.
    bars = page.evaluate("document.getElementById('plot-importance').data[0]")
    assert set(bars["y"]) == set(finished_sweep["spec"]["space"])
    assert abs(sum(bars["x"]) - 1) < 1e-6
    assert page.locator("#plot-importance .barlayer .point").count() == len(bars["y"])
    screenshot(page, "sweep")
    # Clicking a point opens its trial.
    page.locator("#plot-val-learning_rate .scatterlayer .point").first.click(force=True)
    page.wait_for_url("**/trials/*")
    assert page.errors == []
    page.close()


def test_trial_page_shows_its_curves(
    browser: Any, site: Site, finished_sweep: dict[str, Any]
) -> None:
    best = site.system.get("/api/leaderboard", sweep=finished_sweep["id"], limit=1)["data"][0]
    detail = site.system.get(f"/api/trials/{best['id']}")
    page = open_page(browser, f"{site.url}/trials/{best['id']}")
    page.wait_for_function("Number(document.body.dataset.figuresDrawn || 0) >= 1", timeout=20_000)
    loss = page.evaluate("document.getElementById('plot-loss').data[0].y.length")
    assert loss == len(detail["loss"]) > 0
    assert page.locator("#plot-loss .scatterlayer path.js-line").count() == 1
    accuracy = page.evaluate("document.getElementById('plot-accuracy').data.map(t => t.y.length)")
    assert accuracy == [len(detail["history"])] * 2
    names = page.evaluate("document.getElementById('plot-ratios').data.map(t => t.name)")
    assert "W1" in names and any(n.startswith("1e-03") for n in names)
    assert page.evaluate("document.getElementById('plot-ratios').layout.yaxis.type") == "log"
    page.click("button[data-axis-type=log]")
    assert page.evaluate("document.getElementById('plot-loss').layout.yaxis.type") == "log"
    weights = page.locator("img#weights")
    weights.wait_for()
    page.wait_for_function("document.getElementById('weights').naturalWidth > 0")
    assert "100 hidden units as 8x8 images" in page.locator("figure.weights").inner_text()
    # The layers' distributions: a heatmap of one column per epoch, dead units, gradients.
    heatmap = page.evaluate("document.getElementById('plot-activations-layer1').data[0]")
    assert heatmap["type"] == "heatmap" and len(heatmap["x"]) == len(detail["history"])
    assert len(heatmap["z"]) == 10  # the fixed bins
    assert page.locator("#plot-activations-layer1 .heatmaplayer image").count() == 1
    dead = page.evaluate("document.getElementById('plot-dead').data.map(t => t.name)")
    assert dead[0] == "layer1"
    norms = page.evaluate("document.getElementById('plot-gradients').data.map(t => t.y.length)")
    assert norms == [len(detail["history"])] * 2  # |dW1| and |dW2|
    screenshot(page, "trial")
    assert page.errors == []
    page.close()


def test_workers_page_lists_the_workers(browser: Any, site: Site) -> None:
    page = open_page(browser, f"{site.url}/workers")
    names = page.locator("#workers tbody td.mono").all_inner_texts()
    assert sorted(names) == sorted(site.system.workers)
    screenshot(page, "workers")
    page.close()


def test_a_running_sweeps_page_updates_without_a_reload(browser: Any, site: Site) -> None:
    spec = example_spec(
        model={"hidden_sizes": [300, 300]},
        fixed={"update": "sgd", "batch_size": 10},
        space={"learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 1e-3}},
        stages=[{"trials": 6, "epochs": 3}],
    )
    sweep_id = site.system.submit(spec)
    try:
        page = open_page(browser, f"{site.url}/sweeps/{sweep_id}")
        assert page.locator("#sweep-status").inner_text() == "running"
        page.evaluate("window.notReloaded = true")
        before = int(page.locator("#sweep-done").inner_text())
        # Both, whichever comes first: a fast machine ends a trial before the second refresh.
        page.wait_for_function(
            f"Number(document.getElementById('sweep-done').textContent) > {before}"
            " && Number(document.body.dataset.refreshes) >= 2",
            timeout=60_000,
            polling=200,
        )
        assert page.evaluate("window.notReloaded") is True
        screenshot(page, "sweep-running")
        page.wait_for_function(
            "document.getElementById('sweep-status').textContent === 'finished'",
            timeout=120_000,
            polling=500,
        )
        # Polling goes on while the worker evaluates the finished sweep on its test split,
        # and stops once that is shown.
        page.wait_for_function(
            "document.body.dataset.live === 'false'", timeout=60_000, polling=500
        )
        assert page.evaluate("window.notReloaded") is True
        assert "test accuracy" in page.locator("#test-evaluation").inner_text()
        assert page.errors == []
        page.close()
    finally:
        site.system.post(f"/api/sweeps/{sweep_id}/cancel")


def test_the_server_refuses_raw_paths_that_climb_out(site: Site) -> None:
    """What a browser would normalise away, sent as is."""
    host, port = site.url.removeprefix("http://").split(":")
    for path in ("/static/../app.py", "/static/..%2fapp.py", "/vendor/../../etc/passwd"):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        assert answer.split(b" ")[1] in (b"400", b"404"), path
        assert b"create_app" not in answer and b"root:" not in answer


def test_the_api_docs_render_with_the_network_off(browser: Any, site: Site) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def only_this_machine(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:  # what a CDN would have served
            outside.append(url)
            route.abort()

    page.route("**/*", only_this_machine)
    page.goto(f"{site.system.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "hpsearch master" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/sweeps" in paths and "/api/sweeps/{sweep_id}/ensembles" in paths
    assert outside == [] and errors == []  # Swagger UI: nothing from elsewhere
    page.goto(f"{site.system.url}/redoc")
    page.wait_for_selector("h1", timeout=20_000)
    assert "hpsearch master" in page.locator("h1").first.inner_text()
    # ReDoc's only outside request is its "API docs by Redocly" logo: offline it is missing.
    assert all(url.startswith("https://cdn.redoc.ly/") for url in outside), outside
    assert errors == []
    page.close()


def test_stop_a_trial_and_cancel_a_sweep_from_their_pages(browser: Any, site: Site) -> None:
    spec = example_spec(
        name="to-cancel",
        model={"hidden_sizes": [300, 300]},
        fixed={"update": "sgd", "batch_size": 10},
        space={"learning_rate": {"dist": "loguniform", "low": 1e-4, "high": 1e-3}},
        stages=[{"trials": 4, "epochs": 1000}],
    )
    sweep_id = site.system.submit(spec)

    def a_running_trial() -> int | None:
        running = [t for t in site.system.trials(sweep_id) if t["status"] == "running"]
        return running[0]["id"] if running else None

    trial_id = wait_for(a_running_trial, 60, "a running trial")
    page = open_page(browser, f"{site.url}/trials/{trial_id}")
    page.click("#stop-trial")
    page.wait_for_url(f"**/trials/{trial_id}")
    wait_for(
        lambda: site.system.get(f"/api/trials/{trial_id}")["status"] == "stopped", 30, "the stop"
    )
    page.goto(f"{site.url}/sweeps/{sweep_id}")
    page.click("#cancel-sweep")
    page.wait_for_url(f"**/sweeps/{sweep_id}")
    assert site.system.get(f"/api/sweeps/{sweep_id}")["status"] == "cancelled"
    page.reload()
    assert page.locator("#cancel-sweep").count() == 0  # nothing left to cancel
    assert "cancelled" in page.locator("#sweep-status").inner_text()
    assert page.errors == []
    page.close()
