"""The dashboard's web application (Starlette): the page, its JSON API and ``/metrics``.

Routes::

    GET /                    the page (HTML; scripts and styles under /static, served from the
                             package: no CDN, works offline)
    GET /static/{file}       uPlot (MIT, vendored) and the page's own script and style
    GET /api/jobs            every job and bare run, with totals
    GET /api/view?job=NAME   one job's view (or ?run=ID); ``&mark=M`` answers
                             ``{"unchanged": true}`` while the ledger's high-water mark is M
    GET /metrics             Prometheus text format, per job (see :mod:`caftm.dashboard.metrics`)

With a token, every route wants it: ``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once
(the page then keeps it in a cookie for its own requests).
"""

from __future__ import annotations

import hmac
import logging
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from caftm.dashboard.metrics import CONTENT_TYPE, metrics_text
from caftm.dashboard.model import Board
from caftm.errors import CaftmError, ConfigError
from caftm.ledger.feed import Scope

__all__ = ["TOKEN_COOKIE", "build_app", "static_dir"]

logger = logging.getLogger(__name__)

TOKEN_COOKIE = "caftm_dashboard_token"


def static_dir() -> str:
    """The folder of the page's files inside the installed package."""
    return str(resources.files("caftm.dashboard") / "static")


class _TokenGate(BaseHTTPMiddleware):
    """Refuse (401) any request without the token; a ``?token=`` query sets the cookie."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token.encode()

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        query = request.query_params.get("token")
        if self._ok(bearer) or self._ok(request.cookies.get(TOKEN_COOKIE)):
            return await call_next(request)
        if self._ok(query):
            response = await call_next(request)
            response.set_cookie(TOKEN_COOKIE, query or "", httponly=True, samesite="strict")
            return response
        return PlainTextResponse("a token is needed: ?token=... or Authorization: Bearer", 401)


def build_app(board: Board, *, token: str | None = None, poll_ms: int = 1000) -> Starlette:
    """The ASGI application over ``board`` (the caller closes the board)."""

    def page(request: Request) -> Response:
        return FileResponse(f"{static_dir()}/index.html", media_type="text/html")

    def jobs(request: Request) -> Response:
        try:
            listed = board.jobs()
        except CaftmError as e:
            logger.warning("jobs list failed: %s", e)
            return JSONResponse({"error": str(e)}, 503)
        return JSONResponse({"jobs": listed, "ledger": str(board.ledger.path), "poll_ms": poll_ms})

    def view(request: Request) -> Response:
        job, run = request.query_params.get("job"), request.query_params.get("run")
        if (job is None) == (run is None):
            return JSONResponse({"error": "give job=NAME or run=ID"}, 400)
        scope = Scope.of_job(job) if job is not None else Scope.of_run(str(run))
        try:
            mark, data = board.view(scope)
        except ConfigError as e:
            return JSONResponse({"error": str(e)}, 404)
        except CaftmError as e:
            logger.warning("view of %s failed: %s", scope, e)
            return JSONResponse({"error": str(e)}, 503)
        text = "|".join(str(m) for m in mark)
        if request.query_params.get("mark") == text:
            return JSONResponse({"unchanged": True, "mark": text})
        return JSONResponse({"mark": text, "view": data})

    def metrics(request: Request) -> Response:
        try:
            return Response(metrics_text(board), media_type=CONTENT_TYPE)
        except CaftmError as e:
            return PlainTextResponse(f"# ledger unreadable: {e}\n", 503)

    middleware = [Middleware(_TokenGate, token=token)] if token else []
    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/jobs", jobs),
            Route("/api/view", view),
            Route("/metrics", metrics),
            Mount("/static", app=StaticFiles(directory=static_dir()), name="static"),
        ],
        middleware=middleware,
    )
