"""Story clusters in the index: assigned inside the store's commit transaction, so they are as crash-safe as the
articles they describe, and read by retrieval (copies collapse), timelines and digests.

Two levels:
- a *copy* group holds near-identical texts (wire copies, light rewrites, one article published twice): MinHash
  signatures of word 5-shingles, found through LSH band keys in SQLite, joined at estimated Jaccard >= 0.5;
- a *story* holds the articles about one event: a copy joins its original's story; any other article joins the
  story of its most similar neighbour (the dense index's nearest chunks) that is dated within a few days and
  shares named entities with it.

Adding an article costs one band lookup and its share of one batched nearest-neighbour search per commit: O(its
neighbours), never a re-cluster; an article that links two groups joins them (O(their size)). Removing one leaves
its group mates where they are.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.schema import Article
from qa.store.base import DenseSearch
from qa.stories import signals

STORY_DAYS = 3  # reports of one event are dated within this many days of each other
STORY_SIMILARITY = 0.6  # article-vector cosine at which two dated articles sharing STORY_NAMES names are one story
STORY_NAMES = 2
STRONG_SIMILARITY = 0.8  # ... and at which one shared name is enough (also: an undated article's only way in)
# An explainer beside the news ("What is cardiac arrest? Questions after Damar Hamlin's collapse") is less alike
# in words but names the same people: many shared names make up for a lower cosine. Chosen by reading the pairs
# of rtqa-2023-dev within 3 days at cosine 0.4-0.6 (two pass: that explainer, and Truss's resignation beside "UK
# election: why the nation won't vote"); no eval question is scored on it.
NAMED_SIMILARITY, MANY_NAMES = 0.5, 12
NEIGHBOURS = 40  # nearest chunks looked at for a new article's story
BACKFILL_DONE = "stories_complete"  # meta key: every article has its story row (indexes from before stories)


@dataclass
class StoryRow:
    article_id: str
    copy_id: str
    story_id: str
    outlet: str
    published: str
    signature: np.ndarray | None
    vector: np.ndarray
    names: list[str] = field(default_factory=list)


def article_row(article: Article, chunk_vectors: np.ndarray) -> StoryRow | None:
    """The story fields of an article from its text and chunk vectors (their normalised mean); None without
    chunks."""
    if not len(chunk_vectors):
        return None
    mean = np.asarray(chunk_vectors, dtype=np.float32).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    vector = mean / norm if norm > 0 else mean
    return StoryRow(
        article_id=article.id,
        copy_id=article.id,
        story_id=article.id,
        outlet=signals.outlet(article.source, article.url),
        published=article.published,
        signature=signals.minhash(article.text),
        vector=vector,
        names=signals.entities(article.title, article.text),
    )


def assign(conn: sqlite3.Connection, dense: DenseSearch | None, rows: Iterable[StoryRow]) -> None:
    """Place each new article in its copy group and story, and store it (inside the caller's transaction).
    `dense` searches the index as it was before this commit; the commit's own articles are compared directly."""
    rows = list(rows)
    near: list[list[int]] = [[] for _ in rows]
    if dense is not None and rows:  # one batched search for the whole commit, not one per article
        near = dense.neighbours(np.stack([r.vector for r in rows]), NEIGHBOURS)
    batch: list[StoryRow] = []
    vectors = np.zeros((len(rows), rows[0].vector.shape[0] if rows else 0), dtype=np.float32)  # batch's, in order
    for row, ids in zip(rows, near, strict=True):
        _place(conn, ids, row, batch, vectors[: len(batch)])
        _write(conn, row)
        vectors[len(batch)] = row.vector
        batch.append(row)


def remove(conn: sqlite3.Connection, article_ids: Sequence[str]) -> None:
    for aid in article_ids:
        found = conn.execute("SELECT signature FROM story_articles WHERE article_id = ?", (aid,)).fetchone()
        if found is None:
            continue
        if found[0] is not None:
            keys = signals.band_keys(np.frombuffer(found[0], dtype=np.uint32))
            conn.executemany("DELETE FROM story_bands WHERE key = ? AND article_id = ?", [(k, aid) for k in keys])
        conn.execute("DELETE FROM story_articles WHERE article_id = ?", (aid,))


MISSING = (
    "FROM articles WHERE id NOT IN (SELECT article_id FROM story_articles) AND id IN (SELECT article_id FROM chunks)"
)


def missing_count(conn: sqlite3.Connection) -> int:
    return conn.execute(f"SELECT COUNT(*) {MISSING}").fetchone()[0]


def backfill(conn: sqlite3.Connection, dense: DenseSearch | None, dim: int, limit: int = 500) -> int:
    """Story rows for up to `limit` articles of an index made before stories existed, from their stored chunk
    vectors (no re-embedding), oldest first; returns how many. The caller commits each call, so a run that is
    stopped keeps what it did; once none is missing the index is marked complete and this is not called again."""
    from qa.store.codec import decode_vector

    missing = [r[0] for r in conn.execute(f"SELECT id {MISSING} ORDER BY published, id LIMIT ?", (limit,))]
    if not missing:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (BACKFILL_DONE,))
        return 0
    rows = []
    for aid in missing:
        title, text, source, url, published = conn.execute(
            "SELECT title, text, source, url, published FROM articles WHERE id = ?", (aid,)
        ).fetchone()
        found = conn.execute("SELECT vector FROM chunks WHERE article_id = ?", (aid,))
        vectors = [decode_vector(v, dim) for (v,) in found]
        article = Article(aid, title or "", text or "", source or "", url or "", published or "")
        row = article_row(article, np.stack(vectors) if vectors else np.zeros((0, dim), np.float32))
        if row is not None:
            rows.append(row)
    assign(conn, dense, rows)
    return len(missing)


# -- placing one article ---------------------------------------------------------------------------------
def _place(
    conn: sqlite3.Connection, near: list[int], row: StoryRow, batch: list[StoryRow], batch_vectors: np.ndarray
) -> None:
    """`near`: the ids of the chunks nearest the article in the index as it was before this commit;
    `batch_vectors`: the vectors of `batch` (this commit's articles placed so far), one row each."""
    copies = _copies_of(conn, row)
    if copies:
        best = copies[0]
        row.copy_id, row.story_id = best.copy_id, best.story_id
        others = {c.copy_id for c in copies[1:]} - {row.copy_id}
        if others:
            _merge(conn, "copy_id", row.copy_id, others)
            _refresh(conn, batch)
        return
    linked = _stories_of(conn, near, row, batch, batch_vectors)
    if linked:
        # Reports of one event are the connected pairs: an article that links two stories joins them.
        row.story_id = linked[0].story_id
        others = {r.story_id for r in linked} - {row.story_id}
        _merge(conn, "story_id", row.story_id, others)
        for r in batch:
            if r.story_id in others:
                r.story_id = row.story_id


def _copies_of(conn: sqlite3.Connection, row: StoryRow) -> list[StoryRow]:
    """Indexed articles whose text this one nearly repeats, most similar first."""
    if row.signature is None:
        return []
    keys = signals.band_keys(row.signature)
    marks = ",".join("?" * len(keys))
    ids = [r[0] for r in conn.execute(f"SELECT DISTINCT article_id FROM story_bands WHERE key IN ({marks})", keys)]
    found = []
    for other in _rows(conn, [i for i in ids if i != row.article_id]):
        if other.signature is not None:
            score = signals.similarity(row.signature, other.signature)
            if score >= signals.COPY_THRESHOLD:
                found.append((score, other))
    return [other for _, other in sorted(found, key=lambda x: -x[0])]


def _stories_of(
    conn: sqlite3.Connection, near: list[int], row: StoryRow, batch: list[StoryRow], batch_vectors: np.ndarray
) -> list[StoryRow]:
    """The neighbours that report the same event (close in date, similar, sharing names), most similar first."""
    # The commit's own articles count as neighbours too, but only the most similar: comparing names with every
    # article of a large commit was quadratic (minutes per 10k-chunk commit of same-titled articles), and so was
    # stacking their vectors again for every article (the caller keeps them in one array).
    sims = batch_vectors @ row.vector
    top = np.argpartition(-sims, NEIGHBOURS)[:NEIGHBOURS] if len(sims) > NEIGHBOURS else np.arange(len(sims))
    close = [i for i in top[np.argsort(-sims[top])] if sims[i] >= NAMED_SIMILARITY]
    candidates = {batch[i].article_id: batch[i] for i in close if batch[i].article_id != row.article_id}
    if near:
        marks = ",".join("?" * len(near))
        aids = [r[0] for r in conn.execute(f"SELECT DISTINCT article_id FROM chunks WHERE id IN ({marks})", near)]
        for other in _rows(conn, [a for a in aids if a != row.article_id]):
            candidates.setdefault(other.article_id, other)
    found = []
    for other in candidates.values():
        sim = float(np.dot(row.vector, other.vector))
        if same_story(row, other, sim):
            found.append((sim, other))
    return [other for _, other in sorted(found, key=lambda x: -x[0])]


def same_story(a: StoryRow, b: StoryRow, sim: float) -> bool:
    """Two articles report one event: close in date (when both are dated), similar, and about the same names."""
    if sim < min(NAMED_SIMILARITY, STORY_SIMILARITY, STRONG_SIMILARITY):
        return False
    days = _days_apart(a.published, b.published)
    if days is not None and days > STORY_DAYS:
        return False
    shared = signals.shared_names(a.names, b.names)
    if days is None:  # an undated article joins only on strong evidence
        return sim >= STRONG_SIMILARITY and shared >= STORY_NAMES
    return (
        (sim >= STORY_SIMILARITY and shared >= STORY_NAMES)
        or (sim >= STRONG_SIMILARITY and shared >= 1)
        or (sim >= NAMED_SIMILARITY and shared >= MANY_NAMES)
    )


def _days_apart(a: str, b: str) -> int | None:
    try:
        return abs((dt.date.fromisoformat(a[:10]) - dt.date.fromisoformat(b[:10])).days)
    except ValueError:
        return None


def _merge(conn: sqlite3.Connection, column: str, into: str, others: set[str]) -> None:
    """An article that bridges two groups joins them (two copy groups: their stories too): O(the groups' size)."""
    for other in others:
        if column == "copy_id":
            stories = {r[0] for r in conn.execute("SELECT story_id FROM story_articles WHERE copy_id = ?", (other,))}
            target = conn.execute("SELECT story_id FROM story_articles WHERE copy_id = ? LIMIT 1", (into,)).fetchone()
            if target:
                for story in stories - {target[0]}:
                    conn.execute("UPDATE story_articles SET story_id = ? WHERE story_id = ?", (target[0], story))
        conn.execute(f"UPDATE story_articles SET {column} = ? WHERE {column} = ?", (into, other))


def _refresh(conn: sqlite3.Connection, batch: list[StoryRow]) -> None:
    """The group ids of this commit's earlier articles as stored, after a merge changed them."""
    current = members_of(conn, [r.article_id for r in batch])
    for r in batch:
        if r.article_id in current:
            r.copy_id, r.story_id = current[r.article_id].copy_id, current[r.article_id].story_id


def _write(conn: sqlite3.Connection, row: StoryRow) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO story_articles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.article_id, row.copy_id, row.story_id, row.outlet, row.published,
            None if row.signature is None else row.signature.astype(np.uint32).tobytes(),
            row.vector.astype(np.float16).tobytes(), json.dumps(row.names),
        ),
    )  # fmt: skip
    if row.signature is not None:
        conn.executemany(
            "INSERT OR IGNORE INTO story_bands VALUES (?, ?)",
            [(k, row.article_id) for k in signals.band_keys(row.signature)],
        )


def _rows(conn: sqlite3.Connection, article_ids: Sequence[str]) -> list[StoryRow]:
    if not article_ids:
        return []
    marks = ",".join("?" * len(article_ids))
    out = []
    for aid, copy_id, story_id, outlet, published, signature, vector, names in conn.execute(
        f"SELECT * FROM story_articles WHERE article_id IN ({marks})", list(article_ids)
    ):
        try:  # data read back from disk: damage is an error, never code
            out.append(
                StoryRow(
                    aid, copy_id, story_id, outlet, published,
                    None if signature is None else np.frombuffer(signature, dtype=np.uint32),
                    np.frombuffer(vector, dtype=np.float16).astype(np.float32), list(json.loads(names)),
                )
            )  # fmt: skip
        except (ValueError, TypeError):
            continue  # a damaged row only costs its article its group
    return out


# -- reading ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One article of a copy group or story, as citations and timelines show it."""

    article_id: str
    copy_id: str
    story_id: str
    outlet: str
    published: str


def members_of(conn: sqlite3.Connection, article_ids: Sequence[str]) -> dict[str, Member]:
    """The group fields of these articles (absent: an index whose stories are not filled in yet)."""
    if not article_ids:
        return {}
    marks = ",".join("?" * len(article_ids))
    rows = conn.execute(
        f"SELECT article_id, copy_id, story_id, outlet, published FROM story_articles WHERE article_id IN ({marks})",
        list(article_ids),
    )
    return {r[0]: Member(*r) for r in rows}


def copies(conn: sqlite3.Connection, copy_ids: Sequence[str]) -> dict[str, list[Member]]:
    """Every article of these copy groups, oldest first."""
    return _group(conn, "copy_id", copy_ids)


def stories(conn: sqlite3.Connection, story_ids: Sequence[str]) -> dict[str, list[Member]]:
    """Every article of these stories, oldest first."""
    return _group(conn, "story_id", story_ids)


def _group(conn: sqlite3.Connection, column: str, ids: Sequence[str]) -> dict[str, list[Member]]:
    out: dict[str, list[Member]] = {}
    ids = list(dict.fromkeys(ids))
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ",".join("?" * len(part))
        for r in conn.execute(
            f"SELECT article_id, copy_id, story_id, outlet, published FROM story_articles WHERE {column} IN ({marks}) "
            "ORDER BY published, article_id",
            part,
        ):
            member = Member(*r)
            out.setdefault(getattr(member, column), []).append(member)
    return out


def outlets(members: Iterable[Member]) -> list[str]:
    """Distinct outlet names, in order of first appearance."""
    return list(dict.fromkeys(m.outlet for m in members if m.outlet))
