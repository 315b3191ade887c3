"""Derive the embedded typical-year profile statistics from the 2022 hourly data.

Usage: ``python scripts/build_profiles.py [--data ../shared/data] [--out src/caftm/signals/data]``

This builds the *embedded* set (its zone list comes from the cloud-region tables); users build
their own with ``caftm profiles build --from FILE… --out my_profiles.json``, which runs the same
estimation (:mod:`caftm.signals.profile_build`).

Reads ``carbon/ci_2022_hourly_lca_123zones.csv`` (Electricity Maps, ODbL) and the cloud-region
tables beside it, picks every zone hosting a GPU region of AWS, GCP or Azure (plus a fixed
list), estimates per-zone statistics, calibrates the hour-residual scale so generated years
reproduce the real mean daily amplitude, and writes ``profiles_2022.json``. Only statistics are
written, never the raw series. Rerunnable; the output is deterministic.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from caftm.signals.profile_build import build_profile_set  # noqa: E402
from caftm.signals.profiles import (  # noqa: E402
    PROFILE_FILE,
    ZoneProfile,
    daily_amplitude,
    generate_year,
)
from caftm.signals.traces import load_trace  # noqa: E402

YEAR = 2022
#: Always shipped (the issue's list) ...
REQUIRED = [
    "KR",
    "JP-TK",
    "JP-KN",
    "FR",
    "DE",
    "GB",
    "CA-ON",
    "CA-QC",
    "US-CAL-CISO",
    "US-MIDA-PJM",
    "SE-SE3",
    "SG",
    "IN-WE",
]
#: ... and zones of GPU regions not (or wrongly) in the tables: AWS eu-north-1 / Azure
#: swedencentral (SE-SE3), Azure norwaywest (NO-NO2), Azure/AWS India (IN-WE, IN-SO absent),
#: Azure westus2 (US-NW-BPAT), centralus / GCP us-central1 (US-MIDW-MISO), israelcentral (IL),
#: Azure Denmark (DK-DK2), AWS ap-southeast-4 (AU-VIC), AWS eu-south-2 (ES).
EXTRA = [
    "SE-SE3",
    "NO-NO1",
    "NO-NO2",
    "IN-MH",
    "IN-UP",
    "IN-WE",
    "US-NW-BPAT",
    "US-NW-PACW",
    "US-MIDW-MISO",
    "US-MIDW-AECI",
    "IL",
    "DK-DK2",
    "AU-VIC",
    "AU-NSW",
    "ES",
    "IE",
    "NL",
    "PL",
    "ZA",
    "TW",
    "HK",
    "ID",
    "US-TEX-ERCO",
    "US-SW-AZPS",
    "US-CENT-SWPP",
]
#: Names in the GCP map that differ from the Electricity Maps zone ids.
RENAMES = {"AUS-NSW": "AU-NSW", "AUS-VIC": "AU-VIC", "IN-DL": "IN-UP"}


def pick_zones(data: Path, available: list[str]) -> list[str]:
    """Zones with an AWS, GCP or Azure presence, plus :data:`REQUIRED` and :data:`EXTRA`."""
    regions = data / "carbon" / "cloud_regions"
    wanted: set[str] = set(REQUIRED) | set(EXTRA)
    with (regions / "data_regions.csv").open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            if any((row.get(p) or "").strip() == "1" for p in ("aws", "azure", "gcp")):
                wanted.add(row["zone_code"].strip())
    gcp = json.loads((regions / "gcp_dc_zonecode_mapper.json").read_text())
    wanted |= {RENAMES.get(zone, zone) for zone in gcp.values()}
    missing = sorted(z for z in wanted if z and z not in available)
    if missing:
        print(f"not in the {YEAR} data, skipped: {', '.join(missing)}")
    absent_required = [z for z in REQUIRED if z not in available]
    if absent_required:
        raise SystemExit(f"error: required zones absent from the data: {absent_required}")
    return sorted(z for z in wanted if z in available)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "caftm" / "signals" / "data")
    args = parser.parse_args()
    trace = load_trace(args.data / "carbon" / "ci_2022_hourly_lca_123zones.csv")
    if trace.step_s != 3600 or trace.start.year != YEAR or trace.n_steps < 8760 or trace.gaps():
        raise SystemExit("error: expected a complete hourly 2022 trace")
    zones = pick_zones(args.data, trace.zones())
    document, skipped = build_profile_set(
        trace,
        zones=zones,
        year=YEAR,
        description="Typical-year statistics of hourly lifecycle carbon intensity "
        "(gCO2eq/kWh, UTC), derived by scripts/build_profiles.py; synthetic traces are "
        "generated from them by caftm.signals.profiles.",
        attribution="Electricity Maps (https://www.electricitymaps.com), 2022 hourly data, "
        "ODbL 1.0; see NOTICE.md",
    )
    if skipped:
        raise SystemExit(f"error: {'; '.join(skipped)}")
    stats = document["zones"]
    print(f"{'zone':14s} {'mean':>8s} {'amp':>8s} {'gen mean':>9s} {'gen amp':>8s} {'scale':>6s}")
    for zone in zones:
        profile = ZoneProfile.from_dict(zone, stats[zone])
        check = generate_year(profile, YEAR, 99)
        print(
            f"{zone:14s} {profile.yearly_mean:8.1f} {profile.daily_amplitude:8.1f} "
            f"{check.mean():9.1f} {daily_amplitude(check):8.1f} {profile.noise_scale:6.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / PROFILE_FILE
    out.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {len(stats)} zones)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
