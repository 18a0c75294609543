"""
=====================================================
Memory and search time of each kind of code (Table 1)
=====================================================

The HQ paper's Table 1 compares what four searches cost for a database of
``N`` items, ``n``-dimensional features and ``m`` codebooks of ``k``
codewords:

.. list-table::
   :header-rows: 1

   * - model
     - memory (bits)
     - computation per query
   * - lossless
     - ``32 N n``
     - ``O(N n)``
   * - quantization
     - ``32 m k n + N m log2 k``
     - ``O(m k n + N m)``
   * - binary hash
     - ``N n``
     - ``O(N n)`` (bit operations)
   * - HQ
     - ``N n + 32 m k n + N m log2 k``
     - ``O(N n + m k n + α N m)``

Here we *measure* both columns with
:class:`~skhash.retrieval.TwoStageRetriever`: the size of the saved index
and the time per query, for ``n = 64``, ``m = 4``, ``k = 256`` and growing
``N``. Search cost does not depend on what the codes mean, so the database
is random: random float embeddings, their signs as bits, random codes and
random codebooks. (Accuracy is another matter; see
:ref:`sphx_glr_auto_examples_retrieval_plot_alpha_sweep.py`.)
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skhash import CodeSet, TwoStageRetriever, pack_bits

RANDOM_STATE = 0
n, m, k = 64, 4, 256
N_QUERIES = 100
rng = np.random.RandomState(RANDOM_STATE)
codebooks = rng.randn(m, k, n).astype(np.float32)


def make_codes(n_items, parts=("embedding", "bits", "codes")):
    """Random codes of ``n_items`` items holding only ``parts``."""
    emb = rng.randn(n_items, n).astype(np.float32)
    kwargs = {}
    if "embedding" in parts:
        kwargs["embedding"] = emb
    if "bits" in parts:
        kwargs.update(bits=pack_bits(emb), n_bits=n)
    if "codes" in parts:
        kwargs.update(
            codes=rng.randint(k, size=(n_items, m)).astype(np.uint8),
            codebooks=codebooks,
            codebook_kind="additive",
        )
    return CodeSet(**kwargs)


# name: (parts kept in the database, retriever)
MODELS = {
    "lossless": (("embedding",), dict(alpha=1.0, rerank="exact")),
    "quantization": (("embedding", "codes"), dict(alpha=1.0, rerank="aqd")),
    "binary hash": (("bits",), dict(alpha=0, rerank="none")),
    "HQ (α = 1%)": (("embedding", "bits", "codes"), dict(alpha=0.01, rerank="aqd")),
}


def index_bytes(retriever):
    """Bytes of the arrays of the saved index (memory it needs to search)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(retriever.save(Path(folder) / "index"))
        return sum(f.stat().st_size for f in path.glob("*.npy"))


def seconds_per_query(retriever, queries, repeats=3):
    retriever.kneighbors(queries, 50)  # warm-up
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        retriever.kneighbors(queries, 50)
        best = min(best, time.perf_counter() - start)
    return best / len(queries)


# %%
# Measure
# -------
sizes = [10_000, 40_000, 160_000]
queries = make_codes(N_QUERIES)
memory = {name: [] for name in MODELS}
timing = {name: [] for name in MODELS}
for N in sizes:
    for name, (parts, params) in MODELS.items():
        db = make_codes(N, parts)
        search = TwoStageRetriever(n_neighbors=50, **params).fit(db)
        memory[name].append(index_bytes(search))
        timing[name].append(seconds_per_query(search, queries))

print(f"{'model':<14}{'N':>9}{'bytes/item':>12}{'µs/query':>11}")
for name in MODELS:
    for N, b, t in zip(sizes, memory[name], timing[name]):
        print(f"{name:<14}{N:>9}{b / N:>12.1f}{1e6 * t:>11.0f}")

# %%
# Plot
# ----
# Left: bytes per database item (the codebooks, ``32 m k n`` bits in all,
# are shared and their share shrinks as ``N`` grows). Right: time per query
# against ``N``; every search is linear in ``N``, with very different
# constants.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
names = list(MODELS)
ax1.barh(
    names,
    [memory[name][-1] / sizes[-1] for name in names],
    color=[f"C{i}" for i in range(len(names))],
)
ax1.set(
    xscale="log", xlabel=f"bytes per item (N = {sizes[-1]:,})", title="Index memory"
)
ax1.invert_yaxis()
for i, name in enumerate(names):
    ax2.plot(sizes, 1e6 * np.array(timing[name]), marker="o", color=f"C{i}", label=name)
ax2.set(
    xscale="log",
    yscale="log",
    xlabel="database size N",
    ylabel="µs per query",
    title="Search time (default backend, 1 thread)",
)
ax2.legend()
plt.show()

# %%
# The binary codes are both the smallest and the fastest to scan; HQ adds
# ``m log2 k`` bits per item and the re-ranking of ``α N`` candidates to the
# Hamming scan, a small overhead for small ``α``, while the quantization-only
# search pays ``m`` table look-ups for every item of the database.
