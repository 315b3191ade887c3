"""Run the benchmarks: ``python bench/run.py [NAME ...]``.

Each ``bench/NAME.py`` defines ``run() -> dict[str, float | int | str | bool]`` (flat keys).
The result is written to ``bench/results/NAME.json`` and printed as a table.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: no benchmark named {name!r} in {HERE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def main(names: list[str]) -> int:
    # NAME.py files are benchmarks; run.py and _helpers.py are not
    available = sorted(
        p.stem for p in HERE.glob("*.py") if p.stem != "run" and not p.stem.startswith("_")
    )
    names = names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    console = Console()
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        started = time.perf_counter()
        result = _load(name).run()
        result.setdefault("wall_s", round(time.perf_counter() - started, 2))
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        table = Table(title=f"bench {name} -> bench/results/{name}.json")
        table.add_column("key")
        table.add_column("value", justify="right")
        for key, value in sorted(result.items()):
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
