"""Discover scenes while the job runs: the job graph holds only the input
patterns, so it is the same size for ten scenes or a hundred thousand, and listing
(and the entries of ``@lists``) is spread over the workers."""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam

from transforms.errors import ERRORS_TAG, GuardedStep, tagged
from transforms.io.listing import expand_lists, match_pattern, no_match_message
from transforms.io.stac import is_stac_file, read_items, scene_for_item
from transforms.layout import scene_id_for, scenes_for
from transforms.metrics import counter
from transforms.records import ErrorRecord, ParameterError, Scene

NO_MATCH_ERROR = "NoRasterMatched"


class ExpandLists(GuardedStep):
    """A pattern, or every entry of an ``@list`` (one element each); an unreadable
    list becomes an error record."""

    STEP, STAGE = "discover", "discover"

    def run(self, pattern: str):
        yield from expand_lists(pattern)

    def where(self, pattern: str):
        return pattern, None


class MatchEntries(GuardedStep):
    """A Scene (not named yet) for every raster an entry matches, or for every item
    of a STAC file; a named file that does not exist, a STAC file without assets
    to read and an item that lacks an asset become error records."""

    STEP, STAGE = "discover", "discover"

    def __init__(self, assets: Sequence[str] = ()):
        super().__init__()
        self.assets = tuple(assets)

    def where(self, entry: str):
        return entry, None

    def run(self, entry: str):
        if is_stac_file(entry):
            yield from self._items(entry)
            return
        found, missing = match_pattern(entry)
        yield from (Scene("", uri, fingerprint) for uri, fingerprint in found)
        for uri, problem in missing:
            yield tagged(ErrorRecord(uri, None, "discover", "FileNotFoundError",
                                     f"{problem}: check the path in the input list"))

    def _items(self, uri: str):
        if not self.assets:
            raise ParameterError("asset", f"{uri} is a STAC file: name the assets to "
                                          f"read as bands (e.g. nir)")
        for item in read_items(uri):
            try:
                yield scene_for_item(item, uri, self.assets)
            except Exception as exc:  # noqa: BLE001 - one bad item, not the others
                yield tagged(ErrorRecord.from_exception(
                    f"{uri}#{item['id']}", scene_id_for(f"{uri}#{item['id']}"),
                    "discover", exc))


class NameScenes(beam.DoFn):
    """The scenes found that share a base name, named: ids made unique exactly as
    :func:`transforms.layout.unique_scene_ids` does for the whole collection (only
    inputs with the same base name can collide)."""

    def __init__(self):
        self.matched = counter("scenes_matched")

    def process(self, element):
        _, found = element
        for scene in scenes_for(found):
            self.matched.inc()
            yield scene


class DiscoverScenes(beam.PTransform):
    """Input patterns -> Scenes.

    Args:
      patterns: globs, directories, files, ``@lists`` or STAC JSON files, local or
        ``gs://``.
      assets: the STAC assets to read, in order, as the bands of each item.

    Returns:
      {"scenes": Scene, "errors": ErrorRecord}: unreadable lists and named files that
      do not exist are records; so is an input that matched no raster at all.
    """

    def __init__(self, patterns: Sequence[str], assets: Sequence[str] = ()):
        super().__init__()
        self.patterns = tuple(p for p in patterns if p)
        self.assets = tuple(assets)
        if not self.patterns:
            raise ParameterError("input", "no input given: a glob, directory, @list or "
                                          "STAC file")

    def expand(self, pbegin):
        listed = (pbegin | "Patterns" >> beam.Create(self.patterns)
                  | "ExpandLists" >> beam.ParDo(ExpandLists()).with_outputs(
                      ERRORS_TAG, main="entries"))
        matched = (listed.entries | "SpreadEntries" >> beam.Reshuffle()
                   | "Match" >> beam.ParDo(MatchEntries(self.assets)).with_outputs(
                       ERRORS_TAG, main="matches"))
        scenes = (matched.matches
                  | "ByName" >> beam.Map(lambda scene: (scene_id_for(scene.uri), scene))
                  | "SameName" >> beam.GroupByKey()
                  | "Name" >> beam.ParDo(NameScenes()))
        nothing = (scenes | "Count" >> beam.combiners.Count.Globally()
                   | "NothingMatched" >> beam.FlatMap(self._nothing_matched))
        errors = ((listed[ERRORS_TAG], matched[ERRORS_TAG], nothing)
                  | "DiscoverErrors" >> beam.Flatten())
        return {"scenes": scenes, "errors": errors}

    def _nothing_matched(self, count: int):
        if count == 0:
            yield ErrorRecord(", ".join(self.patterns), None, "discover", NO_MATCH_ERROR,
                              no_match_message(self.patterns), parameter="input")
