"""`qa index` shows progress on a terminal (chunking and embedding bars, with an ETA) and ends with one line of
throughput; with stderr not a terminal (a pipe, a log, CI) it prints neither. The terminal is a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.helpers import SEEDS


def _index(tmp_path: Path, name: str, terminal: bool) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} | {"QA_INDEX_DIR": str(tmp_path / name)}
    command = [sys.executable, "-m", "qa", "index", str(SEEDS)]
    if not terminal:
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        return out.returncode, out.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a real terminal has a size
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        seen += data
    os.close(leader)
    return proc.wait(timeout=300), seen.decode(errors="replace")


def test_a_terminal_gets_bars_and_a_throughput_line_and_a_pipe_gets_neither(tmp_path: Path):
    code, shown = _index(tmp_path, "tty", terminal=True)
    assert code == 0, shown
    assert "chunking" in shown and "embedding" in shown and "chunk/s" in shown, shown  # tqdm's rate and ETA
    [summary] = [line for line in shown.splitlines() if line.strip().startswith("indexed ")]
    assert "chunks of 1 articles in" in summary and "chunks/s (chunking" in summary
    code, piped = _index(tmp_path, "pipe", terminal=False)
    assert code == 0 and "chunking" not in piped and "embedding" not in piped and "chunks/s" not in piped, piped
