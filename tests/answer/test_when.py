"""Time words in questions (qa/answer/when.py): our own rules and dateparser, no index needed."""

import datetime as dt

import pytest

from qa.answer.when import as_date, time_frame

THU = dt.date(2023, 1, 5)  # a Thursday


@pytest.mark.parametrize(
    ("question", "start", "end", "explicit"),
    [
        ("Who won this week?", dt.date(2022, 12, 29), THU, False),
        ("What happened last week?", dt.date(2022, 12, 22), THU, False),
        ("Which company recently announced layoffs?", dt.date(2022, 12, 6), THU, False),
        ("What did he say yesterday?", dt.date(2023, 1, 4), THU, True),
        ("What happened today?", THU, THU, True),
        ("What did the Senate pass on Monday?", dt.date(2023, 1, 2), THU, True),  # reported until today
        ("Who resigned in June?", dt.date(2022, 6, 1), dt.date(2022, 7, 8), True),  # ... and a week after June
        ("What was decided in January?", dt.date(2023, 1, 1), THU, True),
        ("What did the Fed do last month?", dt.date(2022, 12, 1), THU, True),
        ("What changed since December 20?", dt.date(2022, 12, 20), THU, True),
        ("What was announced on Dec. 3?", dt.date(2022, 12, 3), dt.date(2022, 12, 10), True),
        ("What happened before 2022-11-30?", dt.date(1900, 1, 1), dt.date(2022, 11, 30), True),
    ],
)
def test_time_words_become_a_window_before_the_question_date(question, start, end, explicit):
    frame = time_frame(question, THU)
    assert (frame.start, frame.end, frame.explicit) == (start, end, explicit)
    assert frame.end <= THU  # nothing after the day asked
    assert frame.phrase and frame.phrase.lower() in question.lower()


@pytest.mark.parametrize(
    "question",
    [
        "Why did Russia decline?",
        "What may happen to interest rates?",
        "Which team does Damar Hamlin play for?",
        "How much did the PAC spend in 2022?",  # the event's year, not the report's
        "Who is the mayor of New York?",  # "new" is not "recent"
        "What was announced on 2023-02-01?",  # after the question's date: no report can be in it
    ],
)
def test_questions_without_time_words_have_no_window(question):
    frame = time_frame(question, THU)
    assert frame.window is None and not frame.explicit


def test_date_fit_is_one_inside_the_window_and_decays_outside():
    frame = time_frame("Who won this week?", THU)
    assert frame.fit("2023-01-03") == 1.0
    assert frame.fit("2022-12-20") < frame.fit("2022-12-27") < 1.0
    assert frame.fit("2023-01-09") == 0.0  # after the question: never evidence
    assert frame.fit("") == 0.5  # undated: neither favoured nor dropped
    timeless = time_frame("Why did Russia decline?", THU)  # no time words: the latest of the evidence fits best
    assert timeless.fit("2021-03-01") == 0.5
    assert timeless.fit("2021-03-01", newest=dt.date(2021, 3, 1)) == 1.0
    assert timeless.fit("2021-01-01", newest=dt.date(2021, 3, 1)) < 0.1


def test_as_of_reads_the_eval_sets_date_forms_and_rejects_non_dates():
    assert as_date("2023/01/05") == as_date("2023-01-05") == THU
    assert as_date(dt.datetime(2023, 1, 5, 13, 0)) == THU
    assert as_date(None) == dt.date.today()
    with pytest.raises(ValueError, match="not a date"):
        as_date("the day after the flood")


def test_a_relative_day_in_a_sentence_is_resolved_against_its_article_date():
    from qa.answer.when import resolve

    assert resolve("Tuesday", "2023-01-05") == "2023-01-03"
    assert resolve("Tuesday", "2023-01-03") == "2023-01-03"  # the article's own weekday is that day
    assert resolve("yesterday", "2023-01-05") == "2023-01-04"
    assert resolve("Jan. 3", "2023-01-05") == "2023-01-03"
    assert resolve("Tuesday", "") == ""  # undated article: nothing to resolve against
    assert resolve("the 1990s", "2023-01-05") == ""  # not a day
