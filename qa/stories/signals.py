"""What an article is compared by: a MinHash of its word shingles (copies), its named entities and its outlet."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np
from datasketch import MinHash, MinHashLSH

from qa.text import STOPWORDS

NUM_PERM = 128
SHINGLE_WORDS = 5
COPY_THRESHOLD = 0.5  # estimated shingle Jaccard at which two articles are copies of one text
MAX_SHINGLE_CHARS = 200_000  # a copy is recognised from its first 200k characters; longer texts cost no more
_WORD = re.compile(r"\w+")
_NAME = re.compile(r"\b[A-Z][\w'’.-]*[\w](?:[ \t]+(?:of\s+|de\s+)?[A-Z][\w'’.-]*[\w])*")
_NOT_NAMES = STOPWORDS | set(
    "mr mrs ms dr said says monday tuesday wednesday thursday friday saturday sunday january february march "
    "april may june july august september october november december jan feb mar apr jun jul aug sep sept oct nov "
    "dec here there the this that these those it its his her their we you i editor note read more".split()
)


@lru_cache(maxsize=1)
def _bands() -> list[tuple[int, int]]:
    """datasketch's optimal (bands x rows) split of the signature for COPY_THRESHOLD."""
    return list(MinHashLSH(threshold=COPY_THRESHOLD, num_perm=NUM_PERM).hashranges)


def minhash(text: str) -> np.ndarray | None:
    """The MinHash signature (NUM_PERM uint32) of the text's lower-cased word 5-shingles; None for a text too
    short to have one."""
    words = _WORD.findall(text[:MAX_SHINGLE_CHARS].lower())
    if len(words) < SHINGLE_WORDS:
        return None
    shingles = {" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)}
    m = MinHash(num_perm=NUM_PERM, seed=1)
    m.update_batch(list(shingles))
    return m.hashvalues.astype(np.uint32)  # datasketch's hash values are below 2**32: half the bytes stored


def band_keys(signature: np.ndarray) -> list[bytes]:
    """One LSH bucket key per band (9 bytes: the band's number and a hash of its rows): two articles share a
    key when that band of their signatures is equal."""
    return [
        bytes([i]) + hashlib.blake2b(signature[start:end].tobytes(), digest_size=8).digest()
        for i, (start, end) in enumerate(_bands())
    ]


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures' shingle sets."""
    return float(np.mean(a == b))


def entities(title: str, text: str, limit: int = 30) -> list[str]:
    """The article's most frequent names (capitalised words and runs of them, not at a sentence start) from its
    headline and first 3000 characters, lower-cased: what two reports of one event share."""
    counts: dict[str, int] = {}
    for part in (title, title, text[:3000]):  # the headline counts double
        for match in _NAME.finditer(part):
            before = part[: match.start()].rstrip()
            words = [w for w in match.group().split() if w.lower() not in _NOT_NAMES]
            if not words or (len(words) == 1 and (not before or before[-1] in '.!?"“:\n')):
                continue  # one capitalised word after a full stop is just a sentence start
            name = " ".join(words).lower().strip(".'’")
            if len(name) > 2:
                counts[name] = counts.get(name, 0) + 1
    return [n for n, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def shared_names(a: list[str], b: list[str]) -> int:
    """How many names two articles share, a multi-word name also matching its last word ("Damar Hamlin", "Hamlin")."""

    def expand(names: list[str]) -> set[str]:
        return {n for name in names for n in (name, name.split()[-1]) if len(n) > 2}

    return len(expand(a) & expand(b))


def outlet(source: str, url: str) -> str:
    """A short outlet name: the source when it names one (not a file path), else the site of the url."""
    if source and "/" not in source and "\\" not in source and not source.lower().endswith((".txt", ".md")):
        return source
    if url and "//" in url:
        return url.split("//", 1)[-1].split("/", 1)[0].removeprefix("www.")
    return ""
