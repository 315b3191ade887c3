"""Serving the dashboard: checks of the address and token, a bound socket, uvicorn.

Loopback addresses (127.0.0.0/8, ::1, ``localhost``) may be served without a token; any
other address needs one (``$CAFTM_DASHBOARD_TOKEN`` or a token file: never the command line,
which other users see in ``ps``), since the page shows job names, sites and configuration.
On loopback, a request must name a loopback host (DNS rebinding: a foreign page whose name
resolves to 127.0.0.1 would otherwise read the dashboard). The token is never printed or
logged. The socket is bound here, before uvicorn starts, so a port in use or an address not
on this machine is one clear error.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from caftm.errors import ConfigError

__all__ = [
    "TOKEN_ENV",
    "DashboardServer",
    "ServeOptions",
    "allowed_hosts",
    "is_loopback",
    "read_token_file",
    "resolve_token",
]

logger = logging.getLogger(__name__)

TOKEN_ENV = "CAFTM_DASHBOARD_TOKEN"
MIN_TOKEN_CHARS = 8


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str] | None:
    """The names a request's ``Host`` may carry when serving on ``host``: on loopback, the
    loopback names (and ``host`` itself); elsewhere any (None: the token guards it)."""
    if not is_loopback(host):
        return None
    bare = host.strip("[]").lower()
    own = f"[{bare}]" if ":" in bare else bare
    return sorted({"localhost", "127.0.0.1", "[::1]", own})


def read_token_file(path: Path) -> str:
    """The token in the file at ``path`` (surrounding whitespace dropped).

    Raises:
        ConfigError: the file cannot be read or holds no token.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read the token file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise ConfigError(f"the token file {path} is not UTF-8 text") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty")
    return token


def resolve_token(host: str, token: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The token to require: the one given, else ``$CAFTM_DASHBOARD_TOKEN``, else None.

    Raises:
        ConfigError: a non-loopback ``host`` with no token, or a token that is too short.
    """
    environment = os.environ if env is None else env
    chosen = token if token is not None else (environment.get(TOKEN_ENV) or None)
    if chosen is not None and len(chosen) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the dashboard token must have at least {MIN_TOKEN_CHARS} characters")
    if chosen is None and not is_loopback(host):
        raise ConfigError(
            f"serving on {host} (not loopback) needs a token: set {TOKEN_ENV} or pass --token-file"
        )
    return chosen


@dataclass(frozen=True)
class ServeOptions:
    """Where and how to serve (port 0: any free port; the token is left out of the repr)."""

    db: Path | str
    host: str = "127.0.0.1"
    port: int = 8050
    token: str | None = field(default=None, repr=False)
    poll_ms: int = 1000
    max_points: int = 2000

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range (1-65535)")
        if not 100 <= self.poll_ms <= 60_000:
            raise ConfigError(f"poll interval {self.poll_ms} ms is out of range (100-60000)")


class DashboardServer:
    """The dashboard on a bound socket: :meth:`serve` blocks, :meth:`start` runs it in a thread.

    Raises:
        ConfigError: no ledger, a bad address or token, or the port cannot be bound.
    """

    def __init__(self, options: ServeOptions) -> None:
        import uvicorn

        from caftm.dashboard.app import build_app
        from caftm.dashboard.model import Board

        self.options = options
        token = resolve_token(options.host, options.token)
        self.board = Board(options.db, max_points=options.max_points)
        try:
            self._socket = _bind(options.host, options.port)
        except ConfigError:
            self.board.close()
            raise
        self.port = int(self._socket.getsockname()[1])
        app = build_app(
            self.board, token=token, hosts=allowed_hosts(options.host), poll_ms=options.poll_ms
        )
        config = uvicorn.Config(  # no websockets: the page polls (and websockets.legacy warns)
            app, log_level="warning", access_log=False, lifespan="off", ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._warm = threading.Thread(target=self.board.warm, daemon=True, name="caftm-warm")
        self._warm.start()

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        """Wait until every job's view is built (True) or ``timeout_s`` passed (False)."""
        self._warm.join(timeout_s)
        return not self._warm.is_alive()

    @property
    def url(self) -> str:
        """The page's address."""
        host = self.options.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def serve(self) -> None:
        """Serve until interrupted (Ctrl-C), then close the socket and the ledger."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._close()

    def start(self) -> DashboardServer:
        """Serve in a background thread (tests, benchmarks); returns once it accepts."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True,
            name="caftm-dashboard",
        )  # fmt: skip
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            threading.Event().wait(0.02)
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close()

    def _close(self) -> None:
        self._socket.close()
        self.board.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        ConfigError: the address is unknown here or the port is taken or forbidden.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError(f"cannot serve on {host}: {e.strerror or e}") from e
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.set_inheritable(True)
    return sock
