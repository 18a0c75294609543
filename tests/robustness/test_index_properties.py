"""Property: after any sequence of add / save / load, the index answers exactly
as a fresh fit on the same items (indices, distances, tie order)."""

import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skhash import CodeSet, pack_bits
from skhash.retrieval import TwoStageRetriever

MAX_ITEMS, D, M = 60, 4, 2
OPS = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 8)),
    st.tuples(st.just("save"), st.sampled_from(["npz", "dir"])),
    st.tuples(st.just("load"), st.sampled_from([None, "r", "r+", "c"])),
)


@st.composite
def databases(draw):
    seed = draw(st.integers(0, 2**16))
    n_bits = draw(st.sampled_from([3, 8, 12]))
    n_codewords = draw(st.sampled_from([2, 4]))
    kind = draw(st.sampled_from(["additive", "product"]))
    labels = draw(st.sampled_from(["int", "str", "multi"]))
    rng = np.random.RandomState(seed)
    C = rng.randint(-2, 3, size=(M, n_codewords, D)).astype(np.float32)
    if kind == "product":  # codebook m on dims [2m, 2m + 2)
        C[0, :, 2:] = 0
        C[1, :, :2] = 0
    few = rng.randint(2, size=(MAX_ITEMS, n_bits))  # few bits: many ties
    codes = CodeSet(
        embedding=(rng.randint(2, size=(MAX_ITEMS, D)) - 0.5).astype(np.float32),
        bits=pack_bits(few),
        codes=rng.randint(n_codewords, size=(MAX_ITEMS, M)),
        n_bits=n_bits,
        codebooks=C,
        codebook_kind=kind,
    )
    if labels == "int":
        y = rng.randint(3, size=MAX_ITEMS)
    elif labels == "str":  # lengths grow, so add widens the stored dtype
        y = np.array(["a" * (1 + i // 10) for i in range(MAX_ITEMS)])
    else:
        y = rng.randint(2, size=(MAX_ITEMS, 3))
    return codes, y


def _labels(y):
    """The narrowest dtype, as a caller's own array of these labels."""
    return np.array(y.tolist()) if y.size else y


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=databases(),
    n_start=st.integers(3, 20),
    ops=st.lists(OPS, max_size=6),
    rerank=st.sampled_from(["aqd", "aqd-l2", "hamming-codes", "exact", "none"]),
    alpha=st.sampled_from([0, 3, 0.5, 1.0]),
)
def test_any_history_equals_a_fresh_fit(data, n_start, ops, rerank, alpha):
    codes, y = data
    params = dict(alpha=alpha, n_neighbors=2, rerank=rerank, backend="numpy")
    est = TwoStageRetriever(**params).fit(codes[:n_start], _labels(y[:n_start]))
    n, path = n_start, None
    with tempfile.TemporaryDirectory() as tmp:
        for step, (op, arg) in enumerate(ops):
            if op == "add":
                k = min(arg, MAX_ITEMS - n)
                est.add(codes[n : n + k], _labels(y[n : n + k]))
                n += k
            elif op == "save":
                ext = ".npz" if arg == "npz" else ""
                path = est.save(os.path.join(tmp, f"s{step}{ext}"))
            elif path is not None:
                mode = arg if os.path.isdir(path) else None
                est = TwoStageRetriever.load(path, mmap_mode=mode, verify=True)
                # a load returns what was saved then: replay from there
                n = est.n_samples_fit_
        fresh = TwoStageRetriever(**params).fit(codes[:n], _labels(y[:n]))
        assert est.n_samples_fit_ == n
        np.testing.assert_array_equal(est.y_, fresh.y_)
        queries = codes[::7]
        for a, b in zip(est.kneighbors(queries), fresh.kneighbors(queries)):
            np.testing.assert_array_equal(a, b)
        if rerank in ("exact", "none") or alpha == 0:
            for a, b in zip(est.kneighbors(), fresh.kneighbors()):  # X=None
                np.testing.assert_array_equal(a, b)
        assert est.score(queries, y[::7]) == fresh.score(queries, y[::7])
