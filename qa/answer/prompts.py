"""Prompts and fixed messages, kept out of code as files so they can be edited and reviewed. The repo keeps them
in its top-level prompts/; an installed package carries them as package data `qa.prompts`."""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path


def _folder() -> Traversable:
    try:
        return resources.files("qa.prompts")
    except ModuleNotFoundError:  # a source checkout (or editable install) reads the repo's prompts/ itself
        return Path(__file__).resolve().parents[2] / "prompts"


@cache
def prompt(name: str) -> str:
    """The text of prompts/<name>, without surrounding white space."""
    return _folder().joinpath(name).read_text(encoding="utf-8").strip()
