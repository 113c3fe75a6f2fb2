"""Discover scenes while the job runs: the job graph holds only the ``--input``
patterns, so it is the same size for ten scenes or a hundred thousand, and listing
(and the entries of ``@lists``) is spread over the workers."""

from __future__ import annotations

from typing import Sequence

import apache_beam as beam

from transforms.errors import ERRORS_TAG, ErrorRecord
from transforms.metrics import counter
from transforms.scenes import (expand_lists, match_pattern, no_match_message, scene_id_for,
                               scenes_for)

NO_MATCH_ERROR = "NoRasterMatched"


class ExpandLists(beam.DoFn):
    """A pattern, or every entry of an ``@list`` (one element each); an unreadable
    list becomes an error record."""

    def process(self, pattern: str):
        try:
            yield from expand_lists(pattern)
        except Exception as exc:  # noqa: BLE001
            yield ErrorRecord.from_exception(pattern, None, "discover", exc).tagged()


class MatchEntries(beam.DoFn):
    """(uri, fingerprint) for every raster an entry matches; a named file that does
    not exist becomes an error record."""

    def process(self, entry: str):
        try:
            found, missing = match_pattern(entry)
        except Exception as exc:  # noqa: BLE001
            yield ErrorRecord.from_exception(entry, None, "discover", exc).tagged()
            return
        yield from found
        for uri, problem in missing:
            yield ErrorRecord(uri, None, "discover", "FileNotFoundError",
                              f"{problem}: check the path in the input list").tagged()


class NameScenes(beam.DoFn):
    """Scenes for the matches that share a base name: ids made unique exactly as
    :func:`transforms.scenes.unique_scene_ids` does for the whole collection (only
    inputs with the same base name can collide)."""

    def __init__(self):
        self.matched = counter("scenes_matched")

    def process(self, element):
        _, matches = element
        for scene in scenes_for(matches):
            self.matched.inc()
            yield scene


class DiscoverScenes(beam.PTransform):
    """``--input`` patterns -> Scenes.

    Args:
      patterns: globs, directories, files or ``@lists``, local or ``gs://``.

    Returns:
      {"scenes": Scene, "errors": ErrorRecord}: unreadable lists and named files that
      do not exist are records; so is an input that matched no raster at all.
    """

    def __init__(self, patterns: Sequence[str]):
        super().__init__()
        self.patterns = tuple(p for p in patterns if p)
        if not self.patterns:
            raise ValueError("no input given: pass --input with a glob, directory or @list")

    def expand(self, pbegin):
        listed = (pbegin | "Patterns" >> beam.Create(self.patterns)
                  | "ExpandLists" >> beam.ParDo(ExpandLists()).with_outputs(
                      ERRORS_TAG, main="entries"))
        matched = (listed.entries | "SpreadEntries" >> beam.Reshuffle()
                   | "Match" >> beam.ParDo(MatchEntries()).with_outputs(
                       ERRORS_TAG, main="matches"))
        scenes = (matched.matches
                  | "ByName" >> beam.Map(lambda match: (scene_id_for(match[0]), match))
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
                              no_match_message(self.patterns))
