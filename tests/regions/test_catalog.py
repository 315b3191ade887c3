"""The region catalog: shipped data, look-ups, custom sites and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tests.conftest import shared_file

from caftm.errors import ConfigError, DataError
from caftm.regions import Catalog, Region, haversine_km, known_zones, load_sites

# Regions offering GPU instances (the list, plus GCP's GPU regions).
GPU_REGIONS = {
    "aws": [
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1",
        "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2",
        "eu-north-1", "eu-south-1", "eu-south-2", "ap-northeast-1", "ap-northeast-2",
        "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
        "ap-southeast-4", "ap-south-1", "ap-south-2", "sa-east-1", "me-central-1",
        "il-central-1", "af-south-1",
    ],
    "gcp": [
        "us-central1", "us-east1", "us-east4", "us-east5", "us-west1", "us-west2",
        "us-west4", "northamerica-northeast1", "southamerica-east1", "europe-west1",
        "europe-west2", "europe-west3", "europe-west4", "europe-central2", "asia-east1",
        "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1",
        "asia-southeast2", "australia-southeast1",
    ],
    "azure": [
        "eastus", "eastus2", "westus2", "westus3", "southcentralus", "northcentralus",
        "centralus", "westeurope", "northeurope", "uksouth", "francecentral",
        "germanywestcentral", "swedencentral", "norwayeast", "switzerlandnorth", "japaneast",
        "japanwest", "koreacentral", "australiaeast", "southeastasia", "centralindia",
        "canadacentral", "canadaeast", "brazilsouth", "uaenorth", "qatarcentral",
    ],
}  # fmt: skip

# Zones the 2022 data does not cover; they must be in the shipped known-zones list instead.
ZONES_OUTSIDE_2022_DATA = {
    "AE",
    "BH",
    "CA-AB",
    "IN-NO",
    "IN-SO",
    "MX-OC",
    "MY-WM",
    "QA",
    "SA",
    "TH",
}
# Electricity Maps renamed these since the GCP map was made; the catalog uses today's ids.
RENAMED_ZONES = {"AUS-NSW": "AU-NSW", "AUS-VIC": "AU-VIC", "IN-DL": "IN-NO", "IN-MH": "IN-WE"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load_default()


def zones_in_2022_data() -> set[str]:
    path = shared_file("carbon/ci_2022_hourly_lca_123zones.csv")
    with path.open(encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    return set(header[1:])


def test_every_gpu_region_of_each_provider_is_present(catalog: Catalog) -> None:
    for provider, region_ids in GPU_REGIONS.items():
        gpu_ids = {r.region_id for r in catalog.regions(provider, gpu_only=True)}
        missing = sorted(set(region_ids) - gpu_ids)
        assert not missing, f"{provider} GPU regions missing or not flagged: {missing}"


def test_every_region_zone_is_known_and_in_2022_data_when_available(catalog: Catalog) -> None:
    data_zones = zones_in_2022_data()
    shipped = known_zones()
    assert data_zones <= set(shipped), sorted(data_zones - set(shipped))
    for region in catalog:
        assert region.zone in shipped, region
        if region.zone not in data_zones:
            assert region.zone in ZONES_OUTSIDE_2022_DATA, region


def test_gcp_regions_follow_the_shared_zone_map(catalog: Catalog) -> None:
    mapping = json.loads(
        shared_file("carbon/cloud_regions/gcp_dc_zonecode_mapper.json").read_text()
    )
    for region_id, zone in mapping.items():
        assert catalog.get("gcp", region_id).zone == RENAMED_ZONES.get(zone, zone), region_id


def test_zones_with_a_cloud_presence_in_shared_table_are_hosted(catalog: Catalog) -> None:
    path = shared_file("carbon/cloud_regions/data_regions.csv")
    with path.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    hosted = set(catalog.zones())
    # Zones the table gives two or more of the three providers; single marks there are noisy.
    multi = {
        r["zone_code"]
        for r in rows
        if r["zone_code"] and sum(r[p] == "1" for p in ("aws", "azure", "gcp")) >= 2
    }
    assert multi, "expected some zones with several providers"
    # Deliberate departures: Mumbai/Pune lie in IN-WE (today's id for IN-MH); AWS and Azure's
    # Swedish regions (Stockholm area, Gävle) are in bidding zone SE3, not SE1; the Iowa regions
    # are placed in MISO (Azure, Des Moines) and SWPP (GCP, as the GCP map says), not AECI.
    departures = {"IN-MH", "SE-SE1", "US-MIDW-AECI"}
    assert multi - departures <= hosted, sorted(multi - departures - hosted)
    assert {"IN-WE", "SE-SE3", "US-MIDW-MISO"} <= hosted


def test_regions_are_sane(catalog: Catalog) -> None:
    assert set(catalog.providers()) == {"aws", "azure", "gcp"}
    assert len(catalog) >= 100
    keys = [r.key for r in catalog]
    assert len(keys) == len(set(keys))
    for region in catalog:
        assert region.name and region.city and len(region.country) == 2, region


def test_known_locations(catalog: Catalog) -> None:
    paris = catalog.get("aws", "eu-west-3")
    assert (paris.zone, paris.city, paris.country) == ("FR", "Paris", "FR")
    assert catalog.get("gcp", "asia-northeast3").zone == "KR"
    assert catalog.get("azure", "canadacentral").zone == "CA-ON"
    assert catalog.get("azure", "japaneast").zone == "JP-TK"
    # Same city, three providers: within a few km of each other.
    tokyo = [
        catalog.get(p, r)
        for p, r in [("aws", "ap-northeast-1"), ("gcp", "asia-northeast1"), ("azure", "japaneast")]
    ]
    assert max(tokyo[0].distance_km(t) for t in tokyo) < 20


def test_lookups(catalog: Catalog) -> None:
    assert catalog.resolve("aws:eu-west-3") == catalog.get("AWS", " eu-west-3")
    assert catalog.resolve("europe-west1").key == "gcp:europe-west1"
    assert catalog.zone_of("gcp:europe-west1") == "BE"
    assert catalog.zone_of("eu-west-3") == "FR"
    assert catalog.zone_of("jp-tk") == "JP-TK"
    assert catalog.zone_of("US-NW-AVA", strict=False) == "US-NW-AVA"
    paris_keys = {r.key for r in catalog.by_zone("FR")}
    assert {"aws:eu-west-3", "gcp:europe-west9", "azure:francecentral"} <= paris_keys
    assert catalog.by_zone("UY") == []
    assert "KR" in catalog.zones() and "UY" not in catalog.zones()
    assert "UY" in catalog.zones(hosted_only=False)
    assert catalog.zone_name("JP-TK") == "Tokyo"
    gpu_aws = catalog.regions("aws", gpu_only=True)
    assert gpu_aws and all(r.has_gpu and r.provider == "aws" for r in gpu_aws)
    assert len(gpu_aws) < len(catalog.regions("aws"))


def test_haversine_known_distances() -> None:
    assert haversine_km(0, 0, 0, 0) == 0
    # Paris-London about 344 km; a quarter of the equator about 10,008 km.
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(344, rel=0.01)
    assert haversine_km(0, 0, 0, 90) == pytest.approx(10_008, rel=0.001)
    assert haversine_km(10, 20, -30, 40) == pytest.approx(haversine_km(-30, 40, 10, 20))


def test_nearest(catalog: Catalog) -> None:
    ((region, distance_km),) = catalog.nearest(37.5, 127.0, provider="gcp")
    assert region.key == "gcp:asia-northeast3" and distance_km < 20
    ranked = catalog.nearest(48.86, 2.35, gpu_only=True, count=5)
    assert [d for _, d in ranked] == sorted(d for _, d in ranked)
    assert all(r.has_gpu for r, _ in ranked) and ranked[0][0].zone == "FR"
    assert catalog.distance_km("aws:eu-west-3", "aws:eu-west-2") == pytest.approx(344, rel=0.02)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda c: c.get("aws", "eu-west-33"), "eu-west-3"),
        (lambda c: c.get("azure", "eastus5"), "eastus"),
        (lambda c: c.get("awz", "eu-west-1"), "aws"),
        (lambda c: c.resolve("gcp:europe-wset1"), "europe-west1"),
        (lambda c: c.zone_of("FRR"), "FR"),
        (lambda c: c.zone_of("aws:nowhere-1"), "caftm regions"),
        (lambda c: c.by_zone("JP-TKK"), "JP-TK"),
        (lambda c: c.regions("oracle"), "aws, azure, gcp"),
    ],
)
def test_unknown_names_list_close_matches(catalog: Catalog, call, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        call(catalog)
    assert fragment in str(info.value)


def test_ambiguous_bare_region_id() -> None:
    base = Catalog.load_default()
    doubled = base.with_sites([{"name": "eu-west-3", "zone": "FR", "lat": 48.0, "lon": 2.0}])
    with pytest.raises(ConfigError, match="ambiguous"):
        doubled.resolve("eu-west-3")


def test_custom_sites_from_yaml(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n"
        "  - name: lab-seoul\n    zone: KR\n    latitude: 37.46\n    longitude: 126.95\n"
        "  - name: rack-montreal\n    zone: CA-QC\n    lat: 45.5\n    lon: -73.6\n"
        "    provider: colo\n    has_gpu: false\n    city: Montréal\n",
        encoding="utf-8",
    )
    sites = load_sites(path)
    assert [s.key for s in sites] == ["custom:lab-seoul", "colo:rack-montreal"]
    merged = catalog.with_sites(sites)
    assert len(merged) == len(catalog) + 2 and len(catalog) == len(Catalog.load_default())
    assert merged.resolve("custom:lab-seoul").zone == "KR"
    assert "custom:lab-seoul" in {r.key for r in merged.by_zone("KR")}
    assert merged.regions("custom")[0].has_gpu
    assert not merged.resolve("colo:rack-montreal").has_gpu
    nearest, distance_km = merged.nearest(37.46, 126.95)[0]
    assert nearest.key == "custom:lab-seoul" and distance_km == pytest.approx(0, abs=1e-6)


def test_custom_sites_from_dict_and_region_objects(catalog: Catalog) -> None:
    site = Region("custom", "home", "Home", "Lyon", "FR", "FR", 45.76, 4.84, True)
    merged = catalog.with_sites([site, {"name": "x", "zone": "DE", "latitude": 50, "longitude": 8}])
    assert merged.resolve("custom:home") is site
    assert merged.zone_of("custom:x") == "DE"


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("sites:\n  - name: a\n    zone: KRR\n    lat: 1\n    lon: 2\n", ConfigError, "KR"),
        ("sites:\n  - name: a\n    lat: 1\n    lon: 2\n", ConfigError, "missing 'zone'"),
        ("sites:\n  - name: a\n    zone: KR\n    lat: 95\n    lon: 2\n", ConfigError, "latitude"),
        ("sites:\n  - name: a\n    zone: KR\n    lat: north\n    lon: 2\n", ConfigError, "number"),
        ("sites: [unclosed\n", DataError, "not valid YAML"),
        ("sites: 3\n", ConfigError, "list of sites"),
        ("", ConfigError, "empty"),
        (
            "sites:\n  - {name: a, zone: KR, lat: 1, lon: 2}\n"
            "  - {name: a, zone: FR, lat: 1, lon: 2}\n",
            ConfigError,
            "twice",
        ),
    ],
)
def test_bad_sites_files(tmp_path: Path, catalog: Catalog, text: str, error, fragment) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error) as info:
        catalog.with_sites(load_sites(path))
    assert fragment in str(info.value)


def test_missing_sites_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read sites file"):
        load_sites(tmp_path / "absent.yaml")


def test_malformed_catalog_csv_names_the_line(tmp_path: Path) -> None:
    good = (Path(__file__).resolve().parents[2] / "src/caftm/regions/data/regions.csv").read_text(
        encoding="utf-8"
    )
    lines = good.splitlines()
    lines[3] = lines[3].replace(",true", ",maybe")
    path = tmp_path / "regions.csv"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"line 4: has_gpu 'maybe'"):
        Catalog.from_csv(path)
    path.write_text("provider,region_id\naws,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column"):
        Catalog.from_csv(path)
    lines = good.splitlines()
    lines[5] = lines[5].replace("45.50", "lat")
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match="line 6: latitude 'lat' is not a number"):
        Catalog.from_csv(path)
    path.write_text(good, encoding="utf-8")
    assert len(Catalog.from_csv(path)) == len(Catalog.load_default())
