"""Named model choices (``profile="fast"``): the detector and embedder a pipeline uses, picked by measurement."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInputError
from .manifest import DEFAULT_DETECTOR, DEFAULT_EMBEDDER


@dataclass(frozen=True)
class Profile:
    """A profile: which detector and embedder it stands for, and why."""

    name: str
    detector: str
    embedder: str
    description: str


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("default", DEFAULT_DETECTOR, DEFAULT_EMBEDDER, "YuNet + SFace: the most accurate single model (LFW 99.38 %)"),
        Profile(
            "fast",
            DEFAULT_DETECTOR,
            "faceplugin-512",
            "YuNet + faceplugin-512: about half of SFace's embedding time, LFW 99.07 % (benchmarks/speed.py --profile "
            "fast); its templates are not comparable with SFace's",
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``invalid_input`` for an unknown one)."""
    profile = PROFILES.get(name)
    if profile is None:
        raise InvalidInputError("invalid_input", f"unknown profile {name!r}; choose from {', '.join(sorted(PROFILES))}")
    return profile


def apply_profile(profile: str | None, detector: str, embedder: str) -> tuple[str, str]:
    """Detector and embedder names after a profile fills in those left at the defaults (explicit choices win)."""
    if profile is None:
        return detector, embedder
    chosen = get_profile(profile)
    return (chosen.detector if detector == DEFAULT_DETECTOR else detector,
            chosen.embedder if embedder == DEFAULT_EMBEDDER else embedder)
