"""A real multi-node Ray cluster on this machine, on 127.0.0.1 only, for tests and benchmarks.

Each node is a `ray start --block` process (head, then workers joining it) in a session of its own, so stopping
the cluster ends exactly the processes it started, by session id, never by name (`ray stop` would end every Ray
process of the machine). Ray rewrites a loopback --node-ip-address to the machine's outward address; with its
"clusters off" switch (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) it keeps 127.0.0.1, but then refuses to start a second
node. `ray start` here therefore runs with that switch on for the daemons it starts and, inside the CLI process
only, the multi-node check allowed and the address lookup pinned to 127.0.0.1. `sockets()` checks the result.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port

RAY_START = """
import sys
import ray._private.ray_constants as constants
import ray._private.services as services
constants.ENABLE_RAY_CLUSTER = True  # allow a second node on this machine...
services.node_ip_address_from_perspective = lambda address=None: "127.0.0.1"  # ...addressed by loopback only
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class LocalRayCluster:
    """A head node plus `workers` worker nodes, each offering `cpus` CPUs; `address` is host:port of the head."""

    def __init__(self, workers: int = 1, cpus: int = 1, timeout: float = 120.0):
        self.dir = Path(tempfile.mkdtemp(prefix="qa-ray-"))  # short: Ray's socket paths live under it
        self.address = f"127.0.0.1:{free_port()}"
        self.nodes = 1 + workers
        self._procs: list[subprocess.Popen] = []
        common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--disable-usage-stats"]
        common.append("--object-store-memory=100000000")
        try:
            self._start(
                "head",
                "--head",
                f"--port={self.address.split(':')[1]}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={self.dir}",
                *common,
            )
            self._wait_for_log("head", timeout)
            for i in range(workers):
                self._start(f"worker{i}", f"--address={self.address}", *common)
            for i in range(workers):
                self._wait_for_log(f"worker{i}", timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, *args: str) -> None:
        with open(self.dir / f"{name}.log", "wb") as log:
            self._procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", RAY_START, "start", *args],
                    env=os.environ | ENV,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its session id is its pid: stop() ends that session
                )
            )

    def _wait_for_log(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        log = self.dir / f"{name}.log"
        while "Ray runtime started" not in log.read_text(errors="replace"):
            proc = self._procs[-1] if name == "head" else None
            if time.monotonic() > deadline or (proc and proc.poll() is not None):
                raise RuntimeError(f"ray {name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def pids(self) -> set[int]:
        """Every live process the cluster started (members of the nodes' sessions)."""
        sessions = {p.pid for p in self._procs}
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) in sessions and fields[0] != "Z":
                pids.add(int(stat.parent.name))
        return pids

    def sockets(self) -> set[tuple[str, str]]:
        """(local address, remote address) of every TCP/UDP socket the cluster's processes hold."""
        inodes = set()
        for pid in self.pids():
            for fd in Path(f"/proc/{pid}/fd").glob("*"):
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        found = set()
        for table in ("tcp", "tcp6", "udp", "udp6"):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[9] in inodes:
                    found.add((_ip(cols[1]), _ip(cols[2])))
        return found

    def stop(self) -> None:
        """End the cluster's processes: politely, then by force; only the sessions this cluster started."""
        for proc in self._procs:
            _kill(-proc.pid, signal.SIGTERM)  # the process group of `ray start` and the daemons it started
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.pids():
            _kill(pid, signal.SIGKILL)
        for proc in self._procs:
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _ip(hex_address: str) -> str:
    """/proc/net/* "0100007F:1F90" (or the 32-digit IPv6 form) -> "127.0.0.1"; IPv4-mapped IPv6 as IPv4."""
    raw = bytes.fromhex(hex_address.split(":")[0])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is little-endian
    if len(words) == 16 and words[:12] == b"\0" * 10 + b"\xff\xff":
        words = words[12:]
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)
