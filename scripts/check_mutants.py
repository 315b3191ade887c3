"""Re-apply the mutations that once survived the suite (issue 16) and check each now fails a test.

Each mutation edits one line of the working tree, runs the tests that should catch it, and puts
the file back (also on Ctrl-C). Prints one line a mutation; exits 1 if any survives or no longer
applies (the code moved: update the mutation here).

    .venv/bin/python scripts/check_mutants.py [NAME-SUBSTRING ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (what it breaks, file, the line as it is, the line mutated, the tests that must catch it)
MUTATIONS = [
    ("dashboard accepts any ?token=", "src/caftm/dashboard/app.py",
     "if self._ok(query):", "if query is not None:", "tests/dashboard/test_server.py"),
    ("dashboard accepts any cookie", "src/caftm/dashboard/app.py",
     "self._ok(request.cookies.get(TOKEN_COOKIE))", "request.cookies.get(TOKEN_COOKIE) is not None",
     "tests/dashboard/test_server.py"),
    ("dashboard on loopback answers any Host (DNS rebinding)", "src/caftm/dashboard/app.py",
     "if hosts is not None:", "if False:", "tests/dashboard/test_server.py"),
    ("dashboard leaves ?token= in the address", "src/caftm/dashboard/app.py",
     'query = request.url.remove_query_params("token").query', "query = request.url.query",
     "tests/dashboard/test_server.py"),
    ("local executor's adopt() finds nothing", "src/caftm/jobs/executors/local.py",
     "return handle if self._same_process(handle) else None", "return None",
     "tests/jobs/test_outcomes.py"),
    ("a move recorded done is not finished after a restart", "src/caftm/jobs/recovery.py",
     "if last is not None and last.status is TransferStatus.DONE and last.dst_site != job.site:",
     "if False:", "tests/jobs/test_outcomes.py"),
    ("the simulator's forecast memo ignores the forecast mode", "src/caftm/sim/site_traces.py",
     "key = (mode, self.zones[row], col)", "key = (self.zones[row], col)", "tests/sim"),
    ("the engine does not decide again after a state-keeping action", "src/caftm/sim/engine.py",
     "if step.changed or step.actions:\n            continue",
     "if step.changed:\n            continue", "tests/sim"),
    ("the transfer's sha256 check after copying is gone", "src/caftm/checkpoint/_transfer_step.py",
     "good = good and (read_back or dst.sha256(dst_path)) == entry.sha256", "good = good",
     "tests/checkpoint/test_transfer.py"),
    ("Electricity Maps is not asked for the basis", "src/caftm/signals/electricitymaps.py",
     '"emissionFactorType": self.basis.value,', "", "tests/signals/test_electricitymaps.py"),
    ("Electricity Maps' answered basis is ignored", "src/caftm/signals/electricitymaps.py",
     "if factor_type in (Basis.LIFECYCLE.value, Basis.DIRECT.value):", "if False:",
     "tests/signals/test_electricitymaps.py"),
    ("a future UK period is labelled estimated", "src/caftm/signals/ukgrid.py",
     "kind = Kind.FORECAST if start > now else Kind.ESTIMATED", "kind = Kind.ESTIMATED",
     "tests/signals/test_ukgrid.py"),
]  # fmt: skip


def main(only: list[str]) -> int:
    bad = 0
    for name, path, line, mutated, tests in MUTATIONS:
        if only and not any(word in name for word in only):
            continue
        source = ROOT / path
        text = source.read_text(encoding="utf-8")
        if text.count(line) != 1:
            print(f"GONE     {name}: {path} no longer holds the line once; update this script")
            bad += 1
            continue
        source.write_text(text.replace(line, mutated), encoding="utf-8")
        try:
            run = subprocess.run(
                ["bash", str(ROOT / ".ci" / "isolated"), sys.executable, "-m", "pytest", "-q", "-x",
                 "-p", "no:cacheprovider", tests],
                cwd=ROOT, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
        finally:
            source.write_text(text, encoding="utf-8")
        failed = [row for row in run.stdout.splitlines() if row.startswith("FAILED")]
        if run.returncode == 0:
            print(f"SURVIVED {name} ({tests} passed)")
            bad += 1
        else:
            print(f"KILLED   {name}: {failed[0][7:] if failed else run.stdout.splitlines()[-1:]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
