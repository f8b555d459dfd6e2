"""Country names, codes and demonyms (the countryinfo package's data, no network)."""

import pytest

from qa.answer.places import countries_named, country_of, in_region, is_only_a_country, region_asked


@pytest.mark.parametrize(
    ("text", "country"),
    [
        ("U.S.", "United States"), ("the US", "United States"), ("American", "United States"),
        ("North Korean", "North Korea"), ("Chinese", "China"), ("British", "United Kingdom"), ("UK", "United Kingdom"),
        ("Brazil's", "Brazil"), ("London", None), ("Fla.", None), ("Midwest", None), ("IT", None),
    ],
)  # fmt: skip
def test_a_name_code_or_demonym_means_its_country(text, country):
    assert country_of(text) == country


def test_a_city_state_or_a_us_states_namesake_is_not_only_a_country():
    assert is_only_a_country("Brazil") and is_only_a_country("Chinese")
    assert not is_only_a_country("Singapore") and not is_only_a_country("Georgia")
    assert not is_only_a_country("Texas")


def test_the_countries_a_question_names():
    assert countries_named("In addition to the U.S., which country will send tanks to Ukraine?") == {
        "United States", "Ukraine",
    }  # fmt: skip
    assert countries_named("Which country's prime minister resigned?") == set()


def test_which_european_country_asks_for_a_country_in_europe():
    region = region_asked("In which European country is he held?")
    assert in_region("Romania", region) and not in_region("United States", region)
    assert region_asked("Which country won?") == "" and in_region("Brazil", "")
