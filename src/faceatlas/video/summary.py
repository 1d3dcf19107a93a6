"""The "who appears when" table: per person (or anonymous unknown) the tracks and time ranges they were on screen."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..types import _r
from .pipeline import VideoEvent, segments


@dataclass(frozen=True)
class Appearances:
    """One row of the table: who (person id, or None with an anonymous label), their tracks and time ranges."""

    label: str
    person: str | None
    name: str | None
    tracks: tuple[int, ...]
    ranges: tuple[tuple[float, float], ...]

    @property
    def seconds(self) -> float:
        """Total time on screen."""
        return sum(b - a for a, b in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        """Serialise as a plain JSON object."""
        return {"label": self.label, "person": self.person, "name": self.name, "tracks": list(self.tracks),
                "ranges": [[_r(a, 3), _r(b, 3)] for a, b in self.ranges], "seconds": _r(self.seconds, 3)}


def appearance_table(events: Iterable[VideoEvent]) -> list[Appearances]:
    """Rows from the ``track_end`` events of an analysis, by first appearance (unidentified tracks: ``track-N``)."""
    rows: dict[str, tuple[str | None, str | None, list[int], list[tuple[float, float]]]] = {}
    for e in events:
        if e.kind != "track_end" or e.summary is None:
            continue
        d = e.decision
        label = (d.label if d is not None else None) or f"track-{e.track}"
        person, name = (d.person, d.name) if d is not None else (None, None)
        row = rows.setdefault(label, (person, name, [], []))
        row[2].append(e.track)
        row[3].extend(segments(e.summary))
    out = [Appearances(label, p, n, tuple(sorted(tr)), tuple(sorted(rg))) for label, (p, n, tr, rg) in rows.items()]
    return sorted(out, key=lambda r: r.ranges[0][0] if r.ranges else 0.0)
