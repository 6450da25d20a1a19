"""The browser UI: the files of kumoflow.ui served at ``/ui/``, and ``/`` sent there.

The UI is static: one HTML page, plain ES modules and a style sheet, no build
step and nothing fetched from elsewhere. It reads everything through this same
API with the token a person types on its login page (kept in the tab's
sessionStorage, sent as X-Auth-Token), and hears what changes through the event
stream (events.py). The files themselves need no token: they hold no data.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from .server import ApiContext

router = APIRouter(include_in_schema=False)

PREFIX = "/ui"


def ui_directory() -> str:
    return str(files("kumoflow") / "ui")


def setup(app: Any, ctx: ApiContext) -> None:
    app.mount(PREFIX, StaticFiles(directory=ui_directory(), html=True), name="ui")


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)
