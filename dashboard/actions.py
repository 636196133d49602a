"""The dashboard's two actions, stop a trial and cancel a sweep, done through the master's
REST API (HPSEARCH_MASTER_URL, with the API token): the dashboard itself stays read-only over
the database, and the master applies them as it applies any client's."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from dashboard.state import DashboardDep, Id
from master.settings import Settings

router = APIRouter()


class ActionFailed(RuntimeError):
    """The master refused or could not be reached; the message says which, in words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def call_master(settings: Settings, path: str) -> None:
    headers = {"Accept": "application/json"}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    request = urllib.request.Request(
        settings.master_url.rstrip("/") + path, data=b"", method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ActionFailed(exc.code, f"the master answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ActionFailed(503, f"the master cannot be reached: {reason}") from None


@router.post("/trials/{trial_id}/stop")
def stop_trial(trial_id: Id, dashboard: DashboardDep) -> RedirectResponse:
    call_master(dashboard.settings, f"/api/trials/{trial_id}/stop")
    return RedirectResponse(f"/trials/{trial_id}", status_code=303)


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep(sweep_id: Id, dashboard: DashboardDep) -> RedirectResponse:
    call_master(dashboard.settings, f"/api/sweeps/{sweep_id}/cancel")
    return RedirectResponse(f"/sweeps/{sweep_id}", status_code=303)
