"""With HPSEARCH_API_TOKEN set, every dashboard page, figure and download needs it: a
browser signs in on /login and keeps a signed cookie; a secret never shows in a page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.auth import COOKIE, safe_next
from master.settings import Settings
from tests.dashboard.conftest import Board

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(board: Board, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=board.db.url,
        data_dir=tmp_path / "data",
        checkpoint_dir_setting=str(board.checkpoints),
        redis_url="redis://:redis-password@127.0.0.1:1/0",  # nothing listens there
        api_token=TOKEN,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def every_address(board: Board) -> list[str]:
    trial = board.with_checkpoint
    name = board.client.get(f"/trials/{trial}").text.split(f"/trials/{trial}/checkpoints/")[1]
    name = name.split('"')[0]
    return [
        "/", f"/?sweep={board.sweep_id}", f"/sweeps/{board.sweep_id}", f"/trials/{trial}",
        "/workers", f"/api/sweeps/{board.sweep_id}/figures", f"/api/trials/{trial}/figures",
        f"/trials/{trial}/weights.png", f"/trials/{trial}/checkpoints/{name}",
        f"/sweeps/{board.sweep_id}?part=live",
    ]  # fmt: skip


def test_every_page_and_download_needs_the_token(board: Board, guarded: TestClient) -> None:
    addresses = every_address(board)
    for address in addresses:
        refused = guarded.get(address, follow_redirects=False)
        if address.startswith("/api/") or "/checkpoints/" in address:
            assert refused.status_code == 401, address
        else:
            assert refused.status_code in (303, 401), address
            if refused.status_code == 303:
                assert refused.headers["location"].startswith("/login?next=%2F"), address
        assert TOKEN not in refused.text
    # Signing in with the wrong token fails; with the right one every address answers.
    wrong = guarded.post("/login", data={"token": "nope", "next": "/"}, follow_redirects=False)
    assert wrong.status_code == 401 and "That is not the token" in wrong.text
    signed = guarded.post(
        "/login", data={"token": TOKEN, "next": f"/sweeps/{board.sweep_id}"}, follow_redirects=False
    )
    assert signed.status_code == 303 and signed.headers["location"] == f"/sweeps/{board.sweep_id}"
    cookie = signed.cookies[COOKIE]
    assert TOKEN not in cookie and "httponly" in signed.headers["set-cookie"].lower()
    for address in addresses:
        assert guarded.get(address).status_code == 200, address
    # Scripts may send the token as to the master; probes and the page's files stay open.
    guarded.cookies.clear()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get(f"/sweeps/{board.sweep_id}", headers=headers).status_code == 200
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/static/dashboard.css").status_code == 200


def test_no_secret_shows_in_a_page(board: Board, guarded: TestClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    page = guarded.get("/workers", headers=headers).text
    assert "is unreachable" in page  # Redis is down: the page says so
    assert "redis-password" not in page and "***@127.0.0.1:1" in page
    for address in every_address(board):
        assert TOKEN not in guarded.get(address, headers=headers).text


def test_after_signing_in_only_a_path_of_this_site_is_followed() -> None:
    assert safe_next("/sweeps/3?part=live") == "/sweeps/3?part=live"
    for elsewhere in ("//evil.example/x", "https://evil.example/", "evil", "", None, "/\\evil"):
        assert safe_next(elsewhere) == "/"
