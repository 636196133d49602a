"""Checkpoint downloads never leave CHECKPOINT_DIR, whatever the URL or a database row says."""

from __future__ import annotations

from pathlib import Path

from dashboard.files import NoSuchFile, inside
from master.models import Trial
from tests.dashboard.conftest import Board


def recorded_checkpoint(board: Board) -> str:
    with board.db.reading() as session:
        trial = session.get(Trial, board.with_checkpoint)
        assert trial is not None
        return str(trial.checkpoints[0])


def set_checkpoints(board: Board, trial_id: int, paths: list[str]) -> None:
    with board.db.writing() as session:
        trial = session.get(Trial, trial_id)
        assert trial is not None
        trial.checkpoints = paths


def test_a_trials_checkpoint_downloads_byte_for_byte(board: Board) -> None:
    relative = recorded_checkpoint(board)
    name = Path(relative).name
    response = board.client.get(f"/trials/{board.with_checkpoint}/checkpoints/{name}")
    assert response.status_code == 200
    assert response.content == (board.checkpoints / relative).read_bytes()
    assert f'filename="{name}"' in response.headers["content-disposition"]


def test_urls_that_climb_out_are_refused(board: Board, tmp_path: Path) -> None:
    secret = board.checkpoints.parent / "secret.txt"
    secret.write_text("not yours")
    trial = board.with_checkpoint
    for name in [
        "..%2Fsecret.txt",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2fsecret.txt",
        "..%5Csecret.txt",
        "%2Fetc%2Fpasswd",
        "sweep000001%2Fstage0%2F..%2F..%2F..%2Fsecret.txt",
        f"val0.9100_trial{trial:06d}_ep002.npz%00.txt",
        f"val0.9100_trial{trial + 1:06d}_ep002.npz",  # another trial's name
    ]:
        response = board.client.get(f"/trials/{trial}/checkpoints/{name}")
        assert response.status_code in (400, 404), name
        assert b"not yours" not in response.content and b"root:" not in response.content
    # Unencoded dots and slashes lead to other routes, which refuse them.
    response = board.client.get(f"/trials/{trial}/checkpoints/../../secret.txt")
    assert response.status_code in (400, 404) and b"not yours" not in response.content


def test_a_forged_database_row_cannot_lead_outside(board: Board) -> None:
    """A row could hold any path (a forged worker event): the resolved file must still lie
    under CHECKPOINT_DIR."""
    trial = board.with_checkpoint
    name = f"val0.9900_trial{trial:06d}_ep001.npz"
    outside = board.checkpoints.parent / "elsewhere"
    outside.mkdir()
    (outside / name).write_bytes(b"not yours")
    set_checkpoints(board, trial, [f"../elsewhere/{name}"])
    assert board.client.get(f"/trials/{trial}/checkpoints/{name}").status_code == 404
    # Nor through a symbolic link inside the directory.
    link_dir = board.checkpoints / "linked"
    link_dir.symlink_to(outside, target_is_directory=True)
    set_checkpoints(board, trial, [f"linked/{name}"])
    response = board.client.get(f"/trials/{trial}/checkpoints/{name}")
    assert response.status_code == 404 and b"not yours" not in response.content
    assert "outside the checkpoint directory" in response.text


def test_inside_accepts_only_regular_files_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.npz").write_bytes(b"x")
    assert inside(tmp_path, "a/f.npz") == (tmp_path / "a" / "f.npz").resolve()
    for bad in ("a", "a/missing.npz", "../x", "/etc/passwd", "a/../../x"):
        try:
            inside(tmp_path, bad)
        except NoSuchFile:
            continue
        raise AssertionError(f"{bad} was accepted")
