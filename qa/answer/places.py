"""Which country a place name or demonym means: "U.S." and "American" are the United States, "North Korean" is
North Korea. "Which country ...?" is answered by a country, not by "London" or "Fla.", and "Chinese officials
said" answers it with "China". The names, codes and demonyms come from the `countryinfo` package's data
(250 countries, shipped in the wheel, no network).
"""

from __future__ import annotations

import re
from functools import lru_cache

_CODE = re.compile(r"^[A-Z]{2,3}$")  # "US", "UAE": matched only exactly, and two letters only for US and UK
_PROSE_CODES = {"US", "UK"}  # "IT", "CA", "IN" are ISO codes too, but in prose they are words
ALSO_LOCAL = {"Georgia"}  # a country's name that is also a US state's
_EVERYDAY = {"britain": "United Kingdom", "holland": "Netherlands"}  # forms news uses that countryinfo lacks


def _key(text: str) -> str:
    """ "the U.S." -> "us", "North Korea's" -> "north korea" (dots, a leading "the", a possessive dropped)."""
    text = re.sub(r"['’]s$", "", text.strip()).replace(".", "")
    return re.sub(r"^the\s+", "", " ".join(text.lower().split()))


# "which European country": the adjective -> the (region or subregion) words the country's must contain
REGIONS = {
    "european": "Europe", "asian": "Asia", "african": "Africa", "latin american": "Latin America",
    "south american": "Latin America", "caribbean": "Caribbean", "middle eastern": "Western Asia",
    "north african": "Northern Africa", "eastern european": "Eastern Europe", "nordic": "Northern Europe",
    "scandinavian": "Northern Europe", "pacific": "Oceania", "southeast asian": "South-eastern Asia",
}  # fmt: skip


@lru_cache(maxsize=1)
def _regions() -> dict[str, str]:
    """country -> "region / subregion" ("Europe / Eastern Europe")."""
    from countryinfo import all_countries

    out = {}
    for c in all_countries():
        try:
            out[c.name()] = f"{c.region() or ''} / {c.subregion() or ''}".lower()
        except (KeyError, AttributeError, TypeError):
            continue
    return out


@lru_cache(maxsize=1024)
def region_asked(question: str) -> str:
    """The region a question's "which European country" names, lower-case, else ""."""
    q = question.lower()
    for adjective in sorted(REGIONS, key=len, reverse=True):
        if re.search(rf"\b{adjective} (?:country|countries|nation)\b", q):
            return REGIONS[adjective].lower()
    return ""


def in_region(country: str, region: str) -> bool:
    return not region or region in _regions().get(country, "")


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str], frozenset[str]]:
    """(lower-case names and demonyms -> country, upper-case codes -> country, the city-states: countries whose
    capital bears their name, "Singapore", "Kuwait City"). Where forms collide ("American": the United States,
    the Northern Mariana Islands) the more populous country has it."""
    from countryinfo import all_countries

    names: dict[str, str] = {}
    codes: dict[str, str] = {}
    cities: set[str] = set()
    for country in sorted(all_countries(), key=lambda c: -(_number(c.population))):
        name = country.name()
        if not name:
            continue
        if str(country.capital() or "").startswith(name):
            cities.add(name)
        for form in [name, country.demonym() or "", *(country.alt_spellings() or [])]:
            form = form.strip()
            if _CODE.match(form):
                if len(form) == 3 or form in _PROSE_CODES:
                    codes.setdefault(form, name)
            elif len(form) > 3 and form.isascii():
                names.setdefault(_key(form), name)
    for form, name in _EVERYDAY.items():
        names.setdefault(form, name)
    return names, codes, frozenset(cities)


def _number(read) -> float:
    try:
        return float(read() or 0)
    except (TypeError, ValueError):
        return 0.0


def country_of(text: str) -> str | None:
    """The country a name, code or demonym stands for, else None ("London", "Fla.", "Midwest")."""
    names, codes, _ = _tables()
    bare = re.sub(r"['’]s$", "", text.strip()).replace(".", "")
    if bare.removeprefix("the ").strip() in codes:
        return codes[bare.removeprefix("the ").strip()]
    return names.get(_key(text))


@lru_cache(maxsize=1024)  # asked once per sentence read for the same question
def countries_named(text: str) -> frozenset[str]:
    """The countries a text names by any of their forms ("In addition to the US, which country" -> United States)."""
    names, codes, _ = _tables()
    found = {codes[w] for w in re.findall(r"\b[A-Z]{2,3}\b", text.replace(".", "")) if w in codes}
    words = [re.sub(r"['’]s$", "", w) for w in re.findall(r"[\w'’-]+", text.lower().replace(".", ""))]
    for n in (1, 2, 3, 4):
        for i in range(len(words) - n + 1):
            country = names.get(" ".join(words[i : i + n]))
            if country:
                found.add(country)
    return frozenset(found)


def is_only_a_country(text: str) -> bool:
    """A country that is not also a city or US state ("Brazil", "Chinese"; not "Singapore", "Georgia")."""
    country = country_of(text)
    return bool(country) and country not in ALSO_LOCAL and country not in _tables()[2]
