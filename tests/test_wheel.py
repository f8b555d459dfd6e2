"""A non-editable install answers: build the wheel from (a copy of) the checkout, install it into a fresh virtual
environment outside the checkout, and index, ask, abstain and load every prompt with it, from a folder that is not
the checkout. The prompts must come from the wheel (package data `qa.prompts`), not from the repo's prompts/.

The heavy dependencies are not reinstalled: a .pth file in the new environment's site-packages names this
environment's site-packages. Python does not process .pth files in a directory a .pth line adds, so the editable
install of qa here (a .pth plus a finder) stays out, and `import qa` finds the wheel's copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, SEEDS

pytestmark = pytest.mark.slow

PROMPTS = sorted(p.name for p in (ROOT / "prompts").iterdir() if p.is_file() and p.suffix == ".txt")
SEED_ARTICLE = "russia-stays-away-from-paris-meeting-on-syria.txt"
# Not part of a build: environments, caches, build output and data the tests or the app write.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "test-artifacts",
    "vectorstore",
)  # fmt: skip

# Run by the new environment's python, with cwd a folder outside the checkout holding a copy of seeds/.
SCRIPT = """
import importlib.util, json, sys

import qa
from qa.answer import prompts

packaged = importlib.util.find_spec("qa.prompts")  # None when the wheel lacks it: prompt() then falls back
index_dir, names = sys.argv[1], json.loads(sys.argv[2])
assistant = qa.Assistant(qa.Settings(index_dir=index_dir, backend="extractive"))
report = assistant.index([f"seeds/{sys.argv[3]}"])
answered = assistant.ask("Why did Russia decline?")
passages = {p.chunk_id: p.text for p in answered.passages}
abstained = assistant.ask("Who won the 2010 World Cup?")
print(json.dumps({
    "qa_file": qa.__file__,
    "sys_path": sys.path,
    "editable_finders": sorted(m for m in sys.modules if m.startswith("__editable__")),
    "prompts_package": list(packaged.submodule_search_locations or []) if packaged else [],
    "abstain_file": str(prompts._folder().joinpath("abstain.txt")),
    "prompts": {name: prompts.prompt(name) for name in names},
    "added": report.added,
    "rejected": [r.reason for r in report.rejected],
    "chunks": report.chunks_embedded,
    "answer": {
        "text": answered.text,
        "abstained": answered.abstained,
        "cited": [passages.get(c.chunk_id, "") for c in answered.citations],
        "quotes": [c.quote for c in answered.citations],
    },
    "abstain": {"text": abstained.text, "abstained": abstained.abstained, "citations": len(abstained.citations)},
}))
"""


def run(args: list[str | Path], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


class Installed:
    def __init__(self, tmp: Path):
        assert ROOT not in tmp.parents, f"{tmp} must be outside the checkout"
        self.tmp = tmp
        # Build from a copy: an in-tree build leaves build/ and rewrites *.egg-info in the checkout.
        src = tmp / "src"
        shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
        wheels = tmp / "wheels"
        run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, src],
            timeout=600,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        (self.wheel,) = wheels.glob("news_qa-*.whl")

        self.venv = tmp / "venv"
        run([sys.executable, "-m", "venv", "--without-pip", self.venv], timeout=120)
        self.python = self.venv / "bin" / "python"
        # this environment's pip installs into the new one (--python); no second pip to bootstrap
        run(
            [sys.executable, "-m", "pip", "--python", self.python, "install", "--no-deps", "-q", self.wheel],
            timeout=600,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        get_purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        self.site = Path(run([self.python, "-c", get_purelib], timeout=60).stdout.strip())
        assert self.site.is_relative_to(self.venv), self.site
        self.deps = sysconfig.get_paths()["purelib"]  # this environment's packages: torch, faiss, the models
        (self.site / "news-qa-test-deps.pth").write_text(self.deps + "\n", encoding="utf-8")

        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        self.env.update(
            HF_HUB_OFFLINE="1",
            PYTHONNOUSERSITE="1",
            VIRTUAL_ENV=str(self.venv),
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.work = tmp / "work"  # the cwd: not the checkout, so neither qa/ nor prompts/ is found from it
        self.work.mkdir()
        shutil.copytree(SEEDS, self.work / "seeds")
        self.index_dir = self.work / "index"

    def check(self) -> dict:
        """Index, ask and load the prompts in the new environment; what it saw, as a dict."""
        script = self.work / "check_install.py"
        script.write_text(SCRIPT, encoding="utf-8")
        args = [self.python, script, self.index_dir, json.dumps(PROMPTS), SEED_ARTICLE]
        out = run(args, timeout=900, cwd=self.work, env=self.env).stdout
        return json.loads(out.strip().splitlines()[-1])

    def qa(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The installed console script."""
        return run([self.venv / "bin" / "qa", *args], timeout=timeout, cwd=self.work, env=self.env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return Installed(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def result(installed: Installed) -> dict:
    return installed.check()


def test_wheel_carries_the_prompts(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = [name for name in PROMPTS if f"qa/prompts/{name}" not in names]
    assert not missing, f"{installed.wheel.name} lacks qa/prompts/{missing}"
    assert (installed.site / "qa" / "prompts" / "abstain.txt").is_file()


def test_imports_the_installed_wheel_not_the_checkout(installed: Installed, result: dict) -> None:
    assert Path(result["qa_file"]).is_relative_to(installed.site), result["qa_file"]
    assert result["editable_finders"] == [], "the .venv's editable install of qa was picked up"
    for entry in result["sys_path"]:
        path = Path(entry or installed.work).resolve()
        assert path == Path(installed.deps).resolve() or not path.is_relative_to(ROOT), f"{entry} is in the checkout"
    prompts_dir = installed.site / "qa" / "prompts"
    assert [Path(p) for p in result["prompts_package"]] == [prompts_dir]  # a namespace package (no __init__)
    assert Path(result["abstain_file"]) == prompts_dir / "abstain.txt", "prompts fell back to a folder outside qa"


def test_every_prompt_loads(result: dict) -> None:
    assert "abstain.txt" in PROMPTS
    for name in PROMPTS:
        expected = (ROOT / "prompts" / name).read_text(encoding="utf-8").strip()
        assert result["prompts"][name] == expected, name


def test_indexes_and_answers_with_a_citation(result: dict) -> None:
    assert len(result["added"]) == 1 and not result["rejected"], result
    assert result["chunks"] > 0
    answer = result["answer"]
    assert not answer["abstained"], answer
    assert any("one-sided" in passage for passage in answer["cited"]), answer
    assert any("one-sided" in quote for quote in answer["quotes"]), answer


def test_abstains_with_the_packaged_message(result: dict) -> None:
    abstain = result["abstain"]
    expected = (ROOT / "prompts" / "abstain.txt").read_text(encoding="utf-8").strip()
    assert expected == "The articles don't say."
    assert abstain == {"text": expected, "abstained": True, "citations": 0}


def test_console_script_reads_the_index(installed: Installed, result: dict) -> None:
    stats = json.loads(installed.qa("stats", "--index", installed.index_dir, "--json").stdout)
    assert Path(stats["index"]).resolve() == installed.index_dir.resolve()
    assert stats["articles"] == 1
    assert stats["chunks"] == result["chunks"]
