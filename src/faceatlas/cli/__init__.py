"""The ``faceatlas`` command line: one typer app assembled from one module per command group.

Importing this package builds the app and nothing else: models, servers and plotting load inside the commands.
"""

from __future__ import annotations

from . import analyze, cluster, embed_dir, enroll, evaluate, gallery, media, models, server, video
from .app import app, main

app.command("detect")(media.detect)
app.command("embed")(media.embed)
app.command("verify")(media.verify)
app.command("analyze")(analyze.analyze)
app.add_typer(models.models_app, name="models")
app.add_typer(evaluate.eval_app, name="eval")
app.command("calibrate")(evaluate.calibrate)
app.add_typer(gallery.collection_app, name="collection")
app.add_typer(gallery.person_app, name="person")
app.command("enroll")(enroll.enroll)
app.command("enroll-dir")(enroll.enroll_dir)
app.command("embed-dir")(embed_dir.embed_dir)
app.command("identify")(enroll.identify)
app.command("video")(video.video)
app.add_typer(cluster.cluster_app, name="cluster")
app.command("serve")(server.serve)
app.add_typer(server.keys_app, name="keys")

__all__ = ["app", "main"]
