"""Geo arithmetic shared by both backends: great-circle distance and bounding boxes.

OpenSearch measures ``geo_distance`` (filter, sort, aggregation) as an arc on a sphere of the mean Earth
radius Lucene uses; the embedded backend has no geo type, so it prefilters with a lat/lon bounding box
(range queries on fast fields) and refines with exactly this haversine. Using the same radius in both
keeps a listing at 9.999 km inside a 10 km circle on either engine.
"""
from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0087714  # Lucene's GeoUtils.EARTH_MEAN_RADIUS_METERS / 1000


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat, dlon = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def bounding_boxes(lat: float, lon: float, radius_km: float) -> list[tuple[float, float, float, float]]:
    """Boxes (lat_min, lat_max, lon_min, lon_max) that together contain the circle; two across the antimeridian.

    A superset by construction (plus a hair of slack for rounding): the exact distance decides afterwards.
    """
    slack = 1e-9
    angular = radius_km / EARTH_RADIUS_KM
    dlat = math.degrees(angular)
    lat_min, lat_max = lat - dlat - slack, lat + dlat + slack
    if lat_min <= -90 or lat_max >= 90:  # the circle covers a pole: every longitude
        return [(max(lat_min, -90.0), min(lat_max, 90.0), -180.0, 180.0)]
    ratio = math.sin(angular) / math.cos(math.radians(lat))
    if ratio >= 1:
        return [(lat_min, lat_max, -180.0, 180.0)]
    dlon = math.degrees(math.asin(ratio)) + slack
    lon_min, lon_max = lon - dlon, lon + dlon
    if lon_min < -180:
        return [(lat_min, lat_max, lon_min + 360, 180.0), (lat_min, lat_max, -180.0, lon_max)]
    if lon_max > 180:
        return [(lat_min, lat_max, lon_min, 180.0), (lat_min, lat_max, -180.0, lon_max - 360)]
    return [(lat_min, lat_max, lon_min, lon_max)]

