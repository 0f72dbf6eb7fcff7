"""Word vectors from co-occurrences (PPMI + SVD) that the review classifier starts from."""

import numpy as np
import pytest
import torch

from tasks.reviews.ppmi_embeddings import TARGET_STD, cooccurrence, ppmi, ppmi_svd_embeddings
from tasks.reviews.train import init_embedding


def topic_corpus(n=400, seed=0):
    """Ids 4-7 always appear beside context words 20-29, ids 8-11 beside 30-39: two kinds of words."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        group = rng.integers(2)
        words = rng.choice([4, 5, 6, 7] if group == 0 else [8, 9, 10, 11], 2)
        context = rng.choice(np.arange(20, 30) if group == 0 else np.arange(30, 40), 6)
        seqs.append(rng.permutation(np.concatenate([words, context])).tolist())
    return seqs


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_counts_pairs_within_the_window_both_ways_without_specials():
    counts, n = cooccurrence([[5, 6, 7, 1, 5]], vocab_size=8, window=2, first_id=4)
    counts = counts.toarray()
    assert n == 1
    assert counts[5, 6] == counts[6, 5] == 1 and counts[6, 7] == 1  # neighbours
    assert counts[5, 7] == counts[7, 5] == 2  # 2 apart, twice: 5 _ 7 and 7 _ 5
    assert counts[5, 5] == 0  # the two 5s are 4 apart: not counted
    assert counts[1].sum() == counts[:, 1].sum() == 0  # <unk> (id 1) left out


def test_ppmi_is_non_negative_and_high_for_pairs_seen_more_than_chance():
    counts, _ = cooccurrence(topic_corpus(), vocab_size=40, window=3, first_id=4)
    m = ppmi(counts).toarray()

    assert (m >= 0).all() and m[4, 20] > 0 and m[4, 30] == 0  # never together: no mass


def test_counts_summed_in_chunks_equal_one_pass_over_a_stream():
    whole, n = cooccurrence(topic_corpus(), vocab_size=40, window=3, first_id=4, chunk=10**6)
    chunked, m = cooccurrence(iter(topic_corpus()), vocab_size=40, window=3, first_id=4, chunk=7)
    assert n == m == len(topic_corpus()) and (whole != chunked).nnz == 0 and whole.sum() > 0


def test_vectors_put_words_used_alike_together():
    vectors = ppmi_svd_embeddings(topic_corpus(), vocab_size=40, dim=8, window=3)
    assert vectors.shape == (40, 8) and vectors.dtype == np.float32
    assert not vectors[:4].any()  # specials keep the caller's init
    assert vectors[4:].std() == pytest.approx(TARGET_STD, rel=1e-3)
    same, other = cosine(vectors[4], vectors[5]), cosine(vectors[4], vectors[8])
    assert same > 0.5 and same > other + 0.5


def test_small_vocabularies_and_no_pairs():
    vectors = ppmi_svd_embeddings(topic_corpus(50), vocab_size=40, dim=64, window=3)  # more dims than words
    assert vectors.shape == (40, 64) and np.isfinite(vectors).all()
    assert ppmi_svd_embeddings([[5], [6]], vocab_size=10, dim=4) is None  # one-word reviews


def test_init_embedding_overwrites_word_rows_only():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(40, 8, padding_idx=0)
    before = embedding.weight.detach().clone()

    class Cfg:
        ppmi_window, seed = 3, 13

    init_embedding(embedding, topic_corpus(), Cfg)
    assert torch.equal(embedding.weight[:4], before[:4])  # <pad> stays zero, <unk> keeps its init
    assert not torch.equal(embedding.weight[4:], before[4:])
