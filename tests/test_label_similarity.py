"""label_similarity: the pair labels of HQHasher and DQNQuantizer on
multi-label data ("share" a label, or the label sets' Jaccard)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skhash import DQNQuantizer, HQHasher
from skhash._losses import similarity_matrix
from skhash.datasets import make_cross_modal
from skhash.metrics import mean_average_precision

LEARNERS = [
    (HQHasher, dict(n_bits=16, n_codebooks=2, n_codewords=16)),
    (DQNQuantizer, dict(n_codebooks=2, n_codewords=16, n_dims=16)),
]


def test_jaccard_pair_labels():
    rng = np.random.RandomState(0)
    Y = (rng.rand(30, 5) < 0.4).astype(np.int64)
    Y[:3] = 0  # empty label sets: Jaccard 0 with everything, themselves too
    inter = Y @ Y.T
    union = Y.sum(1)[:, None] + Y.sum(1)[None, :] - inter
    expected = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    got = similarity_matrix(torch.tensor(Y), torch.tensor(Y), kind="jaccard")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    share = similarity_matrix(torch.tensor(Y), torch.tensor(Y))
    assert_array_equal(share.numpy(), (inter > 0).astype(np.float32))
    # a pair shares a label exactly when its Jaccard is positive
    assert_array_equal(got.numpy() > 0, share.numpy() > 0)


def test_class_ids_are_the_same_either_way():
    y = torch.tensor([0, 2, 1, 2, 0])
    assert torch.equal(similarity_matrix(y, y, kind="jaccard"), similarity_matrix(y, y))


def test_unknown_kind_is_refused():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="kind must be 'share' or 'jaccard'"):
        similarity_matrix(y, y, kind="cosine")


@pytest.mark.parametrize("cls,kw", LEARNERS)
def test_invalid_label_similarity_names_the_parameter(cls, kw):
    X, y = make_cross_modal(60, n_classes=3, random_state=0)
    est = cls(**kw, label_similarity="overlap", max_epochs=1)
    with pytest.raises(InvalidParameterError, match="label_similarity"):
        est.fit(X, y)
    assert not hasattr(est, "codebooks_")  # nothing half-fitted


@pytest.mark.parametrize("cls,kw", LEARNERS)
def test_single_label_data_fit_the_same_either_way(cls, kw):
    X, y = make_cross_modal(120, n_classes=4, random_state=1)
    common = dict(max_epochs=3, random_state=0, hidden_layer_sizes=(32,))
    a = cls(**kw, **common).fit(X, y).transform(X)
    b = cls(**kw, label_similarity="jaccard", **common).fit(X, y).transform(X)
    for m in ("img", "txt"):
        assert_array_equal(a[m].embedding, b[m].embedding)


def _jaccard_relevance(a, b):
    a, b = a.astype(float), b.astype(float)
    inter = a @ b.T
    return inter >= 0.5 * (a.sum(1)[:, None] + b.sum(1)[None] - inter)


def test_hq_jaccard_ranks_label_sets_by_overlap():
    # multi-label items relevant by label-set Jaccard >= 0.5: pair labels
    # of the same kind train towers that rank them better than "share"
    scores = {}
    for seed in (0, 1):
        X, Y = make_cross_modal(
            700, n_classes=6, multilabel=True, difficulty=1.0, random_state=seed
        )
        rel = _jaccard_relevance(Y[500:], Y[:500])
        for ls in ("share", "jaccard"):
            est = HQHasher(
                16,
                n_codebooks=2,
                n_codewords=16,
                label_similarity=ls,
                max_epochs=15,
                random_state=0,
                hidden_layer_sizes=(64,),
            ).fit(X[:500], Y[:500])
            db, q = est.transform(X[:500]), est.transform(X[500:])
            s = q["img"].embedding @ db["txt"].embedding.T
            scores[seed, ls] = mean_average_precision(rel, s, k=20)
    for seed in (0, 1):
        assert scores[seed, "jaccard"] > scores[seed, "share"] + 0.02, scores


@pytest.mark.parametrize("cls,kw", LEARNERS)
def test_label_similarity_is_a_plain_parameter(cls, kw):
    est = cls(**kw, label_similarity="jaccard")
    assert est.get_params()["label_similarity"] == "jaccard"
    assert clone(est).label_similarity == "jaccard"
    assert cls(**kw).label_similarity == "share"
