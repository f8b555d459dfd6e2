"""Distributed chunking and embedding on a Ray cluster, used by the indexer when settings.ray_address is set.

The cluster gets one actor per CPU it offers; each loads the embedding model once (qa.indexing.embed.get_embedder)
and then chunks the articles and embeds the chunk texts that the driver sends it, in order. The driver still plans the
work (only new or changed articles are sent: re-indexing stays incremental) and commits the results through the
configured store, so a Ray index equals a single-process one: the same chunk ids, vectors equal up to float
rounding (batches are padded differently).

Every node needs this package and its model installed (the same venv as the driver): nothing is shipped at run
time. The driver must run on a node of the cluster, as `ray.init(address=...)` requires.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from qa.indexing.chunk import chunk_article
from qa.schema import Article, Chunk
from qa.settings import Settings

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost")


class _Worker:
    """One per CPU of the cluster: the model stays loaded between batches."""

    def __init__(self, model: str, device: str, batch_size: int, precision: str):
        from qa.indexing.embed import get_embedder

        self._embedder = get_embedder(model, device, batch_size, precision)  # "auto": each node's own CPU decides

    def dim(self) -> int:
        return self._embedder.dim

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def chunk(self, articles: list[Article], chars: int, overlap: int) -> list[list[Chunk]]:
        return [chunk_article(a, chars, overlap) for a in articles]

    def encode_chunks(self, items: list[tuple[str, list[tuple[int, int]]]]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self._embedder.encode_chunks([t for t, _ in items], [s for _, s in items])


class RayEmbedder:
    """Stands in for qa.indexing.embed.Embedder in the indexer (name, dim, batch_size, encode_chunks) and also
    chunks."""

    def __init__(self, address: str, model: str, device: str, batch_size: int, precision: str = "auto"):
        ray = connect(address)
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_Worker)
        self._actors = [actor.remote(model, device, batch_size, precision) for _ in range(workers)]
        self._ray = ray
        self.name = model
        self.dim = ray.get([a.dim.remote() for a in self._actors])[0]  # also waits until every model is loaded
        self.nodes = len(set(ray.get([a.node.remote() for a in self._actors])))
        # The indexer encodes batch_size * 4 texts a call: that many for every worker.
        self.batch_size = batch_size * workers
        log.info("embedding on Ray at %s: %d workers on %d nodes", address, workers, self.nodes)

    def _fan_out(self, method: str, items: Sequence, parts: int, *args) -> list:
        """Split items into contiguous parts, one call per part over the actors in turn; results in order."""
        size = -(-len(items) // parts)
        calls = [
            getattr(self._actors[i % len(self._actors)], method).remote(list(items[start : start + size]), *args)
            for i, start in enumerate(range(0, len(items), size))
        ]
        return self._ray.get(calls)

    def chunk(self, articles: Sequence[Article], chars: int, overlap: int) -> list[list[Chunk]]:
        if not articles:
            return []
        return [c for part in self._fan_out("chunk", articles, len(self._actors) * 4, chars, overlap) for c in part]

    def encode_chunks(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        parts = self._fan_out("encode_chunks", list(zip(texts, spans, strict=True)), len(self._actors))
        return np.vstack([v for v, _ in parts]), [s for _, per_chunk in parts for s in per_chunk]


@lru_cache(maxsize=2)
def get_ray_embedder(address: str, model: str, device: str, batch_size: int, precision: str) -> RayEmbedder:
    """One set of actors per cluster and model per process: repeated index calls do not reload the model."""
    return RayEmbedder(address, model, device, batch_size, precision)


def ray_embedder(settings: Settings) -> RayEmbedder:
    s = settings
    return get_ray_embedder(s.ray_address, s.embed_model, s.embed_device, s.embed_batch_size, s.embed_precision)


def connect(address: str):
    """ray.init once per process, quiet and without usage stats. A loopback address keeps all of Ray's traffic on
    127.0.0.1: Ray otherwise swaps 127.0.0.1 for the machine's outward address, unless it believes clusters are off
    on this machine (its RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER switch, which here changes only that choice)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return ray
    if address.rsplit(":", 1)[0] in LOOPBACK:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # and for the processes Ray starts from here
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    return ray
