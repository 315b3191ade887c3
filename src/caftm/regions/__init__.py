"""caftm.regions: cloud regions and custom sites, each placed in a grid zone.

>>> from caftm.regions import Catalog
>>> Catalog.load_default().get("aws", "eu-west-3").zone
'FR'
"""

from __future__ import annotations

from caftm.regions.catalog import (
    CLOUD_PROVIDERS,
    CUSTOM_PROVIDER,
    Catalog,
    Region,
    Site,
    haversine_km,
    known_zones,
    load_sites,
    sites_from_config,
)

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
