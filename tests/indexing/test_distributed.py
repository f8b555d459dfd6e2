"""Indexing on a real Ray cluster (a head and a worker node started with `ray start`, on 127.0.0.1 only): the
result equals a single-process index, and re-indexing stays incremental."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qa
from qa.indexing.distributed import ray_embedder
from qa.settings import Settings
from qa.store import faiss_store
from qa.store.codec import decode_vectors
from tests.helpers import SEEDS
from tests.ray_cluster import ENV, LocalRayCluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(workers=1, cpus=1) as running:
        try:
            yield running
        finally:
            import ray

            ray.shutdown()  # this process's driver leaves before the nodes go


def chunk_rows(index_dir: Path) -> tuple[list[str], np.ndarray]:
    rows = (
        faiss_store(index_dir).connection().execute("SELECT chunk_id, vector FROM chunks ORDER BY chunk_id").fetchall()
    )
    return [r[0] for r in rows], decode_vectors([r[1] for r in rows], 384)


def assert_same_index(a: Path, b: Path) -> None:
    ids_a, vectors_a = chunk_rows(a)
    ids_b, vectors_b = chunk_rows(b)
    assert ids_a == ids_b
    assert np.allclose(vectors_a, vectors_b, atol=2.5e-3)  # stored as int8: one rounding step apart at most


def test_qa_index_with_ray_equals_a_single_process_index(cluster: LocalRayCluster, tmp_path: Path, corpus: Path):
    local = qa.Assistant(Settings(index_dir=tmp_path / "local", backend="extractive"))
    local.index([SEEDS, corpus])
    env = os.environ | ENV
    proc = subprocess.run(
        [sys.executable, "-m", "qa", "index", "--index", str(tmp_path / "ray"), "--ray", cluster.address, "-v"]
        + [str(SEEDS), str(corpus)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 workers on 2 nodes" in proc.stderr  # the work went to both nodes
    assert_same_index(tmp_path / "local", tmp_path / "ray")
    assert faiss_store(tmp_path / "ray").check() == []


def test_re_indexing_on_ray_embeds_only_what_changed(cluster: LocalRayCluster, tmp_path: Path, corpus: Path):
    settings = Settings(index_dir=tmp_path / "ray", backend="extractive", ray_address=cluster.address)
    distributed = qa.Assistant(settings)
    first = distributed.index([corpus])
    assert first.chunks_embedded > 0 and ray_embedder(settings).nodes == 2
    assert distributed.index([corpus]).chunks_embedded == 0  # unchanged: nothing sent to the cluster

    path = corpus / "harbor-bridge.txt"
    path.write_text(path.read_text().replace("412 million euros", "530 million euros"))
    changed = distributed.index([corpus])
    assert len(changed.updated) == 1 and 0 < changed.chunks_embedded < first.chunks_embedded

    local = qa.Assistant(Settings(index_dir=tmp_path / "local", backend="extractive"))
    local.index([corpus])
    assert_same_index(tmp_path / "local", tmp_path / "ray")
    assert "530 million" in distributed.ask("How much will the bridge cost?").text


def test_the_cluster_talks_over_loopback_only(cluster: LocalRayCluster):
    sockets = cluster.sockets()
    assert sockets, "no sockets found for the cluster's processes"
    assert {local for local, _ in sockets} == {"127.0.0.1"}
    assert {remote for _, remote in sockets} <= {"127.0.0.1", "0.0.0.0", "::"}  # 0.0.0.0, ::: not connected
