"""Stage 2: split an article into overlapping runs of whole sentences, each with its exact character span.

The cost stays linear in the text whatever its shape. sentencex finds the sentences; it is fed pieces of at
most _MAX_PIECE characters and _MAX_CANDIDATES possible sentence ends, cut at such an end (a splitter's time may
grow with sentences x length: pysbd, used before, took 13 s for a 20 KB run of 1-character lines); a piece denser
in them than prose (a list of 1-character lines, "a. a. a.") is split at them directly, and one without any is one
sentence. A sentence shorter than _MIN_SENTENCE takes in the next (unless it is a paragraph of its own and the next is
long), so the sentences embedded per byte are bounded too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from qa.schema import Article, Chunk

_PARAGRAPH = re.compile(r"\n\s*\n")
# Where a sentence may end (sentencex decides, except in dense text): end punctuation before a space, or a newline.
_CANDIDATE = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)|[\u3002\uff01\uff1f]+|\n")
_MAX_PIECE = 5_000  # most characters the splitter is given at once
_MAX_CANDIDATES = 32  # most possible sentence ends in one piece
_DENSE_CHARS = 16  # fewer characters than this per possible end: not prose, split at each end without the splitter
_MIN_SENTENCE = 16  # a shorter sentence takes in the next (a run of 1-character lines is not 1 sentence each)
SENTENCES = "sentencex-1"  # how sentences are split; part of qa eval's index cache key


_OPENERS = "\"'\u201c\u2018(["  # may open a quotation: sentencex sometimes leaves one at the end of the sentence before
_CLOSERS = "\"'\u201d\u2019)]"  # and a closing one at the start of the sentence after
_INITIAL = re.compile(r"(?<![A-Za-z])[A-Z]\.$")  # "R-N." of "R-N.Y.", cut after by sentencex
_NEXT_INITIAL = re.compile(r"[A-Z]\.")
_NOT_A_START = re.compile(r"[a-z,;]")  # a cut before these is not a sentence end ("BQ.1.1." + "is causing")
_MAY = re.compile(r"\bMay\.(?=\s+[A-Z])")  # sentencex reads the month as an abbreviation: "in May. John said"


def _segment(piece: str) -> list[tuple[int, int]]:
    """Sentence spans in `piece` by sentencex (Wikimedia's rule-based splitter, compiled: 0.2 s for the 25,649
    paragraphs of rtqa-2023-dev + squad2-dev where pysbd took 14 s), mended where it errs on news: a quote
    left on the wrong side of a cut ('he said. \u201c' + 'I think', 'a failure.\u2019' + '\u2019 He left') moves to
    its sentence; a cut before a lower-case word or a comma, or between two initials ('R-N.' + 'Y., nominated'),
    is undone; and "May." before a capital ends a sentence (sentencex takes the month for an abbreviation)."""
    spans: list[tuple[int, int]] = []
    for start, end in _parts(piece):
        if spans:
            last_start, last_end = spans[-1]
            while last_end > last_start and piece[last_end - 1].isspace():
                last_end -= 1
            closer = start
            while closer < end and piece[closer] in _CLOSERS:
                closer += 1
            if start < closer and last_end == start and (closer == end or piece[closer].isspace()):
                spans[-1], last_end, start = (last_start, closer), closer, closer
        while start < end and piece[start].isspace():
            start += 1
        if start == end:
            continue
        if spans:
            tail = piece[max(last_start, last_end - 3) : last_end]
            initials = _INITIAL.search(tail) and _NEXT_INITIAL.match(piece, start)
            if _NOT_A_START.match(piece, start) or initials:
                spans[-1] = (last_start, end)
                continue
            opener = last_end
            while opener > last_start and piece[opener - 1] in _OPENERS:
                opener -= 1
            if last_start < opener < last_end and piece[opener - 1].isspace() and last_end == start:
                spans[-1], start = (last_start, opener), opener
        spans.append((start, end))
    return spans


def _parts(piece: str) -> Iterator[tuple[int, int]]:
    """sentencex's sentences as (start, end) in `piece`, each also cut after "May." before a capital."""
    import sentencex

    for part in sentencex.get_sentence_boundaries("en", piece):
        start, end = part["start_index"], part["end_index"]
        for month in _MAY.finditer(piece, start, end):
            yield start, month.end()
            start = month.end()
        yield start, end


def sentence_spans(text: str, max_chars: int = 1200) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in `text`, whitespace trimmed; over-long sentences are cut at spaces."""
    spans: list[tuple[int, int]] = []  # joined as they come: a list of every 1-character line is 900 MB for 16 MB
    for para_start, para_end in _paragraphs(text):
        for piece_start, piece_end, ends in _pieces(text, para_start, para_end):
            if (piece_end - piece_start) < _DENSE_CHARS * len(ends) or not ends:
                bounds = [piece_start, *ends]
                if bounds[-1] < piece_end:
                    bounds.append(piece_end)
                for start, end in zip(bounds, bounds[1:], strict=False):
                    _join(spans, _trimmed_parts(text, start, end, max_chars), max_chars, para_start)
                continue
            for start, end in _segment(text[piece_start:piece_end]):
                parts = _trimmed_parts(text, piece_start + start, piece_start + end, max_chars)
                _join(spans, parts, max_chars, para_start)
    return spans


def _pieces(text: str, start: int, end: int) -> Iterator[tuple[int, int, list[int]]]:
    """The paragraph text[start:end] cut into pieces for the splitter: (start, end, possible sentence ends inside),
    at most _MAX_PIECE characters and _MAX_CANDIDATES ends each, cut after a possible end when there is one."""
    ends: list[int] = []
    for match in _CANDIDATE.finditer(text, start, end):
        at = match.end()
        while at - start > _MAX_PIECE:  # the piece is full before this end
            if ends:
                yield start, ends[-1], ends[:-1]
                start, ends = ends[-1], []
            else:  # a long run without any: cut at a space
                cut = text.rfind(" ", start + _MAX_PIECE // 2, start + _MAX_PIECE)
                cut = cut + 1 if cut > start else start + _MAX_PIECE
                yield start, cut, []
                start = cut
        ends.append(at)
        if len(ends) >= _MAX_CANDIDATES:
            yield start, at, ends[:-1]
            start, ends = at, []
    while end - start > _MAX_PIECE:
        if ends:
            yield start, ends[-1], ends[:-1]
            start, ends = ends[-1], []
            continue
        cut = text.rfind(" ", start + _MAX_PIECE // 2, start + _MAX_PIECE)
        cut = cut + 1 if cut > start else start + _MAX_PIECE
        yield start, cut, []
        start = cut
    if end > start:
        yield start, end, [e for e in ends if e < end]


def _join(out: list[tuple[int, int]], spans: list[tuple[int, int]], max_chars: int, paragraph: int = 0) -> None:
    """Append `spans` (of the paragraph starting at `paragraph`) to `out`, each sentence shorter than
    _MIN_SENTENCE joined with the next (never past `max_chars`), so the sentences per byte stay bounded. A short
    paragraph of its own (a heading "We explain", a dateline "CNN —", a byline) is not joined to the sentence
    that opens the next paragraph: it would be quoted as part of that sentence. Short ones still join each
    other (a list of 1-character lines), so at most every other sentence is short."""
    for start, end in spans:
        if out:
            last_start, last_end = out[-1]
            heading = last_end <= paragraph and end - start >= _MIN_SENTENCE
            if last_end - last_start < _MIN_SENTENCE and not heading and end - last_start <= max_chars:
                out[-1] = (last_start, end)
                continue
        out.append((start, end))


def _paragraphs(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each paragraph that is not blank, one at a time (5 million of them in 16 MB of "a\\n\\n")."""
    start = 0
    for match in _PARAGRAPH.finditer(text):
        if not text[start : match.start()].isspace() and match.start() > start:
            yield start, match.start()
        start = match.end()
    if start < len(text) and not text[start:].isspace():
        yield start, len(text)


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
