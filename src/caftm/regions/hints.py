"""The one "did you mean" hint for unknown names (zones, regions, providers), shared by the
region catalog and the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: At most this many suggestions.
MAX_SUGGESTIONS = 3
#: difflib similarity (0..1) a candidate needs to be suggested.
CUTOFF = 0.6


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ``" (did you mean A, B?)"`` hint naming the candidates closest to ``word``, or ``""``.

    Exact-case matches come first; when none is close, case is ignored (``frr`` → ``FR``).
    """
    pool = list(candidates)
    matches = difflib.get_close_matches(word, pool, n=MAX_SUGGESTIONS, cutoff=CUTOFF)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        close = difflib.get_close_matches(word.lower(), lowered, n=MAX_SUGGESTIONS, cutoff=CUTOFF)
        matches = [lowered[m] for m in close]
    return f" (did you mean {', '.join(matches)}?)" if matches else ""
