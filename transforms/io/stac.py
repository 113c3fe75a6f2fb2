"""STAC input: Items and ItemCollections (a file, ``gs://``, or a saved
``pystac-client`` search) whose named assets are the bands of one scene each.

Read with the standard library's json: an Item is a GeoJSON Feature with
``stac_version``, ``id``, ``properties`` (``datetime``) and ``assets`` (name ->
``href``); an ItemCollection is a FeatureCollection of Items. Relative hrefs are
resolved against the JSON file's location.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import List, Sequence

from transforms.io import storage
from transforms.records import ParameterError, Scene

STAC_SUFFIXES = (".json", ".geojson")
REMOTE_SCHEMES = ("http://", "https://")


def is_stac_file(uri: str) -> bool:
    """Whether ``uri`` names a JSON file (read as STAC)."""
    return uri.lower().endswith(STAC_SUFFIXES)


def read_items(uri: str) -> List[dict]:
    """The Items of a STAC Item or ItemCollection JSON file.

    Raises:
      ValueError: unreadable, not JSON, or neither an Item nor a collection of Items.
    """
    try:
        content = json.loads(storage.read_bytes(uri))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the STAC file {uri!r}: {exc}") from exc
    if not isinstance(content, dict):
        raise ValueError(f"{uri} is not a STAC Item or ItemCollection (a JSON object)")
    if content.get("type") == "FeatureCollection":
        items = content.get("features") or []
    elif content.get("type") == "Feature":
        items = [content]
    else:
        raise ValueError(f"{uri} is not a STAC Item or ItemCollection: its type is "
                         f"{content.get('type')!r}, expected Feature or FeatureCollection")
    for item in items:
        if not isinstance(item, dict) or "id" not in item or "assets" not in item:
            raise ValueError(f"{uri} holds a feature without 'id' or 'assets': not a "
                             f"STAC Item")
    return items


def resolve_href(href: str, base_uri: str) -> str:
    """An asset href made absolute: relative ones are relative to the JSON file."""
    if href.startswith(REMOTE_SCHEMES) or storage.is_gcs(href) or href.startswith("/"):
        return href
    if href.startswith("file://"):
        return href[len("file://"):]
    folder = base_uri.rsplit("/", 1)[0] if "/" in base_uri else "."
    if storage.is_gcs(base_uri):
        return "gs://" + posixpath.normpath(posixpath.join(folder[len("gs://"):], href))
    return storage.normalize(posixpath.join(folder, href))


def _fingerprint(href: str, item: dict) -> str:
    """Size and modification (or generation) of a local or gs:// asset; for an
    http(s) asset, the item's ``updated`` (else ``datetime``) property and href."""
    if href.startswith(REMOTE_SCHEMES):
        stamp = item.get("properties", {}).get("updated") or \
            item.get("properties", {}).get("datetime") or ""
        return hashlib.sha1(f"{href}|{stamp}".encode()).hexdigest()[:16]
    found = storage.match(href)
    if not found:
        raise ValueError(f"asset file {href} of STAC item {item['id']!r} not found")
    return found[0][1]


def scene_for_item(item: dict, json_uri: str, assets: Sequence[str]) -> Scene:
    """The scene of one Item: the named assets, in order, are its bands.

    Raises:
      ValueError: an asset is missing from the item (the message lists those it
        has), or a local / gs:// asset file does not exist.
    """
    available = item.get("assets") or {}
    missing = [a for a in assets if a not in available]
    if missing:
        raise ParameterError("asset", f"STAC item {item['id']!r} in {json_uri} has no "
                                      f"asset {', '.join(repr(a) for a in missing)}; its "
                                      f"assets: {', '.join(sorted(available)) or 'none'}")
    pairs = []
    for name in assets:
        href = available[name].get("href") if isinstance(available[name], dict) else None
        if not href:
            raise ValueError(f"asset {name!r} of STAC item {item['id']!r} has no href")
        pairs.append((name, resolve_href(href, json_uri)))
    fingerprint = ";".join(_fingerprint(href, item) for _, href in pairs)
    properties = item.get("properties") or {}
    described = (("id", str(item["id"])), ("datetime", str(properties.get("datetime"))),
                 ("collection", str(item.get("collection"))))
    return Scene("", f"{json_uri}#{item['id']}", fingerprint, tuple(pairs), described)
