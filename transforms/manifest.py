"""The per-scene manifest: what was computed, from what, and whether it is finished.

A scene is finished exactly when its manifest exists and records the same input
fingerprint and parameter digest: the manifest is committed after the mosaic and the
quicklook, so its presence means they are complete.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Optional, Tuple

from transforms import storage

MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The content of ``<scene>/manifest.json`` (JSON keys as the attribute names;
    ``workers``: tiles computed per ``host:pid``; ``item``: for a STAC item, its id,
    datetime, collection and the hrefs of the assets read; ``run_id``: the run that
    wrote it)."""

    scene_id: str
    input: str
    fingerprint: str
    params: dict
    params_digest: str
    bands: List[int]
    quantization: Dict[str, List[float]]
    band_names: List[str]
    size: List[int]
    pixels: int
    crs: Optional[str]
    transform: List[float]
    warnings: List[str]
    tiles: int
    outputs: List[str]
    versions: Dict[str, str]
    timings: Dict[str, object]
    workers: Dict[str, int] = dataclasses.field(default_factory=dict)
    item: Dict[str, object] = dataclasses.field(default_factory=dict)
    run_id: str = ""

    def is_finished(self, fingerprint: str, params_digest: str) -> bool:
        """True when this manifest describes the same input computed with the same
        parameters: a rerun skips the scene."""
        return self.fingerprint == fingerprint and self.params_digest == params_digest

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, uri: str) -> None:
        """Commits the manifest atomically (local rename or one upload)."""
        storage.write_bytes(uri, json.dumps(self.to_json(), indent=2,
                                            sort_keys=True).encode())

    @classmethod
    def read(cls, uri: str) -> Optional["Manifest"]:
        """The manifest at ``uri``; None if there is none, or it is unreadable or of
        another layout (the scene is then computed again)."""
        try:
            content = json.loads(storage.read_bytes(uri))
            # fields with a default were added later: older manifests lack them
            return cls(**{f.name: content[f.name] for f in dataclasses.fields(cls)
                          if f.name in content or (f.default is dataclasses.MISSING and
                                                   f.default_factory is dataclasses.MISSING)})
        except (OSError, ValueError, KeyError, TypeError):
            return None


def manifest_uri(output: str, scene_id: str) -> str:
    return storage.join(output, scene_id, MANIFEST_NAME)


def finished_state(output: str, scene_id: str, fingerprint: str,
                   params_digest: str) -> Tuple[Optional[Manifest], bool]:
    """(the scene's manifest or None, whether it says the scene is finished)."""
    manifest = Manifest.read(manifest_uri(output, scene_id))
    return manifest, manifest is not None and manifest.is_finished(fingerprint,
                                                                   params_digest)
