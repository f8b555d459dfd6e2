"""Chat-model backends behind one setting, all as LangChain chat models so one LCEL chain serves them all."""

from __future__ import annotations

import atexit
import os
import threading
import warnings
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from qa.answer.gguf import ModelUnavailable, packaged_qwen
from qa.settings import GENERATIVE, Settings

_cache: dict[tuple, BaseChatModel] = {}
_lock = threading.Lock()


def chat_model(settings: Settings, backend: str) -> BaseChatModel:
    """The chat model for `backend`, built once per process and configuration (a GGUF loads only once)."""
    if backend not in GENERATIVE:
        raise ValueError(f"unknown answer backend '{backend}' (choose from extractive, {', '.join(GENERATIVE)})")
    s = settings
    key = (backend, str(s.gguf_path), s.llm_threads, s.llm_context, s.max_answer_tokens, s.openai_base_url,
           s.openai_model, s.ollama_base_url, s.ollama_model)  # fmt: skip
    with _lock:
        if key not in _cache:
            _cache[key] = _build(settings, backend)
        return _cache[key]


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models while the interpreter is whole: left to Llama.__del__ at exit, they print
    "Exception ignored in Llama.__del__ ... 'NoneType' object is not callable"."""
    with _lock:
        for model in _cache.values():
            client = getattr(model, "client", None)
            if type(client).__name__ == "Llama":  # ChatLlamaCpp's llama_cpp.Llama
                client.close()
        _cache.clear()


def _build(s: Settings, backend: str) -> BaseChatModel:
    if backend == "llamacpp":
        path = Path(s.gguf_path) if s.gguf_path else packaged_qwen(s.model_cache_dir)
        if not path.is_file():
            raise ModelUnavailable(f"GGUF model {path} not found: set QA_GGUF_PATH to a .gguf file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # langchain-community's sunset notice
            from langchain_community.chat_models import ChatLlamaCpp
        try:
            return ChatLlamaCpp(
                model_path=str(path),
                n_ctx=s.llm_context,
                n_threads=s.llm_threads,
                n_batch=256,
                temperature=0.0,
                max_tokens=s.max_answer_tokens,
                streaming=True,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp raises plain ValueErrors for bad files
            raise ModelUnavailable(f"could not load GGUF model {path}: {exc}") from None
    if backend == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            base_url=s.openai_base_url,
            model=s.openai_model,
            api_key=os.environ.get(s.openai_api_key_env) or "not-needed",
            temperature=0.0,
            max_tokens=s.max_answer_tokens,
            timeout=s.llm_timeout_s,
            max_retries=1,
            streaming=True,
        )
    from langchain_ollama import ChatOllama

    return ChatOllama(
        base_url=s.ollama_base_url, model=s.ollama_model, temperature=0.0, num_predict=s.max_answer_tokens
    )
