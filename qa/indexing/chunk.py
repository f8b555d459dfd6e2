"""Stage 2: split an article into overlapping runs of whole sentences, each with its exact character span."""

from __future__ import annotations

import re
from functools import lru_cache

from qa.schema import Article, Chunk

_PARAGRAPH = re.compile(r"\n\s*\n")
_MAX_SEGMENT = 20_000  # pysbd is fed pieces no longer than this, so a megabyte-long line stays cheap


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def sentence_spans(text: str, max_chars: int = 1200) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in `text`, whitespace trimmed; over-long sentences are cut at spaces."""
    spans: list[tuple[int, int]] = []
    for para_start, para_end in _paragraphs(text):
        for piece_start in range(para_start, para_end, _MAX_SEGMENT):
            piece_end = min(piece_start + _MAX_SEGMENT, para_end)
            piece = text[piece_start:piece_end]
            cursor = 0
            for sentence in _segmenter().segment(piece):
                found = piece.find(sentence, cursor)
                if found < 0:  # pysbd altered the text; fall back to the rest of the piece
                    found = cursor
                    sentence = piece[cursor:]
                cursor = found + len(sentence)
                spans.extend(_trimmed_parts(text, piece_start + found, piece_start + cursor, max_chars))
    return spans


def _paragraphs(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for match in _PARAGRAPH.finditer(text):
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(text)))
    return [(s, e) for s, e in bounds if text[s:e].strip()]


def _trimmed_parts(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    parts = []
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        cut = cut if cut > start else start + max_chars
        parts.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        parts.append((start, end))
    return parts


def chunk_article(article: Article, chunk_chars: int = 600, overlap_chars: int = 150) -> list[Chunk]:
    """Greedy packing of whole sentences up to `chunk_chars`; the next chunk repeats trailing sentences
    worth at most `overlap_chars`, so an answer that straddles a boundary is whole in one chunk."""
    spans = sentence_spans(article.text, max_chars=chunk_chars)
    chunks: list[Chunk] = []
    i = 0
    while i < len(spans):
        j = i
        while j < len(spans) and (j == i or spans[j][1] - spans[i][0] <= chunk_chars):
            j += 1
        group = tuple(spans[i:j])
        start, end = group[0][0], group[-1][1]
        chunks.append(
            Chunk(
                chunk_id=f"{article.id}:{len(chunks)}",
                article_id=article.id,
                ordinal=len(chunks),
                start=start,
                end=end,
                text=article.text[start:end],
                sentences=group,
            )
        )
        if j >= len(spans):
            break
        back = j
        while back - 1 > i and spans[j - 1][1] - spans[back - 1][0] <= overlap_chars:
            back -= 1
        i = back
    return chunks
