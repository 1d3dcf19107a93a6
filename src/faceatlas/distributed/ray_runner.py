"""Bulk photo work on Ray: one PhotoWorker actor per core, results streamed back in order, writes by the driver."""

from __future__ import annotations

import logging
import sys
import threading
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import FaceAtlasError
from .worker import ChunkResult, EnrolItem, PhotoWorker

log = logging.getLogger(__name__)

#: Images per actor call: large enough to hide the call overhead, small enough to keep retries cheap.
CHUNK = 8
#: Calls kept queued per actor so that no actor waits for the driver.
AHEAD_PER_ACTOR = 3


def _ray() -> Any:
    """The ray module, or a clear error when the ``ray`` extra is not installed."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FaceAtlasError("missing_dependency", "--ray needs Ray: pip install 'faceatlas[ray]'") from exc
    return ray


class StdoutForOwnerOnly:
    """Stands in for ``sys.stdout`` once Ray runs in this process, so that stdout carries the command's output only.

    Ray prints the cluster's notices (a worker that died, a task retried: lines starting with ``(raylet)``) on
    ``sys.stdout`` even with ``log_to_driver=False``: from its listener threads while it runs, and from the main thread
    when it shuts down (repeated notices it held back). Writes from any other thread than the owner, or made by Ray's
    own code, go to stderr instead; the command's lines (one JSON object per line with ``--json``) stay on stdout.
    """

    def __init__(self, out: Any, owner: int) -> None:
        self._out = out
        self._owner = owner

    def _target(self, caller: Any) -> Any:
        """The real stdout for the owner thread's own writes, stderr for other threads and for Ray's code."""
        module = _writer_module(caller)
        if threading.get_ident() != self._owner or module == "ray" or module.startswith("ray."):
            return sys.stderr
        return self._out

    def write(self, text: str) -> int:
        """Write to stdout, or to stderr when Ray (or another thread) is the writer."""
        return int(self._target(sys._getframe(1)).write(text))

    def writelines(self, lines: Any) -> None:
        """Write each line where :meth:`write` would."""
        target = self._target(sys._getframe(1))
        for line in lines:
            target.write(line)

    def flush(self) -> None:
        """Flush both streams."""
        self._out.flush()
        sys.stderr.flush()

    def __getattr__(self, name: str) -> Any:
        """Everything else (encoding, isatty, fileno, buffer) from the real stdout."""
        return getattr(self._out, name)


def _writer_module(frame: Any) -> str:
    """Module of the code that wrote, looking through the ``print`` Ray patches in (``ray.experimental.tqdm_ray``)."""
    while frame is not None and frame.f_globals.get("__name__") == "ray.experimental.tqdm_ray":
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "")) if frame is not None else ""


def guard_stdout() -> None:
    """Keep Ray's notices off stdout from now on (installed once; the calling thread keeps stdout)."""
    if not isinstance(sys.stdout, StdoutForOwnerOnly):
        sys.stdout = StdoutForOwnerOnly(sys.stdout, threading.get_ident())


def connect(address: str, num_cpus: int | None = None) -> Any:
    """Join (or, for ``local``, start) a Ray cluster: ``local``, ``auto`` or ``ray://host:port``; returns ray.

    Ray's own log lines go to stderr at WARNING and above and workers' output is not forwarded. Ray's notices on
    stdout are the caller's to redirect: the CLI calls :func:`guard_stdout` first; a library call leaves ``sys.stdout``
    alone.
    """
    ray = _ray()
    if ray.is_initialized():
        return ray
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, **common)  # a new instance even when `ray start` ran here
    else:
        ray.init(address=address, **common)
    return ray


class RayPhotoPool:
    """A set of PhotoWorker actors (one per CPU by default) that survive worker crashes and retry lost calls."""

    def __init__(self, address: str, settings: dict[str, Any], *, actors: int = 0,
                 known: frozenset[str] | None = None) -> None:
        self.ray = connect(address, num_cpus=actors or None)
        n = actors or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        remote = self.ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(_RayPhotoWorker)
        # Passed to each call wrapped in a list (so Ray does not resolve it per call); an actor fetches it once, and
        # again after a restart. Kept referenced here for as long as the pool lives.
        self.known_ref = self.ray.put(known or frozenset())
        self.actors = [remote.remote(settings) for _ in range(n)]
        self.placement = self.ray.get([a.warm.remote() for a in self.actors])
        log.info("ray: %d actors on %d node(s)", n, len({node for node, _ in self.placement}))

    def pids(self) -> list[int]:
        """Current process ids of the actors (they change when an actor is restarted)."""
        return [pid for _, pid in self.ray.get([a.where.remote() for a in self.actors])]

    def map_ordered(self, method: str, chunks: Iterator[list[str]], *args: Any) -> Iterator[ChunkResult]:
        """Call ``method(chunk, *args)`` on the actors round-robin; yield the answers in chunk order."""
        inflight: deque[Any] = deque()
        ahead = AHEAD_PER_ACTOR * len(self.actors)
        turn = 0
        for chunk in chunks:
            actor = self.actors[turn % len(self.actors)]
            turn += 1
            inflight.append(getattr(actor, method).remote(chunk, *args))
            if len(inflight) >= ahead:
                yield self.ray.get(inflight.popleft())
        while inflight:
            yield self.ray.get(inflight.popleft())

    def shutdown(self) -> None:
        """Stop the actors (the Ray cluster itself is left as it was)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


class _RayPhotoWorker(PhotoWorker):
    """PhotoWorker that knows its Ray node id."""

    def __init__(self, settings: dict[str, Any]) -> None:
        import ray

        super().__init__(settings, node=ray.get_runtime_context().get_node_id())
        self._known_id: Any = None

    def prepare_known(self, paths: Sequence[str], known: list[Any], multi_face: Any = "reject",
                      gates: Any = None) -> ChunkResult:
        """:meth:`prepare` with the collection's hashes given as ``[object ref]`` (fetched once per actor life)."""
        import ray

        if self._known_id != known[0].hex():
            self.known = ray.get(known[0])
            self._known_id = known[0].hex()
        return self.prepare(paths, multi_face, gates)


def chunks_of(paths: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    """Consecutive slices of ``size`` paths (across person boundaries, so one-photo people batch too)."""
    for i in range(0, len(paths), size):
        yield list(paths[i:i + size])


class NodeTally:
    """Images handled per Ray node and per worker process."""

    def __init__(self) -> None:
        self.nodes: Counter[str] = Counter()
        self.pids: Counter[int] = Counter()

    def add(self, res: ChunkResult) -> None:
        """Count one chunk's answer."""
        self.nodes[res.node] += len(res.items)
        self.pids[res.pid] += len(res.items)


def enrol_by_person(
    pool: RayPhotoPool, paths: Sequence[str], labels: Sequence[str], tally: NodeTally | None = None,
    *, multi_face: str = "reject", gates: Any = None,
) -> Iterator[tuple[str, list[tuple[str, EnrolItem]]]]:
    """Each person with ``(path, item)`` for their images, in input order (inputs sorted by person)."""
    items = _items(pool.map_ordered("prepare_known", chunks_of(paths), [pool.known_ref], multi_face, gates), tally)
    done: list[tuple[str, EnrolItem]] = []
    for i, (path, item) in enumerate(zip(paths, items, strict=True)):
        done.append((path, item))
        if i + 1 == len(paths) or labels[i + 1] != labels[i]:
            yield labels[i], done
            done = []


def _items(results: Iterator[ChunkResult], tally: NodeTally | None) -> Iterator[Any]:
    """The items of chunk answers, one by one."""
    for res in results:
        if tally is not None:
            tally.add(res)
        yield from res.items


def enrolled_hashes(gallery: Any, collection: str) -> frozenset[str]:
    """Source-image hashes of every sample in a collection (what a resumed run skips); empty when it is new."""
    from ..errors import NotFoundError

    try:
        gallery.get_collection(collection)
    except NotFoundError:
        return frozenset()
    out: set[str] = set()
    offset, page = 0, 1000
    while True:
        people = gallery.list_persons(collection, limit=page, offset=offset)
        for person in people:
            out.update(s.image_sha256 for s in gallery.list_samples(collection, person.id) if s.image_sha256)
        if len(people) < page:
            return frozenset(out)
        offset += page
