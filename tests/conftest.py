"""Shared fixtures. Everything here is real: the packaged MiniLM model, FAISS, SQLite; nothing is faked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import qa
from qa.settings import Settings
from tests.helpers import DATA, SEEDS


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index", lock_timeout_s=5, backend="extractive")


@pytest.fixture
def assistant(settings: Settings) -> qa.Assistant:
    return qa.Assistant(settings)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of the test articles (one file of every supported format)."""
    target = tmp_path / "articles"
    shutil.copytree(DATA / "articles", target)
    return target


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> qa.Assistant:
    """An assistant over the seed articles plus the test articles, indexed once for read-only tests."""
    index_dir = tmp_path_factory.mktemp("seeded") / "index"
    assistant = qa.Assistant(Settings(index_dir=index_dir, backend="extractive"))
    report = assistant.index([SEEDS, DATA / "articles"])
    assert not report.rejected, report.rejected
    return assistant
