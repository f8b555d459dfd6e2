"""The BM25 base file: raw numpy arrays behind a JSON header, written durably and read back as data only.

Layout: MAGIC, the header's length (8 bytes, little-endian), the header (JSON: each array's name, dtype, shape and
offset), then the arrays' bytes, each at a 64-byte boundary. Written to a temp file, fsynced and renamed; its
sha256 goes into meta in the SQLite commit that makes it the base. It is loaded only when that checksum matches
and every array has the type and shape this module writes (np.frombuffer of the bytes: nothing is unpickled).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from qa.store.base import IndexCorrupt
from qa.store.bm25_state import Base

MAGIC = b"QABM25\x01\n"
ALIGN = 64
_DTYPES = {"indptr": "<i8", "docs": "<i4", "tfs": "|u1", "ids": "<i8", "lengths": "<i4", "terms": "|u1"}


def write_base(base: Base, path: Path) -> str:
    """Write `base` to `path` durably (temp file, fsync, rename; the caller fsyncs the folder); its sha256."""
    arrays = {
        "indptr": base.indptr,
        "docs": base.docs,
        "tfs": base.tfs,
        "ids": base.ids,
        "lengths": base.lengths,
        "terms": np.frombuffer("\n".join(base.terms).encode(), dtype=np.uint8),
    }
    entries, offset = [], 0
    for name, array in arrays.items():
        offset = -(-offset // ALIGN) * ALIGN
        entries.append({"name": name, "dtype": _DTYPES[name], "shape": [len(array)], "offset": offset})
        offset += len(array) * np.dtype(_DTYPES[name]).itemsize
    header = json.dumps({"arrays": entries, "terms": len(base.terms)}).encode()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    digest = hashlib.sha256()
    with open(tmp, "wb") as fh:
        for part in (MAGIC, len(header).to_bytes(8, "little"), header):
            fh.write(part)
            digest.update(part)
        written = 0
        for entry, array in zip(entries, arrays.values(), strict=True):
            pad = bytes(entry["offset"] - written)
            data = np.ascontiguousarray(array, dtype=entry["dtype"]).tobytes()
            for part in (pad, data):
                fh.write(part)
                digest.update(part)
            written = entry["offset"] + len(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return digest.hexdigest()


def read_base(path: Path, sha256: str | None) -> Base | None:
    """The base in `path`, or None when there is no such file; IndexCorrupt when it is not the one recorded."""
    try:
        size = path.stat().st_size
        buf = bytearray(size)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:  # hashed while read: one pass, one copy in memory
            view, done = memoryview(buf), 0
            while done < size:
                got = fh.readinto(view[done : done + (1 << 24)])
                if not got:
                    break
                digest.update(view[done : done + got])
                done += got
    except FileNotFoundError:
        return None
    if done != size or digest.hexdigest() != sha256:
        raise IndexCorrupt(
            f"{path} does not match the checksum recorded when it was written (changed or damaged); "
            "it was not loaded. Delete the index folder and re-index."
        )
    try:
        return _parse(buf)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(
            f"{path} matches its recorded checksum but is not a BM25 index this program writes ({exc}); "
            "it was not used. Delete the index folder and re-index."
        ) from None


def _parse(buf: bytearray) -> Base:
    if bytes(buf[: len(MAGIC)]) != MAGIC:
        raise ValueError("no BM25 header")
    hlen = int.from_bytes(buf[len(MAGIC) : len(MAGIC) + 8], "little")
    start = len(MAGIC) + 8 + hlen
    header = json.loads(bytes(buf[len(MAGIC) + 8 : start]))
    arrays = {}
    for entry in header["arrays"]:
        name, dtype, (count,), offset = entry["name"], entry["dtype"], entry["shape"], int(entry["offset"])
        if _DTYPES.get(name) != dtype or not isinstance(count, int) or count < 0 or offset < 0:
            raise ValueError(f"array {name!r} of type {dtype}")
        nbytes = count * np.dtype(dtype).itemsize
        if start + offset + nbytes > len(buf):
            raise ValueError(f"array {name!r} runs past the end of the file")
        arrays[name] = np.frombuffer(buf, dtype=dtype, count=count, offset=start + offset)
    if set(arrays) != set(_DTYPES):
        raise ValueError("arrays missing")
    text = arrays["terms"].tobytes().decode()
    terms = text.split("\n") if header["terms"] else []
    indptr, docs, ids, lengths = arrays["indptr"], arrays["docs"], arrays["ids"], arrays["lengths"]
    if len(terms) != header["terms"] or len(indptr) != len(terms) + 1 or len(lengths) != len(ids):
        raise ValueError("array lengths disagree")
    if indptr[0] != 0 or indptr[-1] != len(docs) or len(arrays["tfs"]) != len(docs) or np.any(np.diff(indptr) < 0):
        raise ValueError("postings offsets")
    if len(docs) and (docs.min() < 0 or docs.max() >= len(ids)):
        raise ValueError("a posting points past the chunks")
    if np.any(np.diff(ids) <= 0) or (len(lengths) and lengths.min() < 0):
        raise ValueError("chunk ids or lengths")
    return Base(terms, indptr, docs, arrays["tfs"], ids, lengths)
