"""Odd sites and catalog files: one clear error, or read as meant."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from caftm.errors import DataError
from caftm.regions import Catalog, load_sites


def test_a_sites_file_that_is_not_utf8_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_bytes(b"\x97\xff binary junk")
    with pytest.raises(DataError, match=r"sites file .*sites\.yaml is not UTF-8"):
        load_sites(path)


def test_a_catalog_csv_that_is_not_utf8_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "regions.csv"
    path.write_bytes(b"provider,region_id\n\x97\xff\n")
    with pytest.raises(DataError, match=r"region catalog .*regions\.csv is not UTF-8"):
        Catalog.from_csv(path)


def test_a_catalog_csv_saved_with_a_bom_reads_like_the_shipped_one(tmp_path: Path) -> None:
    text = resources.files("caftm.regions").joinpath("data", "regions.csv").read_text("utf-8")
    path = tmp_path / "regions.csv"
    path.write_text(text, encoding="utf-8-sig")
    assert len(Catalog.from_csv(path)) == len(Catalog.load_default())
