"""No estimator method or function modifies its inputs in place.

Each call gets fresh inputs, float32 where the code could skip its copy
(``np.asarray(x, dtype=np.float32)`` returns ``x`` itself), and the inputs
are compared with copies taken before the call.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from robust_cases import LEARNERS, QUANTIZERS, make_learner, make_quantizer
from sklearn.preprocessing import StandardScaler

from skhash import CodeSet, MultiModal, Pipeline, TwoStageRetriever, pack_bits
from skhash.compose import ModalityTransformer
from skhash.metrics import (
    average_precision_from_ranking,
    mean_average_precision,
    n_relevant,
    precision_at_k,
    precision_at_top_r,
    precision_recall_hamming,
    ranked_relevance,
    relevance,
)
from skhash.quantization import (
    aqd,
    decode,
    encode,
    kmeans_codebooks,
    lookup_tables,
    quantization_error,
    reconstruction_sqnorms,
    update_codebooks,
)


def snapshot(obj):
    """Deep copy of every array reachable from ``obj`` (containers included)."""
    if isinstance(obj, CodeSet):
        return (
            "CodeSet",
            {
                m: {p: snapshot(obj.get(m, p)) for p in ("embedding", "bits", "codes")}
                for m in obj.modalities
            },
            snapshot(obj.codebooks),
        )
    if isinstance(obj, dict):  # MultiModal too
        return (type(obj).__name__, {k: snapshot(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return [snapshot(v) for v in obj]
    if sp.issparse(obj):
        return ("sparse", obj.format, obj.toarray().copy())
    if isinstance(obj, np.ndarray):
        return obj.copy()
    return obj


def assert_same(a, b):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


@pytest.fixture
def inputs(ctx):
    """Fresh inputs for one call (float32 modalities, labels, codes)."""
    img = ctx.X_img.astype(np.float32)
    txt = ctx.X_txt.astype(np.float32)
    hq = ctx.learner("HQHasher")
    codes = hq.transform(MultiModal(img=img, txt=txt))
    # 12 bits with junk in the padding bits, which the retriever clears
    junk = pack_bits(np.sign(img @ np.ones((8, 12), np.float32)))
    junk[:, -1] |= 0x0F
    return {
        "X": MultiModal(img=img, txt=txt),
        "img": img,
        "sparse": sp.csr_matrix(np.maximum(img, 0)),
        "y": ctx.y.copy(),
        "Y": ctx.Y.copy(),
        "codes": codes,
        "padded": CodeSet(bits=junk, n_bits=12),
        "rel": (ctx.relevance[0].astype(bool), ctx.relevance[1].astype(np.float32)),
    }


def _learner_calls():
    for name in LEARNERS:
        y = None if name == "DJSRHHasher" else "y"

        def fit(ctx, a, name=name, y=y):
            make_learner(name).fit(a["X"], a[y] if y else None)

        def fit_sparse(ctx, a, name=name, y=y):
            mm = MultiModal(img=a["sparse"], txt=a["X"]["txt"])
            make_learner(name).fit(mm, a[y] if y else None)

        def transform(ctx, a, name=name):
            ctx.learner(name).transform(a["X"])
            ctx.learner(name).transform(MultiModal(img=a["sparse"]))

        def fit_transform(ctx, a, name=name, y=y):
            make_learner(name).fit_transform(a["X"], a[y] if y else None)

        yield f"{name}.fit", fit
        yield f"{name}.fit(sparse)", fit_sparse
        yield f"{name}.transform", transform
        yield f"{name}.fit_transform", fit_transform


def _quantizer_calls():
    for name in QUANTIZERS:

        def fit(ctx, a, name=name):
            make_quantizer(name).fit(a["img"])

        def transform(ctx, a, name=name):
            q = ctx.quantizer(name)
            codes = q.transform(a["img"])
            q.inverse_transform(codes)
            before = codes.copy()
            q.inverse_transform(codes)
            np.testing.assert_array_equal(codes, before)

        yield f"{name}.fit", fit
        yield f"{name}.transform+inverse_transform", transform


def _functions(ctx, a):
    C = kmeans_codebooks(a["img"], 2, 4, kind="additive", random_state=0)
    C_before = C.copy()
    codes = encode(a["img"], C, kind="additive")
    init = codes.copy()
    encode(a["img"], C, kind="additive", init_codes=init)
    np.testing.assert_array_equal(init, codes)
    codes_before = codes.copy()
    decode(codes, C)
    update_codebooks(a["img"], codes, 4, kind="additive", previous=C)
    quantization_error(a["img"], codes, C)
    lookup_tables(a["img"], C, metric="l2")
    reconstruction_sqnorms(codes, C)
    aqd(a["img"], codes, C, metric="l2")
    np.testing.assert_array_equal(C, C_before)
    np.testing.assert_array_equal(codes, codes_before)


def _retriever(ctx, a):
    r = TwoStageRetriever(alpha=10, n_neighbors=5).fit(a["codes"], a["y"])
    r.kneighbors(a["codes"], direction="img->txt")
    r.score(a["codes"], a["y"])
    exact = TwoStageRetriever(rerank="exact", n_neighbors=5).fit(a["codes"], a["Y"])
    exact.kneighbors(direction="txt->img")
    exact.score(a["codes"], a["Y"], direction="img->txt", variant="full")
    plain = TwoStageRetriever(n_neighbors=5).fit(a["img"], a["y"])
    plain.kneighbors(a["img"])
    padded = TwoStageRetriever(n_neighbors=3, rerank="none").fit(a["padded"])
    padded.kneighbors(a["padded"])


def _pipeline(ctx, a):
    pipe = Pipeline(
        [("hq", make_learner("HQHasher")), ("search", TwoStageRetriever(alpha=10))]
    )
    pipe.fit(a["X"]["img"], a["X"]["txt"], a["y"])
    pipe.score(a["X"], a["y"])
    pipe.kneighbors(a["X"], 5, direction="img->txt")


def _compose(ctx, a):
    mt = ModalityTransformer([("img", StandardScaler()), ("txt", "passthrough")])
    mt.fit_transform(a["X"])
    mt.transform(a["X"])


def _metrics(ctx, a):
    y_true, y_score = a["rel"]
    mean_average_precision(y_true, y_score, k=5)
    mean_average_precision(y_true, y_score, k=5, ties="average", variant="full")
    precision_at_k(y_true, y_score, k=5, ties="average")
    precision_at_top_r(y_true, y_score, r_values=[1, 3])
    precision_recall_hamming(y_true, np.round(8 * y_score), n_bits=8)
    relevance(a["y"][:5], a["y"])
    relevance(a["Y"][:5], a["Y"])
    n_relevant(a["Y"][:5], a["Y"])
    idx = np.argsort(-y_score, axis=1)[:, :5]
    rel = ranked_relevance(a["y"][:4], a["y"][:10], idx)
    average_precision_from_ranking(rel)


CALLS = [
    *_learner_calls(),
    *_quantizer_calls(),
    ("quantization functions", _functions),
    ("TwoStageRetriever fit/kneighbors/score", _retriever),
    ("Pipeline fit/score/kneighbors", _pipeline),
    ("ModalityTransformer fit_transform/transform", _compose),
    ("metrics", _metrics),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[n for n, _ in CALLS])
def test_inputs_not_modified(call, ctx, inputs):
    before = snapshot(inputs)
    call(ctx, inputs)
    assert_same(before, snapshot(inputs))
