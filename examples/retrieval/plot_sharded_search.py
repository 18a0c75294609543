"""
=================================================
Sharded search: the same answers from many shards
=================================================

:class:`~skhash.retrieval.ShardedRetriever` cuts the database into
contiguous shards, each a :class:`~skhash.retrieval.TwoStageRetriever`, and
merges their answers so that the results are **identical** to one index of
all the items: the same neighbours, distances and tie order, hence the same
MAP. With a ``dask.distributed`` client the shards live on the workers of a
cluster; here, without one, they are searched from local threads, which is
the same code path minus the network.

We index the Wiki codes of an HQ model with 1 to 8 shards, check that the
answers never change, save the sharded index (one directory per shard and a
manifest) and build the same index out of core, chunk by chunk, with
:func:`~skhash.retrieval.build_sharded_index`.
"""

# %%
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from skhash import HQHasher
from skhash.datasets import load_wiki
from skhash.retrieval import ShardedRetriever, TwoStageRetriever, build_sharded_index

torch.set_num_threads(1)
wiki = load_wiki()

# %%
# Codes of the database and of the queries
# ----------------------------------------
hq = HQHasher(n_bits=64, max_epochs=6, random_state=0).fit(wiki.X_train, wiki.y_train)
db, queries = hq.transform(wiki.X_train), hq.transform(wiki.X_test)
params = dict(alpha=100, n_neighbors=50)
single = TwoStageRetriever(**params).fit(db, wiki.y_train)
reference = single.kneighbors(queries, direction="img->txt")
print(f"one index: MAP@50 = {single.score(queries, wiki.y_test):.4f}")

# %%
# Any number of shards, the same answers
# --------------------------------------
# The merge is exact: each shard returns its own Hamming ranking and its
# re-ranked shortlist, and the global shortlist of ``L`` items is rebuilt
# from them before the global top-k is taken.
n_shards = [1, 2, 4, 8]
rates, maps = [], []
for s in n_shards:
    sharded = ShardedRetriever(**params, n_shards=s).fit(db, wiki.y_train)
    dist, idx = sharded.kneighbors(queries, direction="img->txt")
    assert np.array_equal(idx, reference[1]) and np.array_equal(dist, reference[0])
    start = time.perf_counter()
    sharded.kneighbors(queries, direction="img->txt")
    rates.append(len(queries) / (time.perf_counter() - start))
    maps.append(sharded.score(queries, wiki.y_test))
print("MAP@50 per shard count:", {s: round(m, 4) for s, m in zip(n_shards, maps)})

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
ax1.plot(n_shards, maps, "o-")
ax1.set(xlabel="shards", ylabel="MAP@50 (img→txt and txt→img)", xscale="log")
ax1.set_xticks(n_shards, n_shards)
ax2.plot(n_shards, rates, "o-")
ax2.set(xlabel="shards", ylabel="queries / s (local threads)", xscale="log")
ax2.set_xticks(n_shards, n_shards)
fig.suptitle("Sharding changes the speed, never the answers")
fig.tight_layout()

# %%
# On such a small database the shards only add merge work; sharding pays
# when a database no longer fits one machine or one core's time, see
# :ref:`distributed` for the cost model at 10⁹ items.
#
# Save, reload, and build out of core
# -----------------------------------
# ``save`` writes one directory per shard, then the manifest; ``load``
# memory-maps the shard files (on a cluster each worker maps its own).
# :func:`~skhash.retrieval.build_sharded_index` writes the same kind of
# directory from data read chunk by chunk (a memmap, a dask array or an
# iterator of batches), encoding each chunk with the learner, in memory
# bounded by one shard.
with tempfile.TemporaryDirectory() as tmp:
    path = ShardedRetriever(**params, n_shards=3).fit(db, wiki.y_train).save(tmp)
    print(sorted(os.listdir(path)))
    loaded = ShardedRetriever.load(path)
    assert np.array_equal(loaded.kneighbors(queries, direction="img->txt")[1], idx)

    built = build_sharded_index(
        wiki.X_train,
        os.path.join(tmp, "built"),
        y=wiki.y_train,
        encoder=hq,
        shard_size=1000,
        chunk_size=500,
        retriever=ShardedRetriever(**params),
        progress=False,
    )
    rebuilt = ShardedRetriever.load(built)
    print("shards:", rebuilt.shard_sizes_)
    assert np.array_equal(rebuilt.kneighbors(queries, direction="img->txt")[1], idx)
