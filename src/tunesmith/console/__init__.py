"""The web console at ``/console``: jobs with live loss curves, a create-job form with the
advisor's recommendation, custom models and deployments, and a streaming playground.

Server-rendered Jinja2 pages, htmx for the parts that refresh, uPlot for the charts; every
asset is a file in ``static/`` (see its NOTICE.md), so the console works offline. The API's
SigV4 check skips ``/console`` (``tunesmith.api.auth.OWN_LOGIN_PATHS``): the console logs its users
in itself (``login.py``).

    /console, /console/jobs          jobs: status, phase, progress, ETA (polled)
    /console/new-job                 create a job (advice and data problems inline)
    /console/jobs/{name}             one job: loss curves, events, hyperparameters, Stop, Delete
    /console/models                  custom models and deployments; deploy a model
    /console/{jobs,models,deployments}/{name}/delete   what deleting it removes; its button posts
    /console/playground              streaming chat with any model
    /console/login, /console/logout  when the server has --credentials
    /console/static/...              the vendored assets and the icon (also at /favicon.ico)
"""

from __future__ import annotations

from starlette.staticfiles import StaticFiles

from tunesmith.console.html import STATIC
from tunesmith.console.routes import router

__all__ = ["router", "static_files"]


def static_files() -> StaticFiles:
    """The app to mount at ``/console/static`` (before the router: its 404 page covers /console/*)."""
    return StaticFiles(directory=STATIC)
