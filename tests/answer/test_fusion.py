"""Weighted reciprocal-rank fusion (qa.answer.retrieve.fuse): pure arithmetic on ranked id lists, no model."""

from __future__ import annotations

import pytest

from qa.answer.retrieve import fuse


def ordered(fused: dict[int, float]) -> list[int]:
    """The ids best first, as the retriever orders them."""
    return sorted(fused, key=fused.__getitem__, reverse=True)


def test_ranks_start_at_one_and_only_ranks_count():
    fused = fuse([(1.0, [(7, 0.99), (8, 0.10), (9, -5.0)])], rrf_k=60)
    assert fused == pytest.approx({7: 1 / 61, 8: 1 / 62, 9: 1 / 63})
    # Scores on another scale (BM25, negative, huge) change nothing: only the order of the list does.
    assert fuse([(1.0, [(7, 1e9), (8, 0.0), (9, -1e9)])], rrf_k=60) == fused


def test_an_id_in_both_lists_gets_the_sum_of_its_weighted_terms():
    dense = [(1, 0.9), (2, 0.8), (3, 0.7)]
    sparse = [(3, 12.0), (4, 11.0)]
    fused = fuse([(0.6, dense), (0.4, sparse)], rrf_k=10)
    assert fused == pytest.approx({1: 0.6 / 11, 2: 0.6 / 12, 3: 0.6 / 13 + 0.4 / 11, 4: 0.4 / 12})
    assert ordered(fused) == [3, 1, 2, 4]  # found by both lists beats first in one


def test_weights_decide_between_the_lists():
    dense, sparse = [(1, 0.9)], [(2, 3.0)]
    even = fuse([(1.0, dense), (1.0, sparse)], rrf_k=60)
    assert even[1] == pytest.approx(even[2])  # equal weights: first in either list is worth the same
    assert ordered(fuse([(0.7, dense), (0.3, sparse)], rrf_k=60)) == [1, 2]
    assert ordered(fuse([(0.3, dense), (0.7, sparse)], rrf_k=60)) == [2, 1]
    # A weight of zero leaves the ids of that list in, with nothing added.
    assert fuse([(1.0, dense), (0.0, sparse)], rrf_k=60) == pytest.approx({1: 1 / 61, 2: 0.0})


def test_rrf_k_flattens_the_difference_between_ranks():
    ranked = [(1, 0.0), (2, 0.0)]
    sharp, flat = fuse([(1.0, ranked)], rrf_k=0), fuse([(1.0, ranked)], rrf_k=1000)
    assert sharp == pytest.approx({1: 1.0, 2: 0.5})
    assert sharp[1] / sharp[2] > flat[1] / flat[2] > 1.0


def test_order_follows_the_lists_and_an_empty_input_gives_nothing():
    assert fuse([], rrf_k=60) == {} and fuse([(1.0, []), (1.0, [])], rrf_k=60) == {}
    dense = [(5, 0.5), (6, 0.4), (7, 0.3)]
    sparse = [(7, 9.0), (6, 8.0), (5, 7.0)]
    fused = fuse([(1.0, dense), (1.0, sparse)], rrf_k=60)
    assert fused[5] == pytest.approx(fused[7]) and fused[6] == pytest.approx(2 / 62)
    assert ordered(fuse([(1.0, dense)], rrf_k=60)) == [5, 6, 7]
    # A half-weight first place is worth less than a full-weight third place.
    assert ordered(fuse([(1.0, dense), (0.5, [(8, 1.0)])], rrf_k=60)) == [5, 6, 7, 8]


def test_an_id_repeated_within_one_list_counts_at_every_rank_it_holds():
    """Pins down current behaviour: fuse does not de-duplicate; dense and BM25 lists never repeat an id."""
    assert fuse([(1.0, [(1, 0.9), (1, 0.8)])], rrf_k=0) == pytest.approx({1: 1.0 + 0.5})
