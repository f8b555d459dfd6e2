"""The in-memory side of the BM25 index (qa/store/bm25_index.py): one generation's postings, searched with numpy.

FTS5 spent its time on every matching row (255 ms a query at 1M chunks: common words match a tenth of them);
here a query term costs a few numpy operations over its posting list, O(matches) in C. A generation is an
immutable _State: a base (CSR postings, possibly memory-mapped from its file), the chunks added since (an
append-only _Delta that later generations share, each seeing its own prefix) and the ids removed since. A commit
derives the next state in O(change) and readers keep the state of their SQLite snapshot, as for the FAISS index.

Scores are FTS5's bm25() over its `fts(title, text)` table: k1 1.2, b 0.75, IDF log((N - n + 0.5) / (n + 0.5))
(1e-6 when not positive), one column of title + text tokens, N and the average length over the live chunks.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

K1, B = 1.2, 0.75
TF_MAX = 255  # term counts are stored in one byte (a 600-character chunk has ~120 tokens)


@dataclass(frozen=True)
class Base:
    """Postings of the chunks a base file holds: term t's are docs/tfs[indptr[t]:indptr[t + 1]], docs are
    positions into ids (ascending chunk ids) and lengths."""

    terms: list[str]
    indptr: np.ndarray  # int64, len(terms) + 1
    docs: np.ndarray  # int32
    tfs: np.ndarray  # uint8
    ids: np.ndarray  # int64, ascending
    lengths: np.ndarray  # int32, tokens per chunk
    vocab: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.vocab:
            self.vocab.update((t, i) for i, t in enumerate(self.terms))

    def position(self, chunk_id: int) -> int | None:
        i = int(np.searchsorted(self.ids, chunk_id))
        return i if i < len(self.ids) and int(self.ids[i]) == chunk_id else None


def empty_base() -> Base:
    z = np.zeros(0, dtype=np.int64)
    return Base([], np.zeros(1, dtype=np.int64), z.astype(np.int32), z.astype(np.uint8), z, z.astype(np.int32))


class _Grow:
    """One term's postings in the delta: positions ascending, grown by doubling."""

    __slots__ = ("docs", "tfs", "used")

    def __init__(self, capacity: int = 4):
        self.docs = np.zeros(capacity, dtype=np.int32)
        self.tfs = np.zeros(capacity, dtype=np.uint8)
        self.used = 0

    def append(self, doc: int, tf: int) -> None:
        if self.used == len(self.docs):  # a new array: readers keep the old one, whose prefix is unchanged
            docs, tfs = np.zeros(2 * self.used, dtype=np.int32), np.zeros(2 * self.used, dtype=np.uint8)
            docs[: self.used], tfs[: self.used] = self.docs, self.tfs
            self.docs, self.tfs = docs, tfs
        self.docs[self.used], self.tfs[self.used] = doc, tf
        self.used += 1

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        docs, tfs, used = self.docs, self.tfs, self.used  # read together: a writer may be appending
        k = int(np.searchsorted(docs[:used], n))
        return docs[:k], tfs[:k]


class Delta:
    """Chunks added since the base, shared by successive generations; a generation sees the first n."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lengths: list[int] = []
        self.position: dict[int, int] = {}
        self.postings: dict[str, _Grow] = {}

    @property
    def used(self) -> int:
        return len(self.ids)

    def append(self, n: int, docs: Sequence[tuple[int, Counter[str], int]]) -> Delta:
        """Rows [:n] plus these; in place when nobody appended past n yet, else into a copy (O(delta))."""
        target = self
        if self.used != n:
            target = Delta()
            for i in range(n):
                target.ids.append(self.ids[i])
                target.lengths.append(self.lengths[i])
                target.position[self.ids[i]] = i
            for term, grow in self.postings.items():
                d, t = grow.upto(n)
                if len(d):
                    copy = _Grow(max(4, 2 * len(d)))
                    copy.docs[: len(d)], copy.tfs[: len(d)], copy.used = d, t, len(d)
                    target.postings[term] = copy
        for chunk_id, counts, length in docs:
            pos = len(target.ids)
            for term, tf in counts.items():
                grow = target.postings.get(term)
                if grow is None:
                    grow = target.postings[term] = _Grow()
                grow.append(pos, min(tf, TF_MAX))
            target.lengths.append(length)
            target.position[chunk_id] = pos
            target.ids.append(chunk_id)  # last: a reader sees the row only once it is whole
        return target


@dataclass(frozen=True)
class State:
    """The chunks of one generation: base minus `removed`, plus the first `n` rows of `delta`."""

    generation: int
    base: Base
    base_generation: int  # the generation whose file holds `base` (0: none on disk yet)
    durable: bool  # the base is on disk and the log in SQLite covers every commit since
    max_id: int  # every chunk id up to this one was seen by this state
    base_max_id: int  # ...and by its base
    delta: Delta
    n: int
    removed: frozenset[int]
    live: int  # chunks searched
    total_length: int  # their tokens
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def log_rows(self) -> int:
        return self.n + len(self.removed)

    def advance(self, generation: int, removed: Sequence[int], docs: Sequence[tuple[int, Counter[str], int]]) -> State:
        """The next generation: O(change); this one stays as it was for its readers."""
        live, total = self.live, self.total_length
        gone = set()
        for rid in removed:
            if rid in self.removed or rid in gone:
                continue
            length = self._length(rid)
            if length is not None:
                gone.add(rid)
                live, total = live - 1, total - length
        delta = self.delta.append(self.n, docs)
        live += len(docs)
        total += sum(length for _, _, length in docs)
        return State(
            generation,
            self.base,
            self.base_generation,
            self.durable,
            max([self.max_id, *(d[0] for d in docs)]),
            self.base_max_id,
            delta,
            self.n + len(docs),
            self.removed | gone if gone else self.removed,
            live,
            total,
        )

    def at(self, generation: int, **changes) -> State:
        """This state under another generation number (or with other fields), sharing its data."""
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "_cache"}
        return State(**(fields | {"generation": generation} | changes))

    def _length(self, chunk_id: int) -> int | None:
        pos = self.base.position(chunk_id)
        if pos is not None:
            return int(self.base.lengths[pos])
        pos = self.delta.position.get(chunk_id)
        return self.delta.lengths[pos] if pos is not None and pos < self.n else None

    def ids(self) -> set[int]:
        out = set(self.base.ids.tolist()) | set(self.delta.ids[: self.n])
        return out - self.removed

    # -- searching ----------------------------------------------------------------------------------------
    def _alive(self) -> np.ndarray | None:
        """False at the removed positions (base, then delta), or None when nothing was removed."""
        if not self.removed:
            return None
        if "alive" not in self._cache:
            nb = len(self.base.ids)
            alive = np.ones(nb + self.n, dtype=bool)
            for rid in self.removed:
                pos = self.base.position(rid)
                if pos is None:
                    pos = self.delta.position.get(rid)
                    pos = None if pos is None or pos >= self.n else nb + pos
                if pos is not None:
                    alive[pos] = False
            self._cache["alive"] = alive
        return self._cache["alive"]

    def _norm(self) -> np.ndarray:
        """Per position, the length part of BM25's denominator, k1 (1 - b + b |D| / avgdl): once per state."""
        if "norm" not in self._cache:
            lengths = np.concatenate(
                [self.base.lengths.astype(np.float64), np.asarray(self.delta.lengths[: self.n], dtype=np.float64)]
            )
            avgdl = self.total_length / self.live if self.live else 1.0
            self._cache["norm"] = K1 * (1 - B + B * lengths / avgdl)
        return self._cache["norm"]

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """Positions (base, then len(base) + delta position) and counts of one term's live postings."""
        parts_d, parts_t = [], []
        i = self.base.vocab.get(term)
        if i is not None:
            s, e = int(self.base.indptr[i]), int(self.base.indptr[i + 1])
            parts_d.append(self.base.docs[s:e])
            parts_t.append(self.base.tfs[s:e])
        grow = self.delta.postings.get(term)
        if grow is not None:
            d, t = grow.upto(self.n)
            if len(d):
                parts_d.append(d + len(self.base.ids))
                parts_t.append(t)
        if not parts_d:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        docs = parts_d[0] if len(parts_d) == 1 else np.concatenate(parts_d)
        tfs = parts_t[0] if len(parts_t) == 1 else np.concatenate(parts_t)
        alive = self._alive()
        if alive is not None:
            keep = alive[docs]
            docs, tfs = docs[keep], tfs[keep]
        return docs, tfs

    def scores(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) of every live chunk holding a term, in position order."""
        if not self.live or not terms:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        n_docs = self.live
        norm = self._norm()
        total = np.zeros(len(norm))
        for term in terms:
            docs, tfs = self._postings(term)
            if not len(docs):
                continue
            idf = math.log((n_docs - len(docs) + 0.5) / (len(docs) + 0.5))
            idf = idf if idf > 0 else 1e-6
            tf = tfs.astype(np.float64)
            total[docs] += idf * (K1 + 1) * tf / (tf + norm[docs])  # positions are distinct within one term
        hit = np.flatnonzero(total)
        return hit, total[hit]

    def chunk_id(self, positions: np.ndarray) -> np.ndarray:
        nb = len(self.base.ids)
        out = np.empty(len(positions), dtype=np.int64)
        low = positions < nb
        out[low] = self.base.ids[positions[low]]
        if (~low).any():
            delta_ids = np.asarray(self.delta.ids[: self.n], dtype=np.int64)
            out[~low] = delta_ids[positions[~low] - nb]
        return out

    def search(
        self, terms: Sequence[str], k: int, accept: Callable[[list[int]], set[int]] | None = None
    ) -> list[tuple[int, float]]:
        """The k best (chunk id, score), best first (ties: lower id first). With `accept` (the ids of a batch
        that pass the filters), candidates are checked best first in growing batches until k pass."""
        positions, scores = self.scores(terms)
        if not len(positions):
            return []
        ids = self.chunk_id(positions)
        out: list[tuple[int, float]] = []
        done = 0
        want = k if accept is None else max(4 * k, 200)
        while done < len(ids) and len(out) < k:
            top = _best(scores, ids, done + want)[done:]
            batch = [int(ids[i]) for i in top]
            passed = set(batch) if accept is None else accept(batch)
            out += [(int(ids[i]), float(scores[i])) for i in top if int(ids[i]) in passed]
            done += len(top)
            want *= 8
        return out[:k]


def _best(scores: np.ndarray, ids: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m best scores, best first (ties: lower id first)."""
    if m < len(scores):
        cut = np.partition(-scores, m - 1)[m - 1]  # everything scoring at least the m-th best, ties included
        pick = np.flatnonzero(-scores <= cut)
    else:
        pick = np.arange(len(scores))
    order = np.lexsort((ids[pick], -scores[pick]))
    return pick[order][:m]


def merged(state: State) -> Base:
    """One base of every live chunk of `state` (its delta folded in, removed chunks dropped). O(postings), no
    sort: a term's base postings keep their order and its delta ones (later positions) follow them."""
    base, nb = state.base, len(state.base.ids)
    alive = state._alive()
    alive = np.ones(nb + state.n, dtype=bool) if alive is None else alive
    new_pos = (np.cumsum(alive) - 1).astype(np.int32)  # old position -> new one
    ids = np.concatenate([base.ids, np.asarray(state.delta.ids[: state.n], dtype=np.int64)])[alive]
    lengths = np.concatenate([base.lengths, np.asarray(state.delta.lengths[: state.n], dtype=np.int32)])[alive]
    terms, vocab = list(base.terms), dict(base.vocab)
    keep = alive[base.docs]
    b_term = np.repeat(np.arange(len(terms), dtype=np.int64), np.diff(base.indptr))[keep]
    b_doc, b_tf = new_pos[base.docs[keep]], base.tfs[keep]
    delta = []  # (term number, new positions, counts)
    for term, grow in state.delta.postings.items():
        d, t = grow.upto(state.n)
        d = d.astype(np.int64) + nb
        k = alive[d]
        if k.any():
            if term not in vocab:
                vocab[term] = len(terms)
                terms.append(term)
            delta.append((vocab[term], new_pos[d[k]], t[k]))
    b_counts = np.bincount(b_term, minlength=len(terms))
    counts = b_counts.copy()
    for j, d, _ in delta:
        counts[j] += len(d)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    docs = np.empty(int(counts.sum()), dtype=np.int32)
    tfs = np.empty(len(docs), dtype=np.uint8)
    b_starts = np.concatenate([[0], np.cumsum(b_counts)[:-1]]).astype(np.int64)
    dest = starts[b_term] + (np.arange(len(b_term), dtype=np.int64) - b_starts[b_term])
    docs[dest], tfs[dest] = b_doc, b_tf
    for j, d, t in delta:
        at = starts[j] + b_counts[j]
        docs[at : at + len(d)], tfs[at : at + len(d)] = d, t
    used = counts > 0  # terms no live chunk holds any more go
    indptr = np.concatenate([[0], np.cumsum(counts[used])]).astype(np.int64)
    kept = [t for t, u in zip(terms, used.tolist(), strict=True) if u]
    return Base(kept, indptr, docs, tfs, ids.astype(np.int64), lengths.astype(np.int32))
