"""caftm.dashboard: a live page of a ledger's jobs, and ``/metrics`` for Prometheus.

Optional extra (``pip install 'caftm[dashboard]'``: starlette, uvicorn, prometheus_client).
The page's scripts and styles ship in the package (uPlot, MIT, vendored): it works offline.

>>> from caftm.dashboard import DashboardServer, ServeOptions
>>> # DashboardServer(ServeOptions(db=Path("ledger.sqlite"), port=0)).serve()
"""

from __future__ import annotations

from caftm.dashboard.server import (
    DashboardServer,
    ServeOptions,
    is_loopback,
    read_token_file,
    resolve_token,
)

__all__ = ["DashboardServer", "ServeOptions", "is_loopback", "read_token_file", "resolve_token"]
