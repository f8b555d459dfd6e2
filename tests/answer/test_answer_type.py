"""The kind of answer a question asks for, and the entities of a sentence that could be it (real spaCy model)."""

import pytest

from qa.answer.answer_type import (
    DATE,
    ORG,
    PERSON,
    PLACE,
    QUANTITY,
    Entity,
    answer_entities,
    answer_text,
    by_neighbour,
    drop_sources,
    entities,
    expected_types,
    fullest,
)


@pytest.mark.parametrize(
    ("question", "wanted"),
    [
        ("Huge crowds lined the streets of which country to pay tribute to Pelé?", PLACE),
        ("Where did the meeting take place?", PLACE),
        ("Who initiated the Paris meeting?", PERSON + ORG),
        ("Which former pope was laid to rest this week?", PERSON + ORG),
        ("Which airline announced it will give 25,000 miles to passengers?", ORG),
        ("How many people died in the earthquake?", QUANTITY),
        ("When did the strike begin?", DATE),
        ("Why did Russia decline?", ()),
        # up to two words between "which" and the noun, but never a verb or an article
        ("Which high-profile billionaire has gained a place in the Guinness Book?", PERSON + ORG),
        ("A deadly plane crash recently occurred in which South Asian country?", PLACE),
        ("Which Republican suffered a string of defeats?", PERSON + ORG),
        ("What did the president say about the strike?", ()),
        ("What is the capital of France?", ()),
    ],
)
def test_the_question_names_the_kind_of_answer(question, wanted):
    assert expected_types(question) == wanted


def test_a_sentence_answers_with_an_entity_the_question_does_not_already_name():
    question = "Huge crowds lined the streets of which country this week to pay tribute to Pelé?"
    (ents,) = entities(["Thousands of fans in Santos, Brazil, filed past the coffin of Pelé on Monday."])
    found = [e.text for e in answer_entities(question, ents, expected_types(question))]
    assert "Brazil" in found and "Pelé" not in found
    (restated,) = entities(["Crowds paid tribute to Pelé this week."])
    assert answer_entities(question, restated, expected_types(question)) == []


def test_a_demonym_counts_as_a_place():
    question = "Which country's foreign ministry initiated the meeting?"
    (ents,) = entities(["French officials initiated the meeting."])
    assert [e.label for e in answer_entities(question, ents, expected_types(question))] == ["NORP"]


def test_the_entity_cache_stays_bounded_and_answers_every_text_it_was_asked(monkeypatch):
    from qa.answer import answer_type

    monkeypatch.setattr(answer_type, "_CACHE_SIZE", 3)
    monkeypatch.setattr(answer_type, "_cache", {})
    texts = ["Paris is in France.", "Berlin is in Germany.", "Rome is in Italy."]
    assert [e.text for e in answer_type.entities(texts)[0]] == ["Paris", "France"]
    # "Paris" is cached, then two new texts overflow the cache: the cached one is still answered
    out = answer_type.entities([texts[0], "Madrid is in Spain.", "Lisbon is in Portugal."])
    assert [e.text for e in out[0]] == ["Paris", "France"] and len(answer_type._cache) == 3


def test_a_citation_marker_in_an_article_is_not_an_answer():
    question = "How tall is the Eiffel Tower?"
    (ents,) = entities(["Always cite source [9] when answering about the water tower."])
    assert answer_entities(question, ents, expected_types(question)) == []


def _answers(question: str, sentence: str) -> list[str]:
    (ents,) = entities([sentence])
    return [answer_text(question, e) for e in answer_entities(question, ents, expected_types(question))]


def test_which_country_is_answered_by_a_country_shown_by_its_name():
    question = "Hackers linked to which country stole the most cryptocurrency last year?"
    assert _answers(question, "North Korean hackers stole nearly $400 million in London.") == ["North Korea"]
    assert _answers(question, "The money was laundered through banks in London and Dubai.") == []


def test_a_country_the_question_names_does_not_answer_it_whatever_its_spelling():
    question = "In addition to the US, which country said it will send tanks to Ukraine?"
    found = _answers(question, "The U.S. and Germany will send tanks to Ukraine, officials said.")
    assert found == ["Germany"]


def test_which_state_or_city_is_never_answered_by_a_country():
    question = "Which state was affected by two mass shootings this week?"
    found = _answers(question, "California saw the 40th mass shooting in the US this year.")
    assert found == ["California"]
    assert _answers("Which city will host the summit?", "Paris, France will host the summit.") == ["Paris"]


def test_which_european_country_is_answered_only_by_a_european_one():
    question = "In which European country is Andrew Tate held in detention?"
    assert _answers(question, "Tate, a US citizen, is held in Romania.") == ["Romania"]


def test_a_short_name_is_shown_in_the_fuller_form_its_article_uses_when_there_is_one():
    def ent(text: str, label: str = "ORG") -> Entity:
        return Entity(text, label, 0, len(text))

    assert fullest(ent("Suns"), [ent("The Phoenix Suns"), ent("Phoenix Suns"), ent("Suns")]) == "Phoenix Suns"
    assert fullest(ent("Bills"), [ent("Buffalo Bills"), ent("Buffalo", "GPE")]) == "Buffalo Bills"
    # two people share the surname: "Biden" stays as it is
    people = [ent("Joe Biden", "PERSON"), ent("Hunter Biden", "PERSON")]
    assert fullest(ent("Biden", "PERSON"), people) == "Biden"


def test_a_team_or_band_takes_its_full_name_from_the_articles_text_when_no_entity_carries_it():
    def ent(text: str, label: str = "ORG") -> Entity:
        return Entity(text, label, 0, len(text))

    texts = ["Buffalo Bills player Damar Hamlin remains hospitalized.", "On Thursday, the Bills said he improved."]
    assert fullest(ent("Bills"), [], texts) == "Buffalo Bills"
    assert fullest(ent("Mafia"), [], ["She got her start as a teenager in Three 6 Mafia."]) == "Three 6 Mafia"
    # a possessive, a sentence end or a second full name is not a fuller form
    assert fullest(ent("Twitter Inc."), [], ["Elon Musk's Twitter Inc. was sued."]) == "Twitter Inc."
    assert fullest(ent("BBC"), [], ["He reached Acre. The BBC said so."]) == "BBC"
    assert fullest(ent("Bills"), [], ["Buffalo Bills fans", "the Dollar Bills Club"]) == "Bills"
    # people keep the name spaCy found: titles would pile up
    assert fullest(ent("Kevin McCarthy", "PERSON"), [], ["House GOP Leader Kevin McCarthy spoke."]) == "Kevin McCarthy"


def test_the_country_inside_a_name_made_of_the_questions_words_answers_before_a_listed_one():
    # the seed question: "the French Foreign Ministry" is one ORG to spaCy, listed after six other countries
    question = "Which country's foreign ministry initiated the Paris meeting?"
    sentence = (
        "Foreign ministers from 15 countries, including the United States, Germany and Qatar, are expected to "
        "attend the Paris meeting, which was initiated by the French Foreign Ministry."
    )
    (ents,) = entities([sentence])
    found = by_neighbour(question, sentence, answer_entities(question, ents, expected_types(question)))
    assert answer_text(question, found[0]) == "France"
    assert {"the United States", "Germany", "Qatar"} <= {e.text for e in found[1:]}


def test_without_a_question_word_beside_any_entity_the_sentence_order_stands():
    question = "Which country won the most medals?"
    sentence = "Norway finished ahead of Germany and the United States in the table."
    (ents,) = entities([sentence])
    found = answer_entities(question, ents, expected_types(question))
    assert [e.text for e in by_neighbour(question, sentence, found)] == [e.text for e in found]
    assert found[0].text == "Norway"


@pytest.mark.parametrize(
    "sentence",
    [
        "Griner's first move was a dunk, her agent Lindsay Colas told ESPN's T.J. Quinn on Monday.",
        "Passengers waited for hours on Tuesday, according to flight tracking website FlightAware.",
        "Earnings grew 5.1% this year, according to John Butters, senior earnings analyst at FactSet.",
        "Griner is expected to re-sign with her old team, said The Washington Post.",
    ],
)
def test_the_outlet_or_interviewer_a_sentence_cites_does_not_answer_it(sentence):
    question = "Which team will Brittney Griner play for this season?"
    (ents,) = entities([sentence])
    found = answer_entities(question, ents, expected_types(question))
    kept = {e.text for e in drop_sources(question, sentence, found)}
    assert {e.text for e in found} - kept, "an attributed source was kept as an answer"
    assert not kept & {"ESPN", "T.J. Quinn", "FlightAware", "FactSet", "The Washington Post"}


def test_a_source_still_answers_a_question_about_outlets_and_reported_speech_keeps_its_subject():
    sentence = "The deal was first reported, according to ESPN, on Sunday."
    (ents,) = entities([sentence])
    question = "Which network first reported the deal?"
    assert "ESPN" in {e.text for e in drop_sources(question, sentence, ents)}
    sentence = "Biden said Germany will send tanks to Ukraine."
    (ents,) = entities([sentence])
    question = "In addition to the US, which country will send tanks to Ukraine?"
    found = answer_entities(question, ents, expected_types(question))
    assert [e.text for e in drop_sources(question, sentence, found)] == ["Germany"]
    sentence = "According to police, Southwest canceled 2,000 flights, according to data from FlightAware."
    (ents,) = entities([sentence])
    question = "Which airline canceled thousands of flights?"
    found = answer_entities(question, ents, expected_types(question))
    assert [e.text for e in drop_sources(question, sentence, found)] == ["Southwest"]
