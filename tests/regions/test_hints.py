"""The shared "did you mean" hint."""

from __future__ import annotations

import pytest

from caftm.regions.hints import did_you_mean

ZONES = ["FR", "DE", "JP-TK", "JP-KN", "US-CAL-CISO"]


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("FRR", " (did you mean FR?)"),
        ("JP-TKK", " (did you mean JP-TK, JP-KN?)"),
        ("frr", " (did you mean FR?)"),  # no exact-case match: case is ignored
        ("us-cal-ciso", " (did you mean US-CAL-CISO?)"),
        ("XYZ-Q", ""),
        ("", ""),
    ],
)
def test_hint_names_the_closest_candidates(word: str, hint: str) -> None:
    assert did_you_mean(word, ZONES) == hint


def test_at_most_three_suggestions_from_any_iterable() -> None:
    many = (f"zone-{i}" for i in range(10))
    hint = did_you_mean("zone-", many)
    assert hint.startswith(" (did you mean zone-") and hint.count(",") == 2
    assert did_you_mean("FR", []) == ""
