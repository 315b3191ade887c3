"""Shared fixtures, and what the suite requires of the machine it runs on.

The suite expects ../shared/data, Chromium, PostgreSQL (Debian's package), Ray, SkyPilot, an S3
server (moto), the framework extras and root (to mount a small tmpfs). Where one is missing the
run fails at once with one line naming it, instead of turning green by skipping: a skip that
hides a missing part is a test that did not run. Developers who lack a part set
``CAFTM_TESTS_ALLOW_SKIPS=1``: the tests that need it then skip, each with its reason (``-ra``
lists them).

Skips that remain in a complete environment are those no CI machine can satisfy (a GPU; an
unwritable folder for root) and a conformance check that does not apply to a source; they
are listed in ``_SKIPS_THAT_MAY_REMAIN``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.postgres_support import PostgresServer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CAFTM_SHARED_DATA", REPO.parent / "shared" / "data"))
CHROMIUM = os.environ.get("CAFTM_CHROMIUM", "/usr/bin/chromium")
ALLOW_SKIPS_ENV = "CAFTM_TESTS_ALLOW_SKIPS"

#: reasons (substrings) a skip may give although the environment is complete
_SKIPS_THAT_MAY_REMAIN = (
    "GPU",  # no GPU on CI machines (tests marked gpu)
    "root writes anywhere",
    "fixed-data source",  # conformance checks that do not apply to a source
    "source gives no forecast",
    "source accepts any zone name",
)


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data, or skip the test with a clear reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} absent (looked in {SHARED_DATA}); set CAFTM_SHARED_DATA")
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data absent (looked in {SHARED_DATA})")
    return SHARED_DATA


def _missing_parts() -> list[str]:
    """What the suite needs and this machine lacks, one phrase each."""
    missing = []
    if not SHARED_DATA.is_dir():
        missing.append(f"the real data ../shared/data (looked in {SHARED_DATA})")
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and shutil.which("initdb") is None:
        missing.append("PostgreSQL's server programs (apt-get install postgresql)")
    modules = {
        "playwright": "playwright",
        "ray": "caftm[ray]",
        "sky": "caftm[skypilot]",
        "moto": "moto[server]",
        "s3fs": "caftm[s3]",
        "starlette": "caftm[dashboard]",
        "psycopg": "caftm[postgres]",
        "psycopg_pool": "caftm[postgres]",
        "lightning": "caftm[lightning]",
        "transformers": "caftm[huggingface]",
    }
    for module, extra in modules.items():
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {module} (pip install '{extra}')")
    if os.geteuid() != 0 or shutil.which("mount") is None:
        missing.append("root with `mount` (the full-disk test mounts a 12 kB tmpfs)")
    return missing


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(ALLOW_SKIPS_ENV) or hasattr(config, "workerinput"):
        return  # xdist workers: the controller checked already
    missing = _missing_parts()
    if missing:
        pytest.exit(
            f"the test suite needs {'; '.join(missing)} — provide them, or set "
            f"{ALLOW_SKIPS_ENV}=1 to skip the tests that need them",
            returncode=4,
        )


def _fail_unexpected_skip(report: Any) -> None:
    """Turn a skip that a complete environment should not produce into a failure."""
    if os.environ.get(ALLOW_SKIPS_ENV) or not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
    if not any(allowed in reason for allowed in _SKIPS_THAT_MAY_REMAIN):
        report.outcome = "failed"
        report.longrepr = f"skipped in a complete environment: {reason} (set {ALLOW_SKIPS_ENV}=1)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL cluster on 127.0.0.1 for this session (tests marked ``postgres``)."""
    from tests.postgres_support import SKIP_REASON, PostgresServer, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None or importlib.util.find_spec("psycopg") is None:
        pytest.skip(SKIP_REASON)
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ledger of each backend: a sqlite file, and a PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests on a real PostgreSQL server are marked ``postgres`` (``-m postgres`` runs them)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("ledger_location") if callspec is not None else None
        if backend == "postgres" or ("postgres_server" in names and backend is None):
            item.add_marker(pytest.mark.postgres)
