"""``faceatlas serve`` (REST API and web page) and ``faceatlas keys`` (API key management)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer

from .common import DetectorOpt, EmbedderOpt, GalleryOpt, JsonOpt, emit, options, require, require_gallery

keys_app = typer.Typer(help="Create, list and revoke API keys of the REST server.", no_args_is_help=True)


def _when(ts: float | None) -> str:
    """A timestamp as UTC text (or '-')."""
    return "-" if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    gallery: GalleryOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Server processes (each loads the models).")] = 1,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=0, help="Images processed at once per process (0: one per core).")
    ] = 0,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (loopback addresses only).")] = False,
    detector: DetectorOpt = "yunet",
    embedder: EmbedderOpt = "sface",
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest request body (MB).")] = 15.0,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Largest image (pixels).")] = 36_000_000,
    max_faces: Annotated[int, typer.Option("--max-faces", min=1, help="Most faces per image.")] = 20,
    max_images: Annotated[int, typer.Option("--max-images", min=1, help="Most images per request.")] = 10,
    rate_limit: Annotated[float, typer.Option("--rate-limit", min=0.0, help="Requests per second per key (0: off).")] = 20.0,
    rate_burst: Annotated[int, typer.Option("--rate-burst", min=1, help="Burst size of the rate limit.")] = 40,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="Request timeout (seconds).")] = 30.0,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Images waiting per process before 503.")] = 64,
    log_level: Annotated[str, typer.Option("--log-level", help="debug|info|warning|error.")] = "info",
    forwarded_allow_ips: Annotated[str | None, typer.Option("--forwarded-allow-ips", help="Comma-separated proxy addresses whose X-Forwarded-For is trusted (default: none).")] = None,  # noqa: E501
    header_timeout: Annotated[float, typer.Option("--header-timeout", min=0.001, help="Seconds a client may take to send request headers.")] = 10.0,  # noqa: E501
) -> None:
    """Run the REST API and web page (prints the URL, and an admin API key on first run)."""
    require("serve", "server", "fastapi", "uvicorn")
    require_gallery(gallery)
    from ..server.run import serve as run_server
    from ..server.settings import ServerSettings

    opts = options(ctx)
    settings = ServerSettings(
        host=host, port=port, gallery=gallery, auth=not no_auth, workers=workers, concurrency=concurrency,
        threads=opts.threads, detector=detector, embedder=embedder,
        models_dir=str(opts.models_dir) if opts.models_dir else None, offline=opts.offline,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels, max_faces=max_faces,
        max_images=max_images, rate_limit=rate_limit, rate_burst=rate_burst, request_timeout=timeout,
        max_queue=max_queue, log_level=log_level.lower(), forwarded_allow_ips=forwarded_allow_ips,
        header_timeout=header_timeout,
    )
    run_server(settings, echo=typer.echo)


#: ``keys create --compreface SERVICE``: the scopes of each CompreFace service type.
COMPREFACE_SCOPES = {"recognition": "read,enrol,delete", "detection": "read", "verification": "read"}


@keys_app.command("create")
def keys_create(
    scope: Annotated[str | None, typer.Option("--scope", help="Comma-separated: read,enrol,delete,admin,templates.")]
    = None,
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="Allowed collection (repeatable; default all).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A label for the key.")] = None,
    compreface: Annotated[str | None, typer.Option(
        "--compreface", help="A key for a CompreFace client: recognition|detection|verification (one collection; "
                             "--scope adds scopes, e.g. templates).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the key is printed once and only its salted hash is kept."""
    from ..errors import InvalidInputError
    from ..server.keys import KeyStore

    if compreface is not None:
        service = compreface.strip().lower()
        if service not in COMPREFACE_SCOPES:
            raise InvalidInputError("invalid_input", f"--compreface takes one of {', '.join(COMPREFACE_SCOPES)}")
        if collection and len(collection) > 1:
            raise InvalidInputError("invalid_input", "a CompreFace key works on one collection (one --collection)")
        # detection and verification never read a gallery: their key names an empty collection of its own
        collection = collection or (["default"] if service == "recognition" else [f"compreface-{service}"])
        scope = ",".join(s for s in (COMPREFACE_SCOPES[service], scope) if s)
        name = name or f"compreface {service}"
    elif scope is None:
        raise InvalidInputError("invalid_input", "give --scope (or --compreface recognition|detection|verification)")
    record, token = KeyStore().create(scope, collection, name)
    if as_json:
        emit({**record.to_dict(), "key": token})
        return
    typer.echo(f"created key {record.id} ({record.name}): scopes {','.join(record.scopes)}; "
               f"collections {','.join(record.collections)}")
    typer.echo("The key is shown only this once:")
    typer.echo(token)


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all/--active", help="Include revoked keys.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """List API keys (ids, scopes, collections, dates; never the keys themselves)."""
    from ..server.keys import KeyStore

    for k in KeyStore().list(include_revoked=all_keys):
        if as_json:
            emit(k.to_dict())
            continue
        state = "active" if k.active else f"revoked {_when(k.revoked_at)}"
        typer.echo(f"{k.id}  {k.name:<20} scopes={','.join(k.scopes):<28} collections={','.join(k.collections):<12} "
                   f"created {_when(k.created_at)}  last used {_when(k.last_used_at)}  {state}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (as in 'keys list').")], as_json: JsonOpt = False
) -> None:
    """Revoke an API key; running servers refuse it from the next request on."""
    from ..server.keys import KeyStore

    record = KeyStore().revoke(key_id)
    if as_json:
        emit(record.to_dict())
    else:
        typer.echo(f"revoked key {record.id} ({record.name})")
