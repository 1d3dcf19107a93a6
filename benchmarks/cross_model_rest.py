"""REST cross-model regression, runnable on the old (c820ac8) and new code: identify with sface+flip on an sface collection."""
import sys, tempfile
from pathlib import Path
from fastapi.testclient import TestClient
try:
    from faceatlas.facade import FaceAtlas
except ImportError:
    from faceatlas.atlas import FaceAtlas
from faceatlas.gallery import Gallery
from faceatlas.recognition import Recognizer
from faceatlas.server.app import create_app
from faceatlas.server.keys import KeyStore
from faceatlas.server.service import Service
from faceatlas.server.settings import ServerSettings
import faceatlas
print("code under test:", faceatlas.__file__)
L = Path("/work/shared/data/lfw/images/Colin_Powell")
tmp = Path(tempfile.mkdtemp())
base = FaceAtlas()
rec = Recognizer(base, Gallery.open(tmp / "g.db")); rec.enroll("people", "colin", [L / "Colin_Powell_0001.jpg", L / "Colin_Powell_0002.jpg"]); rec.close()
keys = KeyStore(tmp / "keys.db"); token = keys.create("read,enrol", ["people"], name="t")[1]
settings = ServerSettings(rate_limit=0.0, warmup=False)
svc = Service(settings, atlas=FaceAtlas(embedder="sface+flip", store=base.store), gallery=Gallery.open(tmp / "g.db"))
with TestClient(create_app(settings, service=svc, keys=keys)) as c:
    r = c.post("/v1/collections/people/identify", headers={"Authorization": f"Bearer {token}"}, files={"image": (L / "Colin_Powell_0003.jpg").read_bytes()})
    print("status", r.status_code, r.text[:300])
    sys.exit(0 if r.status_code == 409 and r.json()["error"]["code"] == "model_mismatch" else 1)
