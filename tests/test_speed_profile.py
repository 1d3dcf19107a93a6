"""The ``fast`` profile: which models it stands for, how explicit choices win, and the CLI's ``--profile``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lfw

from faceatlas.errors import InvalidInputError
from faceatlas.facade import FaceAtlas
from faceatlas.models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, PROFILES, get_profile


def test_profiles_name_real_models() -> None:
    from faceatlas.models.manifest import BUILTIN_MODELS

    names = {m.name for m in BUILTIN_MODELS}
    assert PROFILES["default"].embedder == DEFAULT_EMBEDDER and PROFILES["default"].detector == DEFAULT_DETECTOR
    for profile in PROFILES.values():
        assert profile.detector in names and profile.embedder in names
    assert PROFILES["fast"].embedder != DEFAULT_EMBEDDER
    with pytest.raises(InvalidInputError, match="unknown profile"):
        get_profile("fastest")


def test_fast_profile_picks_its_models_and_explicit_choices_win(models_dir: Path, lfw_dir: Path) -> None:
    fa = FaceAtlas(profile="fast", models_dir=models_dir)
    assert (fa.detector_name, fa.embedder_name) == (PROFILES["fast"].detector, PROFILES["fast"].embedder)
    face = fa.embed(lfw("Abel_Pacheco", 1), faces="one")[0]
    assert face.template is not None and face.template.model_id == PROFILES["fast"].embedder
    same = fa.verify(lfw("Abel_Pacheco", 1), lfw("Abel_Pacheco", 4))
    diff = fa.verify(lfw("Abel_Pacheco", 1), lfw("Aaron_Eckhart", 1))
    assert same.score > diff.score + 0.2
    assert FaceAtlas(profile="fast", embedder="sface+flip", models_dir=models_dir).model_id == "sface+flip"
    assert FaceAtlas(profile="default").embedder_name == DEFAULT_EMBEDDER
    with pytest.raises(InvalidInputError):
        FaceAtlas(profile="nope")


def test_cli_profile_option(models_dir: Path, lfw_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "faceatlas", "--models-dir", str(models_dir), "--profile", "fast", "embed",
         str(lfw("Abel_Pacheco", 1)), "--json"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    face = json.loads(out.stdout.splitlines()[0])["faces"][0]
    assert face["template"]["model_id"] == PROFILES["fast"].embedder and face["template"]["dim"] == 512
