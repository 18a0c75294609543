"""Tests of skhash.quantization.DQNQuantizer (deep quantization network)."""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from skhash import CodeSet, MultiModal
from skhash._losses import pairwise_cosine_loss, quantization_loss
from skhash.metrics import mean_average_precision, relevance
from skhash.quantization import (
    DQNQuantizer,
    aqd,
    decode,
    lookup_tables,
    product_blocks,
)
from skhash.quantization._dqn import _DQNCriterion

# Fast constructor arguments: tiny towers, few epochs, small codebooks.
FAST = {
    "n_codebooks": 2,
    "n_codewords": 8,
    "n_dims": 8,
    "hidden_layer_sizes": (16,),
    "max_epochs": 3,
    "batch_size": 32,
    "device": "cpu",
    "random_state": 0,
}


def _data(n=60, d=8, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    X = rng.randn(n, d) + 2.0 * y[:, None]
    return X, y


def _cross_modal(n=60, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    X = MultiModal(
        img=rng.randn(n, 8) + 2.0 * y[:, None], txt=rng.randn(n, 5) - 2.0 * y[:, None]
    )
    return X, y


@pytest.fixture(scope="module")
def fitted():
    """A fitted single-modal quantizer and its data (never mutated)."""
    X, y = _data()
    return DQNQuantizer(**FAST).fit(X, y), X, y


@pytest.fixture(scope="module")
def fitted_cross():
    """A fitted cross-modal quantizer and its data (never mutated)."""
    X, y = _cross_modal()
    model = DQNQuantizer(**{**FAST, "max_epochs": 20, "lr": 1e-2}).fit(X, y)
    return model, X, y


# --------------------------------------------------------------------------- #
# the loss terms against their formulas
# --------------------------------------------------------------------------- #


def test_pairwise_cosine_loss_matches_formula():
    z_a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    z_b = torch.tensor([[0.0, 3.0], [2.0, 0.0]])
    S = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    expected = 0.0
    for i in range(3):
        for j in range(2):
            a, b = z_a[i].numpy(), z_b[j].numpy()
            cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            s = 1.0 if S[i, j] else -1.0
            expected += (s - cos) ** 2
    expected /= 6
    assert pairwise_cosine_loss(z_a, z_b, S).item() == pytest.approx(expected)

    expected_ip = np.mean(
        [
            ((1.0 if S[i, j] else -1.0) - float(z_a[i] @ z_b[j]) / 2) ** 2
            for i in range(3)
            for j in range(2)
        ]
    )
    got = pairwise_cosine_loss(z_a, z_b, S, kind="ip").item()
    assert got == pytest.approx(expected_ip)


@pytest.mark.parametrize("kind", ["cosine", "ip"])
def test_balanced_pairwise_loss_matches_formula(kind):
    z_a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.5], [0.3, -1.0]])
    z_b = torch.tensor([[0.0, 3.0], [2.0, 0.0], [-1.0, -1.0]])
    S = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])

    def sim(a, b):
        if kind == "ip":
            return float(a @ b) / 2
        return float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))

    pos, neg = [], []
    for i in range(4):
        for j in range(3):
            v = sim(z_a[i].numpy(), z_b[j].numpy())
            if S[i, j]:
                pos.append((1 - v) ** 2)
            else:
                neg.append(max(v, 0) ** 2)
    expected = np.mean(pos) + np.mean(neg)
    got = pairwise_cosine_loss(z_a, z_b, S, kind=kind, form="balanced").item()
    assert got == pytest.approx(expected)
    # a dissimilar pair with a negative cosine costs nothing, unlike eq. (3)
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.1]])
    assert pairwise_cosine_loss(z, z, torch.eye(2), form="balanced").item() < 1e-12
    assert pairwise_cosine_loss(z, z, torch.eye(2)).item() > 0.0


def test_balanced_pairwise_loss_with_one_kind_of_pair():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    only_similar = pairwise_cosine_loss(z, z, torch.ones(2, 2), form="balanced")
    assert only_similar.item() == pytest.approx(((1 - 0.6) ** 2) / 2)
    only_dissimilar = pairwise_cosine_loss(z, z, torch.zeros(2, 2), form="balanced")
    assert only_dissimilar.item() == pytest.approx((1 + 1 + 0.36 + 0.36) / 4)
    with pytest.raises(ValueError, match="form"):
        pairwise_cosine_loss(z, z, torch.eye(2), form="hinge")
    assert pairwise_cosine_loss(z, z, torch.ones(2, 2), form="logistic").item() > 0


def test_pair_loss_reaches_the_criterion():
    X, y = _data()
    common = dict(n_codewords=4, n_dims=4, max_epochs=2, random_state=0)
    assert DQNQuantizer().pair_loss == "logistic"
    fitted = {
        form: DQNQuantizer(2, pair_loss=form, **common).fit(X, y)
        for form in ("logistic", "balanced", "paper")
    }
    for form, est in fitted.items():
        assert est.net_.criterion_.pair_loss == form
    sims = [est.history_[:, "loss_sim"] for est in fitted.values()]
    assert not np.allclose(sims[0], sims[1])
    assert not np.allclose(sims[1], sims[2])
    with pytest.raises(InvalidParameterError, match="pair_loss"):
        DQNQuantizer(2, pair_loss="hinge", **common).fit(X, y)


def test_logistic_pairwise_loss_matches_formula():
    z_a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    z_b = torch.tensor([[0.0, 3.0], [2.0, 0.0]])
    S = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pos, neg = [], []
    for i in range(3):
        for j in range(2):
            a, b = z_a[i].numpy(), z_b[j].numpy()
            t = 10.0 * float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            if S[i, j]:
                pos.append(np.log1p(np.exp(-t)))
            else:
                neg.append(np.log1p(np.exp(t)))
    expected = np.mean(pos) + np.mean(neg)
    got = pairwise_cosine_loss(z_a, z_b, S, form="logistic").item()
    assert got == pytest.approx(expected, rel=1e-6)
    # the factor is the inverse temperature
    got2 = pairwise_cosine_loss(z_a, z_b, S, form="logistic", scale=2.0).item()
    assert got2 != pytest.approx(got)
    for bad in (0, -1.0, float("inf"), float("nan"), True, "10"):
        with pytest.raises(ValueError, match="scale"):
            pairwise_cosine_loss(z_a, z_b, S, form="logistic", scale=bad)
    # a well-separated pair costs almost nothing, unlike eq. (3)'s -1 target
    z = torch.tensor([[1.0, 0.0], [-0.2, 1.0]])
    assert pairwise_cosine_loss(z, z, torch.eye(2), form="logistic").item() < 0.2


def test_quantization_loss_matches_formula():
    z = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    rec = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    expected = ((1 + 1) + (0.25 + 1)) / 2  # ‖z_i − C h_i‖², mean over items
    assert quantization_loss(z, rec).item() == pytest.approx(expected)


def test_criterion_terms_and_history():
    """The criterion puts z on the unit sphere for both terms (cosine loss)."""
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    rec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    crit = _DQNCriterion(("X",), lambda_q=0.5, similarity="cosine")
    crit.begin_epoch(0)
    crit.reconstruction = {"X": rec}
    loss = crit({"X": z, "index": torch.tensor([0, 1, 2])}, y)

    u = z / z.norm(dim=1, keepdim=True)
    s = torch.tensor([[1.0, 1, -1], [1, 1, -1], [-1, -1, 1]])
    l_sim = ((s - u @ u.T) ** 2).mean()
    l_q = ((u - rec) ** 2).sum(1).mean()
    assert loss.item() == pytest.approx((l_sim + 0.5 * l_q).item())
    terms = crit.end_epoch()
    assert terms["loss_sim"] == pytest.approx(l_sim.item())
    assert terms["loss_q"] == pytest.approx(l_q.item())

    # the DQN_ip ablation keeps the raw z and scales the inner product by 1/d
    crit = _DQNCriterion(("X",), lambda_q=0.0, similarity="ip")
    loss = crit({"X": z, "index": torch.tensor([0, 1, 2])}, y)
    assert loss.item() == pytest.approx((((s - z @ z.T / 2) ** 2).mean()).item())


def test_cross_modal_criterion_averages_modality_pairs():
    rng = torch.Generator().manual_seed(0)
    feats = {m: torch.randn(4, 3, generator=rng) for m in ("a", "b", "c")}
    y = torch.tensor([0, 1, 0, 1])
    S = (y[:, None] == y[None, :]).float()
    crit = _DQNCriterion(("a", "b", "c"), lambda_q=0.1, similarity="cosine")
    loss = crit({**feats, "index": torch.arange(4)}, y)
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    expected = sum(pairwise_cosine_loss(feats[p], feats[q], S) for p, q in pairs) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# --------------------------------------------------------------------------- #
# codes, codebooks and AQD
# --------------------------------------------------------------------------- #


def test_transform_gives_product_codes(fitted):
    model, X, _ = fitted
    codes = model.transform(X)
    assert isinstance(codes, CodeSet)
    assert codes.bits is None and codes.n_bits is None
    assert codes.codebook_kind == "product"
    assert codes.codes.shape == (len(X), 2) and codes.codes.dtype == np.uint8
    assert codes.embedding.shape == (len(X), 8)
    assert_allclose(np.linalg.norm(codes.embedding, axis=1), 1.0, rtol=1e-5)
    C = model.codebooks_
    assert C.shape == (2, 8, 8)
    assert codes.codebooks is not None and np.array_equal(codes.codebooks, C)
    for m, block in enumerate(product_blocks(8, 2)):
        outside = np.setdiff1d(np.arange(8), block)
        assert not C[m][:, outside].any()
    # the codes are the nearest codeword of each block (exact PQ encoding)
    for m, block in enumerate(product_blocks(8, 2)):
        d = ((codes.embedding[:, None, block] - C[m][None, :, block]) ** 2).sum(-1)
        assert_array_equal(codes.codes[:, m], d.argmin(1))


def test_aqd_by_tables_equals_brute_force(fitted):
    model, X, _ = fitted
    db = model.transform(X)
    q = model.transform(X[:7] + 0.3).embedding
    C = model.codebooks_
    rec = decode(db.codes, C)
    # the reconstruction of the product codebooks is C h, block by block
    for m, block in enumerate(product_blocks(8, 2)):
        assert_allclose(rec[:, block], C[m][db.codes[:, m]][:, block])
    brute_l2 = ((q[:, None, :] - rec[None, :, :]) ** 2).sum(-1)
    assert_allclose(aqd(q, db.codes, C, metric="l2"), brute_l2, atol=1e-5)
    assert_allclose(aqd(q, db.codes, C, metric="ip"), q @ rec.T, atol=1e-5)
    # DQN eq. (5): the l2 tables summed over the subspaces, plus ‖q‖²
    lut = lookup_tables(q, C, metric="l2")
    by_tables = sum(lut[:, m, db.codes[:, m]] for m in range(2))
    by_tables += (q**2).sum(1, keepdims=True)
    assert_allclose(by_tables, brute_l2, atol=1e-5)


def test_transform_is_per_item(fitted):
    """Codes do not depend on the batch: subsets and permutations agree."""
    model, X, _ = fitted
    full = model.transform(X)
    perm = np.random.RandomState(0).permutation(len(X))
    shuffled = model.transform(X[perm])
    assert_array_equal(shuffled.codes, full.codes[perm])
    assert_allclose(shuffled.embedding, full.embedding[perm], rtol=1e-6)
    part = model.transform(X[10:17])
    assert_array_equal(part.codes, full.codes[10:17])


def test_history_records_loss_terms():
    X, y = _data()
    model = DQNQuantizer(**{**FAST, "max_epochs": 3}).fit(X, y)
    loss_q = model.history_[:, "loss_q"]
    assert len(model.history_) == 3
    assert loss_q[0] == 0.0  # warm-up epoch: no codebooks yet
    assert all(v > 0 for v in loss_q[1:])
    assert all(v > 0 for v in model.history_[:, "loss_sim"])

    warm0 = DQNQuantizer(**{**FAST, "quantization_warmup": 0}).fit(X, y)
    assert warm0.history_[0, "loss_q"] > 0  # codebooks fitted before epoch 1


def test_lambda_q_zero_is_two_step(fitted):
    """DQN2+: no quantization loss in training, codebooks fitted afterwards."""
    _, X, y = fitted
    model = DQNQuantizer(**{**FAST, "lambda_q": 0.0}).fit(X, y)
    assert all(v == 0.0 for v in model.history_[:, "loss_q"])
    assert model.codebooks_.shape == (2, 8, 8)
    codes = model.transform(X)
    assert codes.codes.shape == (len(X), 2)


def test_same_seed_same_codes_other_seed_differs():
    X, y = _data()
    a = DQNQuantizer(**FAST).fit(X, y).transform(X)
    b = DQNQuantizer(**FAST).fit(X, y).transform(X)
    assert_array_equal(a.codes, b.codes)
    assert_array_equal(a.embedding, b.embedding)
    c = DQNQuantizer(**{**FAST, "random_state": 1}).fit(X, y).transform(X)
    assert not np.array_equal(a.embedding, c.embedding)
    assert not np.array_equal(a.codes, c.codes)


def test_fit_leaves_global_rng_untouched():
    X, y = _data()
    torch.manual_seed(123)
    np.random.seed(123)
    DQNQuantizer(**FAST).fit(X, y)
    t, n = torch.rand(1).item(), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.rand(1).item() == t and np.random.rand() == n


def test_pickle_round_trip(fitted):
    model, X, _ = fitted
    clone_ = pickle.loads(pickle.dumps(model))
    a, b = model.transform(X), clone_.transform(X)
    assert_array_equal(a.codes, b.codes)
    assert_array_equal(a.embedding, b.embedding)
    assert_array_equal(clone_.codebooks_, model.codebooks_)
    # the per-item training state is not kept in net_
    assert model.net_.criterion_.reconstruction is None


# --------------------------------------------------------------------------- #
# inputs: plain 2-D X and MultiModal X
# --------------------------------------------------------------------------- #


def test_plain_array_end_to_end(fitted):
    model, X, y = fitted
    assert model.modalities_ == ("X",)
    assert model.n_features_in_ == 8
    codes = model.transform(X)
    scores = -aqd(codes.embedding, codes.codes, model.codebooks_, metric="l2")
    # the items are separable: retrieval is far above chance (1/3)
    assert mean_average_precision(relevance(y, y), scores, k=10) > 0.8
    with pytest.raises(ValueError, match="has 5 features.* 8 features"):
        model.transform(X[:, :5])


def test_multimodal_shares_codebooks(fitted_cross):
    model, X, y = fitted_cross
    assert model.modalities_ == ("img", "txt")
    assert model.n_features_per_modality_ == {"img": 8, "txt": 5}
    assert not hasattr(model, "n_features_in_")
    codes = model.transform(X)
    assert codes.modalities == ("img", "txt")
    assert codes["img"].codes.shape == codes["txt"].codes.shape == (len(y), 2)
    assert np.array_equal(codes.codebooks, model.codebooks_)
    # image queries search the text database through the shared codebooks,
    # and back (chance is about 0.4)
    img, txt = codes["img"], codes["txt"]
    for q, db in [(img, txt), (txt, img)]:
        scores = -aqd(q.embedding, db.codes, model.codebooks_, metric="l2")
        assert mean_average_precision(relevance(y, y), scores, k=10) > 0.75
    # one modality alone
    only_txt = model.transform(MultiModal(txt=X["txt"]))
    assert only_txt.modalities == ("txt",)
    assert_array_equal(only_txt["txt"].codes, txt.codes)
    with pytest.raises(ValueError, match="pass a MultiModal"):
        model.transform(X["img"])


def test_multilabel_y():
    X, y = _data()
    Y = np.eye(3, dtype=int)[y]
    Y[::5, (y[::5] + 1) % 3] = 1
    codes = DQNQuantizer(**FAST).fit(X, Y).transform(X)
    assert codes.codes.shape == (len(X), 2)


def test_custom_module():
    class Linear(torch.nn.Module):
        def __init__(self, n_features, n_outputs, bias=True):
            super().__init__()
            self.lin = torch.nn.Linear(n_features, n_outputs, bias=bias)

        def forward(self, X):
            return self.lin(X)

    X, y = _data()
    tower = {k: v for k, v in FAST.items() if k != "hidden_layer_sizes"}
    model = DQNQuantizer(**tower, module=Linear, module__bias=False).fit(X, y)
    assert model.net_.module_.towers["X"].lin.bias is None
    assert model.get_params()["module__bias"] is False


# --------------------------------------------------------------------------- #
# model selection and validation
# --------------------------------------------------------------------------- #


def _self_retrieval_map(estimator, X, y):
    codes = estimator.transform(X)
    scores = -aqd(codes.embedding, codes.codes, codes.codebooks, metric="l2")
    return mean_average_precision(relevance(y, y), scores, k=10)


def test_grid_search_over_lambda_q():
    X, y = _data()
    base = DQNQuantizer(**FAST)
    grid = GridSearchCV(
        base, {"lambda_q": [0.0, 0.1]}, scoring=_self_retrieval_map, cv=2
    ).fit(X, y)
    assert grid.best_params_["lambda_q"] in (0.0, 0.1)
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.best_estimator_.lambda_q == grid.best_params_["lambda_q"]
    assert not hasattr(base, "net_")  # clone, not the original, was fitted
    assert clone(base).get_params() == base.get_params()


def test_pipeline_with_retriever_and_map_scorer():
    from sklearn.pipeline import make_pipeline

    from skhash import retrieval
    from skhash.metrics import make_map_scorer

    X, y = _data(n=90)
    pipe = make_pipeline(
        DQNQuantizer(**FAST),
        retrieval.TwoStageRetriever(n_neighbors=10, rerank="aqd-l2"),
    )
    grid = GridSearchCV(
        pipe,
        {"dqnquantizer__lambda_q": [0.0, 0.1]},
        scoring=make_map_scorer(k=10),
        cv=2,
    ).fit(X, y)
    search = grid.best_estimator_[-1]
    assert search.search_plan_ == {"X": "aqd-l2"}
    assert 0.5 < grid.best_score_ <= 1.0
    # the retriever ranks by AQD l2, ties by lower index, like a stable argsort
    dqn = grid.best_estimator_[0]
    q = dqn.transform(X[:5] + 0.1)
    _, idx = search.kneighbors(q)
    db = dqn.transform(X)
    d = aqd(q.embedding, db.codes, db.codebooks, metric="l2")
    top = np.argsort(d, axis=1, kind="stable")[:, :10]
    assert_allclose(
        np.take_along_axis(d, idx, 1), np.take_along_axis(d, top, 1), atol=1e-5
    )


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"n_codebooks": 0}, InvalidParameterError, "'n_codebooks' parameter"),
        ({"n_codewords": 1}, InvalidParameterError, "'n_codewords' parameter"),
        ({"n_dims": 0}, InvalidParameterError, "'n_dims' parameter"),
        ({"lambda_q": -1.0}, InvalidParameterError, "'lambda_q' parameter"),
        ({"quantization_warmup": -1}, InvalidParameterError, "quantization_warmup"),
        ({"similarity": "l2"}, InvalidParameterError, "'similarity' parameter"),
        ({"lr": 0.0}, InvalidParameterError, "'lr' parameter"),
        ({"n_codebooks": 9}, ValueError, r"n_codebooks=9 .* n_dims=8"),
    ],
)
def test_bad_params_raise(params, error, match):
    X, y = _data()
    with pytest.raises(error, match=match):
        DQNQuantizer(**{**FAST, **params}).fit(X, y)


def test_bad_inputs_raise():
    X, y = _data()
    with pytest.raises(TypeError, match="Did you mean module__width"):
        DQNQuantizer(**FAST, module_width=3).fit(X, y)
    with pytest.raises(ValueError, match="needs labels y"):
        DQNQuantizer(**FAST).fit(X)
    with pytest.raises(ValueError, match="single class"):
        DQNQuantizer(**FAST).fit(X, np.zeros(len(X)))


def test_unit_rows_of_huge_and_zero_rows():
    # the norm of a float32 row past ~1.8e19 overflows in float32; the
    # unit rows must not collapse to zeros, and a zero row stays zero
    from skhash.quantization._dqn import _unit_rows

    z = np.array([[3e19, 4e19], [3.0, -4.0], [0.0, 0.0], [1e-30, 0.0]], np.float32)
    out = _unit_rows(z)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:2], [[0.6, 0.8], [0.6, -0.8]], rtol=1e-6)
    np.testing.assert_array_equal(out[2], [0.0, 0.0])
    assert np.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relative_quantization_loss_is_scale_free_at_tiny_norms(dtype):
    # a floor of 1e-12 under ‖f‖² made tiny embeddings' loss the plain error
    f = torch.tensor([[2.0, 0.0]], dtype=dtype)
    rec = torch.tensor([[1.0, 0.0]], dtype=dtype)
    for scale in (1.0, 1e-6, 1e-8, 1e-15):
        loss = quantization_loss(f * scale, rec * scale, relative=True)
        assert float(loss) == pytest.approx(0.25, rel=1e-5)
    zero = torch.zeros((1, 2), dtype=dtype, requires_grad=True)
    loss = quantization_loss(zero, rec, relative=True)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(zero.grad).all()


@pytest.mark.parametrize("form", ["balanced", "logistic"])
def test_soft_labels_give_weighted_means(form):
    # each term is the mean of its pair costs weighted by s_ij (1 - s_ij);
    # the weights' sum was floored at 1, under-weighting soft-label batches
    z = torch.tensor([[1.0, 0.2], [0.3, 1.0]], dtype=torch.float64)
    S = torch.tensor([[1.0, 2 / 3], [2 / 3, 1.0]], dtype=torch.float64)
    sim = (
        torch.nn.functional.normalize(z, dim=1)
        @ torch.nn.functional.normalize(z, dim=1).T
    )
    if form == "balanced":
        cs, cd = (1 - sim) ** 2, sim.clamp(min=0) ** 2
    else:
        cs, cd = (
            torch.nn.functional.softplus(-10 * sim),
            torch.nn.functional.softplus(10 * sim),
        )
    expected = (cs * S).sum() / S.sum() + (cd * (1 - S)).sum() / (1 - S).sum()
    got = pairwise_cosine_loss(z, z, S, kind="cosine", form=form)
    assert float(got) == pytest.approx(float(expected), rel=1e-12)
    # hard labels without dissimilar pairs: that term is 0
    ones = torch.ones((2, 2), dtype=torch.float64)
    hard = pairwise_cosine_loss(z, z, ones, kind="cosine", form=form)
    assert float(hard) == pytest.approx(float((cs * ones).sum() / 4), rel=1e-12)
