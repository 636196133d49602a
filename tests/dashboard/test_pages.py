"""The dashboard's pages over a real database: ranking, filters, paging, ids, errors."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from dashboard.app import create_app
from master.models import (
    Ensemble,
    EnsembleKind,
    StageStatus,
    Sweep,
    SweepStatus,
    Trial,
    TrialEpoch,
    TrialStatus,
)
from master.settings import Settings
from master.spec import SweepSpec
from master.sweeps import create_sweep
from tests.dashboard.conftest import ACCURACIES, Board, sweep_trials
from tests.master.factories import example_spec


def ranked_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-trial="(\d+)"', html)]


def test_leaderboard_ranks_by_best_validation_accuracy(board: Board) -> None:
    response = board.client.get("/")
    assert response.status_code == 200
    t = board.trials
    # Ties on accuracy go to the older trial; trials without accuracy come last, most
    # epochs first (the exploded one trained 0.2 epochs), then by id.
    unranked = [i for i in t[5:] if i != board.exploded]
    assert ranked_ids(response.text) == [t[1], t[3], t[0], t[2], t[4], board.exploded, *unranked]
    assert "8 trials" in response.text
    first_row = response.text.split('<tr data-trial="')[1]
    assert "0.9500" in first_row and "0.9800" in first_row  # val acc, train acc
    assert "+0.0300" in first_row  # the gap


def test_leaderboard_rows_show_status_health_and_checkpoint(board: Board) -> None:
    page = board.client.get("/").text
    rows = {int(m[0]): m[1] for m in re.findall(r'<tr data-trial="(\d+)">(.*?)</tr>', page, re.S)}
    exploded = rows[board.exploded]
    assert "exploded" in exploded and "at iteration 17, cost 17.4x the first" in exploded
    # W2's ratio at the latest epoch is 2e-3, W1's 2e-3: ok (biases are not counted).
    assert 'class="badge health-ok"' in rows[board.trials[1]]
    assert "health-unknown" in exploded
    best = rows[board.with_checkpoint]
    assert f'href="/trials/{board.with_checkpoint}/checkpoints/val0.9100_trial' in best
    for name in ("learning_rate", "reg", "dropout", "update"):
        assert f"<th>{name}</th>" in page


def test_leaderboard_filters_and_pages(board: Board) -> None:
    page = board.client.get("/", params={"status": "finished"}).text
    assert len(ranked_ids(page)) == 5 and "5 trials" in page
    page = board.client.get("/", params={"sweep": board.sweep_id, "stage": 1}).text
    assert ranked_ids(page) == [] and "No trials match these filters" in page
    # The filter form sends "all" as empty values.
    assert len(ranked_ids(board.client.get("/?sweep=&stage=&status=").text)) == 8
    page = board.client.get("/", params={"offset": 5}).text
    assert len(ranked_ids(page)) == 3 and "Showing 6–8" in page
    # The default (the newest sweep) is kept in the links.
    assert f'rel="prev" href="/?sweep={board.sweep_id}&amp;offset=0"' in page


def test_the_leaderboard_shows_the_newest_sweep_unless_asked_for_all(board: Board) -> None:
    with board.db.writing() as session:
        other = create_sweep(session, SweepSpec.model_validate(example_spec(name="other")))
        session.flush()
        other_id = other.id
        others = {t.id for t in sweep_trials(session, other_id)}
    newest = ranked_ids(board.client.get("/").text)
    assert newest and set(newest) <= others  # the newest sweep's trials only
    page = board.client.get("/?sweep=all").text
    assert '<option value="all" selected>' in page
    assert board.trials[0] in ranked_ids(page) and set(ranked_ids(page)) & others
    assert len(ranked_ids(board.client.get(f"/?sweep={board.sweep_id}").text)) == 8


def test_leaderboard_pages_hold_fifty_rows(board: Board) -> None:
    from dashboard.leaderboard import Filters, load_leaderboard

    with board.db.reading() as session:
        page = load_leaderboard(session, Filters(), offset=0, page_size=3)
    assert [r.rank for r in page.rows] == [1, 2, 3]
    assert page.next_offset == 3 and page.previous_offset is None and page.count == 8


def test_bad_filters_and_ids_get_a_page_naming_them(board: Board) -> None:
    for url, words in [
        ("/?sweep=abc", "sweep: 'abc' is not a whole number"),
        ("/?stage=-1", "stage: must be from 0 to 1000"),
        ("/?status=done", "status: 'done' is not one of queued"),
        ("/trials/abc", "trial_id"),
        ("/trials/0", "trial_id"),
        ("/sweeps/99999999999999999999", "sweep_id"),
        ("/trials/2147483648", "trial_id"),  # past the INTEGER column: PostgreSQL errors
        ("/?sweep=2147483648", "sweep: must be from 1 to 2147483647"),
    ]:
        response = board.client.get(url)
        assert response.status_code == 400, url
        assert words in html.unescape(response.text) and "<html" in response.text, url
    missing = board.client.get("/trials/987654")
    assert missing.status_code == 404 and "trial 987654: no such trial" in missing.text
    assert board.client.get("/sweeps/987654").status_code == 404
    assert board.client.get("/no/such/page").status_code == 404


def test_sweep_page_shows_stages_ranges_and_live_part(board: Board) -> None:
    page = board.client.get(f"/sweeps/{board.sweep_id}").text
    assert "stage-0" in page and "learning_rate</code> [1.00e-06, 10]" in page
    assert "5 finished" in page and "1 exploded" in page and "2 queued" in page
    assert f'data-figures="/api/sweeps/{board.sweep_id}/figures"' in page
    live = board.client.get(f"/sweeps/{board.sweep_id}", params={"part": "live"})
    assert live.headers["X-Live"] == "true"  # the sweep is running
    assert "<html" not in live.text and "stage-0" in live.text


def test_trial_page_lists_hyperparameters_checkpoints_and_weights(board: Board) -> None:
    page = board.client.get(f"/trials/{board.with_checkpoint}").text
    assert "learning_rate" in page and "val0.9100_trial" in page
    assert f'src="/trials/{board.with_checkpoint}/weights.png"' in page
    assert "12 hidden units as 8x8 images" in page
    exploded = board.client.get(f"/trials/{board.exploded}")
    assert "17.4x the first cost" in exploded.text
    assert "Not shown: no checkpoint yet" in exploded.text
    live = board.client.get(f"/trials/{board.with_checkpoint}", params={"part": "live"})
    assert live.headers["X-Live"] == "false"  # finished


def test_weights_image_is_a_png_of_one_tile_per_unit(board: Board) -> None:
    response = board.client.get(f"/trials/{board.with_checkpoint}/weights.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    width, height = int.from_bytes(response.content[16:20]), int.from_bytes(response.content[20:24])
    assert (width, height) == (4 * 9 + 1, 3 * 9 + 1)  # 12 tiles of 8x8 in a 4x3 grid, 1 px gaps
    assert board.client.get(f"/trials/{board.exploded}/weights.png").status_code == 404


def test_weights_come_from_the_file_on_disk_when_the_recorded_best_was_pruned(
    board: Board,
) -> None:
    # The worker pruned the best file the database records, for a better one whose event
    # the master has not applied yet: the page and the image use the newer file, not a 404.
    with board.db.reading() as session:
        recorded = session.get_one(Trial, board.with_checkpoint).checkpoints[0]
    old = board.checkpoints / recorded
    newer = old.with_name(old.name.replace("val0.9100", "val0.9300").replace("ep002", "ep003"))
    old.rename(newer)
    page, image = f"/trials/{board.with_checkpoint}", f"/trials/{board.with_checkpoint}/weights.png"
    assert f"12 hidden units as 8x8 images, from {newer.name}" in board.client.get(page).text
    assert board.client.get(image).status_code == 200
    newer.unlink()  # none left on disk: "not yet", and the image is a 404
    assert "Not shown: no checkpoint yet" in board.client.get(page).text
    assert board.client.get(image).status_code == 404


def test_figures_hold_one_point_per_scored_trial(board: Board) -> None:
    body = board.client.get(f"/api/sweeps/{board.sweep_id}/figures").json()
    figures = body["figures"]
    assert body["live"] is True
    assert set(figures) == {
        "plot-val-learning_rate", "plot-val-reg", "plot-pair", "plot-parallel", "plot-curves",
        "plot-importance",
    }  # fmt: skip
    assert sum(len(t["x"]) for t in figures["plot-val-learning_rate"]["data"]) == 5
    pair = figures["plot-pair"]["data"]
    assert len(pair[0]["x"]) == 5 and len(pair[1]["x"]) == 1  # scored; exploded
    assert [t["name"] for t in pair[2:]] == ["stage 0 range"]  # stage 1 is not planned yet
    assert pair[2]["x"] == [1e-6, 10, 10, 1e-6, 1e-6]
    assert figures["plot-pair"]["layout"]["xaxis"]["type"] == "log"
    trial = board.client.get(f"/api/trials/{board.trials[1]}/figures").json()["figures"]
    assert len(trial["plot-loss"]["data"][0]["y"]) == 6  # 3 iterations x 2 epochs
    assert {t["name"] for t in trial["plot-ratios"]["data"]} >= {"W1", "W2", "b1", "b2"}
    assert board.client.get("/api/trials/987654/figures").status_code == 404


def test_workers_page_says_when_redis_is_unreachable(board: Board) -> None:
    response = board.client.get("/workers")
    assert response.status_code == 200
    assert (
        "is unreachable" in response.text
        and "every other page reads only the database" in response.text
    )


def test_an_unreachable_database_gets_a_page_that_says_so(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/none", data_dir=tmp_path / "data"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for url in ("/", "/trials/1", "/sweeps/1"):
            response = client.get(url)
            assert response.status_code == 503, url
            assert "the database is unreachable" in response.text and "<html" in response.text
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/sweeps/1/figures").json()["detail"].startswith("the database")


def test_a_database_without_tables_says_to_start_the_master(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", data_dir=tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/")
    assert response.status_code == 503 and "Start the master once" in response.text


def test_plotly_is_served_by_the_app_itself(board: Board) -> None:
    response = board.client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and len(response.content) > 1_000_000
    assert b"plotly.js" in response.content[:2000]
    assert board.client.get("/static/dashboard.js").status_code == 200


def test_a_promoted_trial_links_its_parent_and_a_finished_sweep_its_border_warning(
    board: Board,
) -> None:
    parent_id, child_id = board.trials[0], board.trials[-1]
    with board.db.writing() as session:
        child = session.get_one(Trial, child_id)
        child.parent_id, child.start_epoch = parent_id, 2.0
        # Its best epoch is the parent's (whose file, val 0.91 at epoch 2, holds it).
        child.best_val_acc, child.best_epoch, child.checkpoints = 0.91, 2.0, []
        sweep = session.get_one(Sweep, board.sweep_id)
        for stage in sweep.stages:
            stage.status = StageStatus.FINISHED
        sweep.status = SweepStatus.FINISHED
        last = sweep.stages[-1]
        last.space = {"learning_rate": {"dist": "loguniform", "low": 1e-3, "high": 1e-1}}
        best = session.get_one(Trial, board.trials[1])
        best.stage_index = last.index  # the last stage's only scored trial
        best.hyperparameters = {**best.hyperparameters, "learning_rate": 0.095}
        best.status, best.best_val_acc = TrialStatus.FINISHED, 0.99
    page = board.client.get(f"/trials/{child_id}").text
    assert f'promoted from <a href="/trials/{parent_id}">trial #{parent_id}</a>' in page
    assert "epochs 1-2 are its" in page
    name = f"val0.9100_trial{parent_id:06d}_ep002.npz"
    assert (
        f'<a class="mono" href="/trials/{parent_id}/checkpoints/{name}" download>{name}</a> '
        f"of trial #{parent_id}"
    ) in page
    assert board.client.get(f"/trials/{parent_id}/checkpoints/{name}").status_code == 200
    sweep_page = html.unescape(board.client.get(f"/sweeps/{board.sweep_id}").text)
    assert "best learning_rate 0.095 is at the top of [0.001, 0.1]" in sweep_page


def test_a_sweeps_ensembles_are_listed_with_its_test_accuracy_and_plotted_against_k(
    board: Board,
) -> None:
    best, second = board.trials[0], board.trials[1]
    with board.db.writing() as session:
        sweep = session.get_one(Sweep, board.sweep_id)
        sweep.status = SweepStatus.FINISHED
        curve = [
            {"k": 1, "val_acc": 0.95, "test_acc": 0.93},
            {"k": 2, "val_acc": 0.97, "test_acc": 0.96},
        ]
        members = [
            {"trial_id": best, "checkpoint": "a.npz", "val_acc": 0.95, "test_acc": 0.93},
            {"trial_id": second, "checkpoint": "b.npz", "val_acc": 0.94, "test_acc": 0.92},
        ]
        session.add(
            Ensemble(
                sweep_id=board.sweep_id, kind=EnsembleKind.TOP_K, params={"max_k": 2},
                automatic=True, members=members, curve=curve, k=2, val_acc=0.97, test_acc=0.96,
                status=TrialStatus.FINISHED,
            )
        )  # fmt: skip
        session.add(
            Ensemble(
                sweep_id=board.sweep_id, kind=EnsembleKind.CHECKPOINTS, params={"trial_id": best},
                members=members[:1], status=TrialStatus.FAILED, reason="a.npz: no such file",
            )
        )  # fmt: skip
    page = html.unescape(board.client.get(f"/sweeps/{board.sweep_id}").text)
    assert (
        f'best trial <a href="/trials/{best}">#{best}</a> 0.9300 (val 0.9500); '
        "top-2 ensemble 0.9600 (val 0.9700, k chosen on val)"
    ) in page
    rows = re.findall(r'<tr id="ensemble-(\d+)">(.*?)</tr>', page, re.S)
    assert len(rows) == 2
    assert (
        "checkpoints" in rows[0][1]
        and "failed" in rows[0][1]
        and "a.npz: no such file" in rows[0][1]
    )
    assert "the sweep's test evaluation" in rows[1][1] and "0.9600" in rows[1][1]
    figures = board.client.get(f"/api/sweeps/{board.sweep_id}/figures").json()
    plot = figures["figures"]["plot-ensembles"]["data"]
    assert [(line["name"], line["y"]) for line in plot] == [
        ("#1 top-k val", [0.95, 0.97]),
        ("#1 top-k test", [0.93, 0.96]),
    ]


def test_trial_and_sweep_pages_say_what_the_numbers_suggest(board: Board) -> None:
    page = html.unescape(board.client.get(f"/trials/{board.exploded}").text)
    assert 'data-kind="learning_rate_too_high"' in page
    assert "learning rate probably too high: the cost exploded at iteration 17 (17.4x" in page
    sweep_page = html.unescape(board.client.get(f"/sweeps/{board.sweep_id}").text)
    assert re.search(
        r"1 of \d+ trials with learning_rate at or above \S+ exploded: the learning rate is "
        r"probably too high there",
        sweep_page,
    ), sweep_page


def test_every_scored_trials_curve_is_drawn_and_a_promoted_one_joins_its_parent(
    board: Board,
) -> None:
    parent_id, child_id = board.trials[0], board.trials[1]
    with board.db.writing() as session:
        child = session.get_one(Trial, child_id)
        child.parent_id, child.start_epoch = parent_id, 2.0
    figures = board.client.get(f"/api/sweeps/{board.sweep_id}/figures").json()["figures"]
    (stage0,) = figures["plot-curves"]["data"]
    by_trial: dict[int, list[float]] = {}
    for trial_id, epoch in zip(stage0["customdata"], stage0["x"], strict=True):
        if trial_id is not None:
            by_trial.setdefault(trial_id, []).append(epoch)
    assert by_trial[parent_id] == [1.0, 2.0]
    assert by_trial[child_id] == [2.0]  # from where it took over
    assert len(by_trial) == len(ACCURACIES)  # every scored trial
    assert figures["plot-importance"]["data"][0]["type"] == "bar"


def test_the_sweeps_page_lists_each_sweep_with_its_progress_and_best(board: Board) -> None:
    page = html.unescape(board.client.get("/sweeps").text)
    row = re.search(rf'<tr data-sweep="{board.sweep_id}">(.*?)</tr>', page, re.S)
    assert row is not None
    text = re.sub(r"<[^>]+>", " ", row[1])
    assert "digits" in text and "running" in text
    assert "6 of 12 ended, 5 finished, 1 exploded, 2 queued" in re.sub(r"\s+", " ", text), text
    assert f"{max(ACCURACIES):.4f}" in text
    assert 'href="/sweeps"' in board.client.get("/").text  # in the navigation


def test_a_cancelled_sweep_says_stopped_not_done(board: Board) -> None:
    from master.sweeps import cancel_sweep

    with board.db.writing() as session:
        cancel_sweep(session, board.sweep_id)
    page = html.unescape(board.client.get(f"/sweeps/{board.sweep_id}").text)
    assert "5 finished" in page and "stopped" in page
    assert re.search(r'id="stage-0">.*?status-stopped">stopped<', page, re.S)


def test_an_action_the_master_refuses_or_cannot_take_says_why(board: Board) -> None:
    # Nothing listens at the default master URL in this test: the page says so, no trace.
    failed = board.client.post(f"/trials/{board.trials[-1]}/stop")
    assert failed.status_code == 503 and "the master cannot be reached" in failed.text


def test_a_stage_after_a_rung_of_two_says_it_trains_on_from_both(board: Board) -> None:
    stages = [
        {"trials": 12, "epochs": 1},
        {"trials": 12, "epochs": 1, "keep_top": 2},
        {"trials": 8, "epochs": 3, "keep_top": 8, "promote": 8},
        {"trials": 2, "epochs": 9, "keep_top": 2, "promote": 2},
    ]
    with board.db.writing() as session:
        sweep_id = create_sweep(session, SweepSpec.model_validate(example_spec(stages=stages))).id
    page = html.unescape(board.client.get(f"/sweeps/{sweep_id}").text)
    assert "8 trained on from stages 0-1" in page
    assert "2 trained on from stage 2" in page


def test_a_user_trainers_trial_shows_the_layers_it_reported(board: Board) -> None:
    """A user trainer's hyperparameters may name anything (hidden_sizes as an int here):
    the activation plots are those of the layers its epochs recorded, or none."""
    shares = [1.0] + [0.0] * 9
    with board.db.writing() as session:
        sweep = session.get_one(Sweep, board.sweep_id)
        sweep.spec = {**sweep.spec, "trainer": "twolayer"}
        reporting, silent = (session.get_one(Trial, t) for t in board.trials[:2])
        for trial in (reporting, silent):
            trial.hyperparameters = {"hidden_sizes": 64, "reg": "l2"}
        latest = session.scalars(
            select(TrialEpoch).where(TrialEpoch.trial_id == reporting.id, TrialEpoch.epoch == 2.0)
        ).one()
        latest.distributions = {"activations": {"layer1": shares, "layer2": shares}}
    page = board.client.get(f"/trials/{board.trials[0]}")
    assert page.status_code == 200, page.text
    assert 'id="plot-activations-layer1"' in page.text
    assert 'id="plot-activations-layer2"' in page.text
    quiet = board.client.get(f"/trials/{board.trials[1]}")
    assert quiet.status_code == 200, quiet.text
    assert "plot-activations-" not in quiet.text
