"""Cloud regions and custom sites, each placed in an Electricity Maps grid zone.

The shipped catalog (``data/regions.csv``) lists the AWS, GCP and Azure regions — every one
that offers GPUs and most of the others — with city, coordinates and grid zone. Zone ids are
Electricity Maps zone keys, validated against ``data/zones.csv``. Custom sites (an on-premises
cluster, a colocation rack) come from a small YAML or dict config and are merged in with
:meth:`Catalog.with_sites`.

Region references are written ``provider:region_id`` (``aws:eu-west-3``, ``gcp:europe-west1``);
a bare region id is accepted where it names exactly one region.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from caftm.errors import ConfigError, DataError
from caftm.regions.hints import did_you_mean

__all__ = [
    "CLOUD_PROVIDERS",
    "CUSTOM_PROVIDER",
    "Catalog",
    "Region",
    "Site",
    "haversine_km",
    "known_zones",
    "load_sites",
    "sites_from_config",
]

logger = logging.getLogger(__name__)

#: Providers the shipped catalog covers.
CLOUD_PROVIDERS: tuple[str, ...] = ("aws", "azure", "gcp")
#: Provider name given to sites from a config that name none.
CUSTOM_PROVIDER = "custom"

_EARTH_RADIUS_KM = 6371.0088
_REGION_COLUMNS = (
    "provider",
    "region_id",
    "name",
    "city",
    "country",
    "zone",
    "latitude_deg",
    "longitude_deg",
    "has_gpu",
)
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


@dataclass(frozen=True, slots=True)
class Region:
    """A place training can run: a cloud region or a custom site.

    Attributes:
        provider: ``aws``, ``gcp``, ``azure`` or a custom site's provider (``custom``).
        region_id: The provider's id (``eu-west-3``) or the site's name.
        name: Display name (``Europe (Paris)``).
        city: Nearest city.
        country: ISO 3166-1 alpha-2 country code (may be empty for custom sites).
        zone: Electricity Maps grid zone id (``FR``).
        latitude_deg: Latitude in degrees, north positive.
        longitude_deg: Longitude in degrees, east positive.
        has_gpu: Whether GPU instances are offered there.
    """

    provider: str
    region_id: str
    name: str
    city: str
    country: str
    zone: str
    latitude_deg: float
    longitude_deg: float
    has_gpu: bool

    def __post_init__(self) -> None:
        where = f"region {self.provider}:{self.region_id}"
        if not self.provider or not self.region_id:
            raise ConfigError(f"{where}: provider and region id must not be empty")
        if not (-90.0 <= self.latitude_deg <= 90.0):
            raise ConfigError(f"{where}: latitude {self.latitude_deg} is outside -90..90 degrees")
        if not (-180.0 <= self.longitude_deg <= 180.0):
            raise ConfigError(
                f"{where}: longitude {self.longitude_deg} is outside -180..180 degrees"
            )

    @property
    def key(self) -> str:
        """The reference ``provider:region_id``."""
        return f"{self.provider}:{self.region_id}"

    def distance_km(self, other: Region) -> float:
        """Great-circle distance to ``other`` in kilometres."""
        return haversine_km(
            self.latitude_deg, self.longitude_deg, other.latitude_deg, other.longitude_deg
        )


#: A custom site is a :class:`Region` whose provider is usually ``custom``.
Site = Region


def haversine_km(lat1_deg: float, lon1_deg: float, lat2_deg: float, lon2_deg: float) -> float:
    """Great-circle distance in kilometres between two points given in degrees."""
    phi1, phi2 = math.radians(lat1_deg), math.radians(lat2_deg)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2_deg - lon1_deg)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2.0 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _read_data(name: str) -> tuple[str, str]:
    """Text of a shipped data file and a label naming it."""
    resource = resources.files("caftm.regions").joinpath("data", name)
    return resource.read_text(encoding="utf-8"), f"caftm/regions/data/{name}"


def known_zones() -> dict[str, str]:
    """Zone id → display name of every zone the catalog accepts (shipped ``zones.csv``)."""
    return dict(_known_zones())


@functools.cache
def _known_zones() -> dict[str, str]:
    text, label = _read_data("zones.csv")
    zones: dict[str, str] = {}
    for line_no, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        zone = (row.get("zone") or "").strip()
        if not zone:
            raise DataError(f"{label} line {line_no}: empty zone id")
        zones[zone] = (row.get("name") or "").strip()
    return zones


def _parse_bool(text: str, *, where: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise DataError(f"{where}: has_gpu {text!r} is not true/false")


def _parse_float(text: str, *, what: str, where: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: {what} {text!r} is not a number") from e


def _regions_from_csv(text: str, label: str) -> list[Region]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _REGION_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{label}: missing column(s) {', '.join(missing)}")
    regions = []
    for line_no, row in enumerate(reader, start=2):
        where = f"{label} line {line_no}"
        try:
            regions.append(
                Region(
                    provider=row["provider"].strip().lower(),
                    region_id=row["region_id"].strip(),
                    name=row["name"].strip(),
                    city=row["city"].strip(),
                    country=row["country"].strip(),
                    zone=row["zone"].strip(),
                    latitude_deg=_parse_float(row["latitude_deg"], what="latitude", where=where),
                    longitude_deg=_parse_float(row["longitude_deg"], what="longitude", where=where),
                    has_gpu=_parse_bool(row["has_gpu"], where=where),
                )
            )
        except DataError:
            raise
        except ConfigError as e:
            raise DataError(f"{where}: {e}") from e
    return regions


def sites_from_config(
    config: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, where: str = "sites config"
) -> list[Region]:
    """Custom sites from a config: ``{"sites": [...]}`` or a list of site mappings.

    Each site has ``name`` and ``zone``, ``latitude``/``longitude`` in degrees (or
    ``latitude_deg``/``longitude_deg``), and optionally ``provider`` (default ``custom``),
    ``display_name``, ``city``, ``country`` and ``has_gpu`` (default true).

    Raises:
        ConfigError: a site lacks a field or holds a bad value.
    """
    entries: Any = config.get("sites") if isinstance(config, Mapping) else config
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise ConfigError(f"{where}: expected a list of sites under 'sites'")
    sites = []
    for index, entry in enumerate(entries, start=1):
        label = f"{where} site #{index}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{label}: expected a mapping with name, zone, latitude, longitude")
        sites.append(_site(entry, label))
    return sites


def _site(entry: Mapping[str, Any], label: str) -> Region:
    def field_of(*names: str) -> Any:
        for name in names:
            if entry.get(name) is not None:
                return entry[name]
        raise ConfigError(f"{label}: missing '{names[0]}'; give name, zone, latitude, longitude")

    name = str(field_of("name")).strip()
    label = f"{label} ({name})"

    def number(*names: str) -> float:
        value = field_of(*names)
        if isinstance(value, bool):
            raise ConfigError(f"{label}: {names[0]} {value!r} is not a number")
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{label}: {names[0]} {value!r} is not a number") from e

    zone = str(field_of("zone")).strip()
    zones = _known_zones()
    if zone not in zones:
        raise ConfigError(
            f"{label}: unknown grid zone {zone!r}{did_you_mean(zone, zones)}; "
            "use an Electricity Maps zone id (run 'caftm zones --all')"
        )
    has_gpu = entry.get("has_gpu", True)
    if not isinstance(has_gpu, bool):
        raise ConfigError(f"{label}: has_gpu {has_gpu!r} must be true or false")
    try:
        return Region(
            provider=str(entry.get("provider") or CUSTOM_PROVIDER).strip().lower(),
            region_id=name,
            name=str(entry.get("display_name") or name),
            city=str(entry.get("city") or ""),
            country=str(entry.get("country") or ""),
            zone=zone,
            latitude_deg=number("latitude", "latitude_deg", "lat"),
            longitude_deg=number("longitude", "longitude_deg", "lon"),
            has_gpu=has_gpu,
        )
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from e


def load_sites(path: str | Path) -> list[Region]:
    """Custom sites from a YAML (or JSON) file; see :func:`sites_from_config`.

    Raises:
        ConfigError: the file is missing.
        DataError: the file is not UTF-8 or not valid YAML.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read sites file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DataError(
            f"sites file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from e
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"sites file {path}{at} is not valid YAML; fix its syntax") from e
    if config is None:
        raise ConfigError(f"sites file {path} is empty; list sites under 'sites:'")
    return sites_from_config(config, where=f"sites file {path}")


class Catalog:
    """The regions and sites caftm knows, looked up by reference or by zone; immutable.

    Build it with :meth:`load_default` and extend it with :meth:`with_sites`.

    Args:
        regions: The regions and sites.
        zones: Known zone id → display name; every region's zone must be one of them.

    Raises:
        ConfigError: a region is defined twice or lies in an unknown zone.
    """

    def __init__(self, regions: Iterable[Region], zones: Mapping[str, str]) -> None:
        self._regions = tuple(regions)
        self._zones = dict(zones)
        by_key: dict[str, Region] = {}
        for region in self._regions:
            if region.key in by_key:
                raise ConfigError(
                    f"region {region.key} is defined twice; give each site a unique name"
                )
            if region.zone not in self._zones:
                raise ConfigError(
                    f"region {region.key}: unknown grid zone {region.zone!r}"
                    f"{did_you_mean(region.zone, self._zones)}; use an Electricity Maps zone id"
                )
            by_key[region.key] = region
        self._by_key = by_key

    @classmethod
    def load_default(cls) -> Catalog:
        """The shipped AWS, GCP and Azure catalog."""
        return _default_catalog()

    @classmethod
    def from_csv(cls, path: str | Path) -> Catalog:
        """A catalog read from a CSV with the shipped file's columns.

        Raises:
            ConfigError: the file cannot be read.
            DataError: a row is malformed (the message names the line).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")  # -sig: drop a spreadsheet's BOM
        except OSError as e:
            raise ConfigError(f"cannot read region catalog {path}: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise DataError(f"region catalog {path} is not UTF-8 text (byte {e.start})") from e
        return cls(tuple(_regions_from_csv(text, str(path))), known_zones())

    def with_sites(self, sites: Iterable[Region | Mapping[str, Any]]) -> Catalog:
        """A new catalog with custom ``sites`` (Regions or site mappings) added."""
        added = [
            s if isinstance(s, Region) else _site(s, f"site {s.get('name', '?')!s}") for s in sites
        ]
        return Catalog(self._regions + tuple(added), self._zones)

    def providers(self) -> list[str]:
        """Providers present, sorted."""
        return sorted({r.provider for r in self._regions})

    def regions(self, provider: str | None = None, *, gpu_only: bool = False) -> list[Region]:
        """Regions, optionally of one provider and only those with GPUs, in catalog order.

        Raises:
            ConfigError: ``provider`` is unknown.
        """
        if provider is not None:
            provider = self._check_provider(provider)
        return [
            r
            for r in self._regions
            if (provider is None or r.provider == provider) and (r.has_gpu or not gpu_only)
        ]

    def get(self, provider: str, region_id: str) -> Region:
        """The region ``region_id`` of ``provider``.

        Raises:
            ConfigError: unknown provider or region (the message lists close matches).
        """
        provider = self._check_provider(provider)
        region = self._by_key.get(f"{provider}:{region_id.strip()}")
        if region is None:
            ids = [r.region_id for r in self._regions if r.provider == provider]
            raise ConfigError(
                f"unknown {provider} region {region_id!r}{did_you_mean(region_id, ids)}; "
                f"run 'caftm regions --provider {provider}' to list them"
            )
        return region

    def resolve(self, reference: str) -> Region:
        """The region named ``provider:region_id``, or a bare region id naming one region.

        Raises:
            ConfigError: unknown or ambiguous reference.
        """
        text = reference.strip()
        if ":" in text:
            provider, _, region_id = text.partition(":")
            return self.get(provider, region_id)
        found = [r for r in self._regions if r.region_id == text]
        if len(found) == 1:
            return found[0]
        if found:
            keys = ", ".join(r.key for r in found)
            raise ConfigError(f"region {text!r} is ambiguous; write one of {keys}")
        raise ConfigError(
            f"unknown region {text!r}{did_you_mean(text, [r.key for r in self._regions])}; "
            "write it as provider:region, e.g. aws:eu-west-3"
        )

    def zone_of(self, reference: str, *, strict: bool = True) -> str:
        """Grid zone for a zone id or a region reference (``aws:eu-west-3``).

        A known zone is returned in its canonical spelling; a ``provider:region`` reference
        or a bare region id is resolved through the catalog. With ``strict=False`` any other
        text is returned as is (for live providers that know zones the catalog does not).

        Raises:
            ConfigError: unknown region reference, or (strict) neither a known zone nor a
                known region; the message lists close matches.
        """
        text = reference.strip()
        if ":" in text:
            return self.resolve(text).zone
        if text in self._zones:
            return text
        upper = {z.upper(): z for z in self._zones}
        if text.upper() in upper:
            return upper[text.upper()]
        if any(r.region_id == text for r in self._regions):
            return self.resolve(text).zone
        if not strict:
            return text
        raise ConfigError(
            f"unknown zone or region {text!r}{did_you_mean(text, self._zones)}; "
            "run 'caftm zones' or 'caftm regions' to list them"
        )

    def check_zone(self, zone: str) -> str:
        """``zone`` itself when known.

        Raises:
            ConfigError: unknown zone (lists close matches).
        """
        if zone not in self._zones:
            raise ConfigError(
                f"unknown grid zone {zone!r}{did_you_mean(zone, self._zones)}; "
                "run 'caftm zones' to list them"
            )
        return zone

    def by_zone(self, zone: str) -> list[Region]:
        """Regions and sites in grid ``zone`` (empty when none is hosted there).

        Raises:
            ConfigError: ``zone`` is not a known zone.
        """
        zone = self.check_zone(zone)
        return [r for r in self._regions if r.zone == zone]

    def zones(self, *, hosted_only: bool = True) -> list[str]:
        """Sorted zone ids: those hosting a region or site, or every known zone."""
        if hosted_only:
            return sorted({r.zone for r in self._regions})
        return sorted(self._zones)

    def zone_name(self, zone: str) -> str:
        """Display name of ``zone`` ('' when unnamed or unknown)."""
        return self._zones.get(zone, "")

    def nearest(
        self,
        latitude_deg: float,
        longitude_deg: float,
        *,
        provider: str | None = None,
        gpu_only: bool = False,
        count: int = 1,
    ) -> list[tuple[Region, float]]:
        """The ``count`` regions closest to a point, with their distances in km, nearest first."""
        candidates = self.regions(provider, gpu_only=gpu_only)
        ranked = sorted(
            (
                (r, haversine_km(latitude_deg, longitude_deg, r.latitude_deg, r.longitude_deg))
                for r in candidates
            ),
            key=lambda pair: pair[1],
        )
        return ranked[: max(0, count)]

    def distance_km(self, a: str, b: str) -> float:
        """Great-circle distance in km between two region references."""
        return self.resolve(a).distance_km(self.resolve(b))

    def __len__(self) -> int:
        return len(self._regions)

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions)

    def _check_provider(self, provider: str) -> str:
        name = provider.strip().lower()
        known = self.providers()
        if name not in known:
            raise ConfigError(
                f"unknown provider {provider!r}{did_you_mean(name, known)}; "
                f"choose one of {', '.join(known)}"
            )
        return name


@functools.cache
def _default_catalog() -> Catalog:
    text, label = _read_data("regions.csv")
    return Catalog(_regions_from_csv(text, label), known_zones())
