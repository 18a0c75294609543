"""Persistence: pickle, joblib, the retriever's pickle-free index, skops."""

import io
import os
import pickle

import joblib
import numpy as np
import pytest
import skops.io as sio
from robust_cases import LEARNERS, QUANTIZERS, make_learner, same_codes
from sklearn.preprocessing import StandardScaler

from skhash import CodeSet, MultiModal, Pipeline, TwoStageRetriever
from skhash.utils import trusted_types


def _pickle(obj):
    return pickle.loads(pickle.dumps(obj))


def _joblib(obj):
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    buf.seek(0)
    return joblib.load(buf)


ROUND_TRIPS = {"pickle": _pickle, "joblib": _joblib}


def _same_search(a, b, codes, direction="img->txt"):
    da, ia = a.kneighbors(codes, direction=direction)
    db, ib = b.kneighbors(codes, direction=direction)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(da, db)


# --------------------------------------------------------------------------- #
# pickle / joblib
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize("name", LEARNERS)
def test_learner_round_trip(name, how, ctx):
    est = ctx.learner(name)
    loaded = ROUND_TRIPS[how](est)
    assert same_codes(loaded.transform(ctx.X), est.transform(ctx.X))
    assert loaded.get_params().keys() == est.get_params().keys()
    assert len(loaded.history_) == len(est.history_)


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize("name", QUANTIZERS)
def test_quantizer_round_trip(name, how, ctx):
    est = ctx.quantizer(name)
    loaded = ROUND_TRIPS[how](est)
    np.testing.assert_array_equal(loaded.codebooks_, est.codebooks_)
    np.testing.assert_array_equal(loaded.transform(ctx.X_img), est.transform(ctx.X_img))


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_retriever_round_trip(how, ctx):
    loaded = ROUND_TRIPS[how](ctx.retriever)
    _same_search(loaded, ctx.retriever, ctx.codes)
    assert loaded.score(ctx.codes, ctx.y) == ctx.retriever.score(ctx.codes, ctx.y)


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_pipeline_round_trip(how, ctx):
    """A fitted Pipeline([("hq", HQHasher), ("search", TwoStageRetriever)])."""
    pipe = ctx.pipeline
    loaded = ROUND_TRIPS[how](pipe)
    assert same_codes(loaded[:-1].transform(ctx.X), pipe[:-1].transform(ctx.X))
    for a, b in zip(
        loaded.kneighbors(ctx.X_img, ctx.X_txt, direction="img->txt"),
        pipe.kneighbors(ctx.X_img, ctx.X_txt, direction="img->txt"),
    ):
        np.testing.assert_array_equal(a, b)
    assert loaded.score(ctx.X_img, ctx.X_txt, ctx.y) == pipe.score(
        ctx.X_img, ctx.X_txt, ctx.y
    )


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_containers_round_trip(how, ctx):
    mm = ROUND_TRIPS[how](ctx.X)
    assert isinstance(mm, MultiModal) and mm.modalities == ("img", "txt")
    np.testing.assert_array_equal(mm["img"], ctx.X_img)
    cs = ROUND_TRIPS[how](ctx.codes)
    assert isinstance(cs, CodeSet) and same_codes(cs, ctx.codes)


# --------------------------------------------------------------------------- #
# the retriever's own index files (no pickle)
# --------------------------------------------------------------------------- #


def _retrievers(ctx):
    hq_codes = ctx.codes
    dqn_codes = ctx.learner("DQNQuantizer").transform(ctx.X)
    labels = np.array(["cat", "dog", "eel"])[ctx.y]  # string labels: no pickle
    return {
        "hq-aqd": (TwoStageRetriever(alpha=10, n_neighbors=5), hq_codes, ctx.y),
        "hq-aqd-l2-additive": (
            TwoStageRetriever(alpha=0.5, n_neighbors=5, rerank="aqd-l2"),
            hq_codes,
            ctx.Y,
        ),
        "hq-exact": (TwoStageRetriever(alpha=10, rerank="exact"), hq_codes, labels),
        "dqn-aqd": (TwoStageRetriever(n_neighbors=5), dqn_codes, ctx.y),
        "embeddings": (TwoStageRetriever(n_neighbors=5), ctx.X_img, None),
    }


RETRIEVERS = ["hq-aqd", "hq-aqd-l2-additive", "hq-exact", "dqn-aqd", "embeddings"]


def _check_same(loaded, r, queries, y):
    if isinstance(queries, CodeSet):
        for direction in ("img->txt", "txt->img"):
            _same_search(loaded, r, queries, direction)
    else:
        for a, b in zip(loaded.kneighbors(queries), r.kneighbors(queries)):
            np.testing.assert_array_equal(a, b)
    if y is not None:
        np.testing.assert_array_equal(loaded.y_, r.y_)
        assert loaded.score(queries, y) == r.score(queries, y)
    assert loaded.get_params() == r.get_params()
    assert loaded.search_plan_ == r.search_plan_


@pytest.mark.parametrize("which", RETRIEVERS)
def test_retriever_npz_without_pickle(which, ctx, tmp_path):
    r, db, y = _retrievers(ctx)[which]
    r.fit(db, y)
    path = r.save(tmp_path / "index.npz")
    with np.load(path, allow_pickle=False) as f:  # a plain .npz: no pickle
        for name in f.files:
            assert f[name].dtype != object
    loaded = TwoStageRetriever.load(path)
    _check_same(loaded, r, db, y)


@pytest.mark.parametrize("which", RETRIEVERS)
def test_retriever_directory_memory_mapped(which, ctx, tmp_path):
    r, db, y = _retrievers(ctx)[which]
    r.fit(db, y)
    path = r.save(tmp_path / "index")
    assert os.path.isdir(path)
    for name in os.listdir(path):
        if name.endswith(".npy"):
            np.load(os.path.join(path, name), allow_pickle=False)
    loaded = TwoStageRetriever.load(path, mmap_mode="r")
    mapped = [a for e in loaded._index.values() for a in e.values()]
    assert mapped and all(isinstance(a, np.memmap) for a in mapped)
    _check_same(loaded, r, db, y)


def test_retriever_npz_of_a_loaded_index(ctx, tmp_path):
    """save(load(save(r))) keeps the results: nothing is lost on the way."""
    r = ctx.retriever
    once = TwoStageRetriever.load(r.save(tmp_path / "a.npz"))
    twice = TwoStageRetriever.load(once.save(tmp_path / "b"), mmap_mode="r")
    _check_same(twice, r, ctx.codes, ctx.y)


# --------------------------------------------------------------------------- #
# skops
# --------------------------------------------------------------------------- #


def _skops_objects(ctx):
    plain_pipe = Pipeline(
        [("scale", StandardScaler()), ("search", TwoStageRetriever(n_neighbors=5))],
        modalities=None,
    ).fit(ctx.X_img, ctx.y)
    return {
        "ProductQuantizer": ctx.quantizer("ProductQuantizer"),
        "AdditiveQuantizer": ctx.quantizer("AdditiveQuantizer"),
        "TwoStageRetriever": ctx.retriever,
        "ModalityTransformer": ctx.modality_transformer,
        "Pipeline(StandardScaler, TwoStageRetriever)": plain_pipe,
        **{f"unfitted {n}": make_learner(n) for n in LEARNERS},
    }


SKOPS_OK = [
    "ProductQuantizer",
    "AdditiveQuantizer",
    "TwoStageRetriever",
    "ModalityTransformer",
    "Pipeline(StandardScaler, TwoStageRetriever)",
    *(f"unfitted {n}" for n in LEARNERS),
]


def _same_skops(name, loaded, est, ctx):
    if name in ("ProductQuantizer", "AdditiveQuantizer"):
        np.testing.assert_array_equal(
            loaded.transform(ctx.X_img), est.transform(ctx.X_img)
        )
    elif name == "TwoStageRetriever":
        _same_search(loaded, est, ctx.codes)
    elif name == "ModalityTransformer":
        np.testing.assert_array_equal(
            loaded.transform(ctx.X)["img"], est.transform(ctx.X)["img"]
        )
    elif name.startswith("Pipeline"):
        for a, b in zip(loaded.kneighbors(ctx.X_img), est.kneighbors(ctx.X_img)):
            np.testing.assert_array_equal(a, b)
    else:
        assert loaded.get_params() == est.get_params()


@pytest.mark.parametrize("name", SKOPS_OK)
def test_skops_round_trip_with_trusted_types(name, ctx, tmp_path):
    est = _skops_objects(ctx)[name]
    path = tmp_path / "est.skops"
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted, "skops should not trust skhash types by default"
    assert set(untrusted) <= set(trusted_types())
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)
    loaded = sio.load(path, trusted=trusted_types())
    assert type(loaded) is type(est)
    _same_skops(name, loaded, est, ctx)


@pytest.mark.parametrize("name", [*LEARNERS, "Pipeline(HQHasher, TwoStageRetriever)"])
def test_skops_writes_a_fitted_learner(name, ctx, tmp_path):
    """A fitted learner (its ``net_``) and a fitted pipeline of one go through
    skops with skhash's trusted types, and give the same codes and results
    (tests/test_persistence.py has the rest of the contract)."""
    est = ctx.pipeline if name.startswith("Pipeline") else ctx.learner(name)
    path = tmp_path / "est.skops"
    sio.dump(est, path)
    assert set(sio.get_untrusted_types(file=path)) <= set(trusted_types())
    loaded = sio.load(path, trusted=trusted_types())
    if name.startswith("Pipeline"):
        assert loaded.score(ctx.X_img, ctx.X_txt, ctx.y) == est.score(
            ctx.X_img, ctx.X_txt, ctx.y
        )
    else:
        assert same_codes(loaded.transform(ctx.X), est.transform(ctx.X))


def test_trusted_types_are_skhash_estimators():
    names = trusted_types()
    assert names == sorted(set(names))
    # skhash's estimators, and the torch.optim classes of the learners'
    # ``optimizer`` parameter (a class reference, Adam by default)
    assert all(n.startswith(("skhash.", "torch.optim.")) for n in names)
    assert "skhash.retrieval._retriever.TwoStageRetriever" in names
