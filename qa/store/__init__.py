"""Stage 4: the persisted index. One SQLite store (qa/store/sqlite.py) owns a VectorIndex: FAISS files
(qa/store/faiss_index.py, the default) or a Milvus collection (qa/store/milvus.py). `open_store` picks by settings;
callers type against the `VectorStore` protocol (qa/store/base.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qa.store.base import (
    FileStamp,
    Filters,
    IndexCorrupt,
    IndexLocked,
    IndexMissing,
    StoreError,
    Upsert,
    VectorIndex,
    VectorStore,
)
from qa.store.sql import DB_NAME, SCHEMA_VERSION
from qa.store.sqlite import SQLiteStore, StoreView

if TYPE_CHECKING:
    from pathlib import Path

    from qa.settings import Settings

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "FileStamp",
    "Filters",
    "IndexCorrupt",
    "IndexLocked",
    "IndexMissing",
    "SQLiteStore",
    "StoreError",
    "StoreView",
    "Upsert",
    "VectorIndex",
    "VectorStore",
    "faiss_store",
    "open_store",
]


def faiss_store(path: Path | str, create: bool = False, settings: Settings | None = None) -> SQLiteStore:
    """The embedded default: SQLite plus FAISS files in the same folder (tuned by the "vector index" settings)."""
    from qa.store.faiss_index import FaissIndex, FaissOptions

    options = FaissOptions.from_settings(settings) if settings is not None else None
    return SQLiteStore(path, FaissIndex(path, options), create=create, bm25=_bm25_options(settings))


def milvus_store(path: Path | str, uri: str, create: bool = False, settings: Settings | None = None) -> SQLiteStore:
    """SQLite in `path`, the vectors in Milvus at `uri` (a Milvus Lite .db path or http://host:19530)."""
    from qa.store.milvus import MilvusIndex

    return SQLiteStore(path, MilvusIndex(uri, create=create), create=create, bm25=_bm25_options(settings))


def _bm25_options(settings: Settings | None):
    from qa.store.bm25_index import Bm25Options

    return Bm25Options.from_settings(settings) if settings is not None else None


def open_store(settings: Settings, create: bool = False) -> VectorStore:
    """The store settings.vector_uri picks: FAISS files in index_dir (empty, the default) or Milvus."""
    if settings.vector_uri:
        return milvus_store(settings.index_dir, settings.vector_uri, create=create, settings=settings)
    return faiss_store(settings.index_dir, create=create, settings=settings)
