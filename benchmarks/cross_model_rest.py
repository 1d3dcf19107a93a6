"""REST cross-model check: a server running `sface+flip` identifies against a collection enrolled with `sface`.

Both models make 128-d templates, so only the model id tells them apart. Before the one-spine redesign (c820ac8) the
REST identify path handed raw vectors to the gallery, which checked the dimension alone and answered 200 with scores;
now the gallery's one contract rule answers 409 ``model_mismatch``. The script runs against whatever ``faceatlas`` is
importable, so the old code can be checked too::

    python benchmarks/cross_model_rest.py                                  # this checkout: expect exit 0 (409)
    git worktree add /tmp/old c820ac8
    PYTHONPATH=/tmp/old/src python benchmarks/cross_model_rest.py          # old code: exit 1 (200 with scores)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient

import faceatlas
from faceatlas.gallery import Gallery
from faceatlas.recognition import Recognizer
from faceatlas.server.app import create_app
from faceatlas.server.keys import KeyStore
from faceatlas.server.service import Service
from faceatlas.server.settings import ServerSettings

try:
    from faceatlas.facade import FaceAtlas
except ImportError:  # the code before the redesign
    from faceatlas.atlas import FaceAtlas  # type: ignore[no-redef]

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "images" / "Colin_Powell"


def main() -> int:
    """Enrol with sface, identify over REST with sface+flip; exit 0 when refused with 409 model_mismatch."""
    print("code under test:", faceatlas.__file__)
    tmp = Path(tempfile.mkdtemp())
    base = FaceAtlas()
    rec = Recognizer(base, Gallery.open(tmp / "g.db"))
    rec.enroll("people", "colin", [LFW / "Colin_Powell_0001.jpg", LFW / "Colin_Powell_0002.jpg"])
    rec.close()
    keys = KeyStore(tmp / "keys.db")
    token = keys.create("read,enrol", ["people"], name="t")[1]
    settings = ServerSettings(rate_limit=0.0, warmup=False)
    flipped = FaceAtlas(embedder="sface+flip", store=base.store)
    svc = Service(settings, atlas=flipped, gallery=Gallery.open(tmp / "g.db"))
    with TestClient(create_app(settings, service=svc, keys=keys)) as client:
        image = (LFW / "Colin_Powell_0003.jpg").read_bytes()
        r = client.post("/v1/collections/people/identify", headers={"Authorization": f"Bearer {token}"},
                        files={"image": image})
    print("status", r.status_code, r.text[:300])
    refused = r.status_code == 409 and r.json()["error"]["code"] == "model_mismatch"
    print("PASS: refused with model_mismatch" if refused else "FAIL: another model's templates were searched")
    return 0 if refused else 1


if __name__ == "__main__":
    sys.exit(main())
