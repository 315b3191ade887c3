"""The dashboard's web application (Starlette): the page, its JSON API and ``/metrics``.

Routes::

    GET /                    the page (HTML; scripts and styles under /static, served from the
                             package: no CDN, works offline)
    GET /static/{file}       uPlot (MIT, vendored) and the page's own script and style
    GET /api/jobs            every job and bare run, with totals
    GET /api/view?job=NAME   one job's view (or ?run=ID)
    GET /metrics             Prometheus text format, per job (see :mod:`caftm.dashboard.metrics`)

With a token, every route wants it: ``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once:
that answers with a redirect to the same address without the token, setting an HttpOnly
SameSite cookie the page's own requests then carry (so the token stays out of the address bar,
the history and any Referer). With ``hosts``, a request whose ``Host`` names another host is
refused (400): a page served on loopback cannot be read through a DNS-rebound name. Every answer
carries ``Referrer-Policy: no-referrer``.

Both API answers carry an ``ETag``; a request whose ``If-None-Match`` names it is answered
``304 Not Modified`` with no body. A view's tag is the digest of that view's own records (see
:meth:`caftm.dashboard.model.Watch.fingerprint`), so a finished job's view is not sent again
while other jobs write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

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
    """Refuse (401) any request without the token; a good ``?token=`` is swapped for the cookie."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token.encode()

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        query = request.query_params.get("token")
        if self._ok(query):
            response = RedirectResponse(_without_token(request), status_code=303)
            response.set_cookie(TOKEN_COOKIE, query or "", httponly=True, samesite="lax")
            return response
        if self._ok(bearer) or self._ok(request.cookies.get(TOKEN_COOKIE)):
            return await call_next(request)
        return PlainTextResponse("a token is needed: ?token=... or Authorization: Bearer", 401)


def _without_token(request: Request) -> str:
    """The request's path and query, less every ``token`` parameter (relative: no host echoed)."""
    path = "/" + request.url.path.lstrip("/")  # never "//host": that would leave this server
    query = request.url.remove_query_params("token").query
    return f"{path}?{query}" if query else path


class _NoReferrer:
    """Add ``Referrer-Policy: no-referrer`` to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), _NO_REFERRER]
            await send(message)

        await self.app(scope, receive, send_with_policy if scope["type"] == "http" else send)


_NO_REFERRER = (b"referrer-policy", b"no-referrer")


def _matches(request: Request, tag: str) -> bool:
    """Whether the request's ``If-None-Match`` names ``tag``."""
    given = request.headers.get("if-none-match", "")
    return any(t.strip().removeprefix("W/") == f'"{tag}"' for t in given.split(","))


def _not_modified(tag: str) -> Response:
    return Response(status_code=304, headers={"etag": f'"{tag}"', "cache-control": "no-cache"})


def _tagged(request: Request, tag: str, body: bytes) -> Response:
    """The JSON ``body`` with its ``ETag``, or 304 when the client holds it already."""
    if _matches(request, tag):
        return _not_modified(tag)
    headers = {"etag": f'"{tag}"', "cache-control": "no-cache"}
    return Response(body, media_type="application/json", headers=headers)


def build_app(
    board: Board,
    *,
    token: str | None = None,
    hosts: Sequence[str] | None = None,
    poll_ms: int = 1000,
) -> Starlette:
    """The ASGI application over ``board`` (the caller closes the board).

    ``hosts``: the names a request's ``Host`` header may carry (any port); None: any name.
    """

    def page(request: Request) -> Response:
        return FileResponse(f"{static_dir()}/index.html", media_type="text/html")

    def jobs(request: Request) -> Response:
        try:
            listed = board.jobs()
        except CaftmError as e:
            logger.warning("jobs list failed: %s", e)
            return JSONResponse({"error": str(e)}, 503)
        body = {"jobs": listed, "ledger": str(board.ledger.path), "poll_ms": poll_ms}
        text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        return _tagged(request, hashlib.sha256(text).hexdigest()[:20], text)

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
        if _matches(request, mark):
            return _not_modified(mark)
        body = json.dumps({"mark": mark, "view": data}, allow_nan=False, separators=(",", ":"))
        return _tagged(request, mark, body.encode())

    def metrics(request: Request) -> Response:
        try:
            return Response(metrics_text(board), media_type=CONTENT_TYPE)
        except CaftmError as e:
            return PlainTextResponse(f"# ledger unreadable: {e}\n", 503)

    middleware = [Middleware(_NoReferrer)]
    if hosts is not None:
        trusted = Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False)
        middleware.append(trusted)
    if token:
        middleware.append(Middleware(_TokenGate, token=token))
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
