"""Codes carry the model that made them; the index refuses another model's."""

import pickle

import numpy as np
import pytest

from skhash import CodeSet, DJSRHHasher, HQHasher, MultiModal, TwoStageRetriever
from skhash.exceptions import IndexFormatError  # noqa: F401  (load errors)

RNG = np.random.RandomState(0)
N = 60
Y = RNG.randint(3, size=N)
X = MultiModal(
    img=(RNG.randn(N, 6) + Y[:, None]).astype(np.float32),
    txt=(RNG.randn(N, 4) - Y[:, None]).astype(np.float32),
)
SMALL = dict(hidden_layer_sizes=(8,), max_epochs=1, device="cpu")


def _hq(seed):
    return HQHasher(
        n_bits=8, n_codebooks=2, n_codewords=4, random_state=seed, **SMALL
    ).fit(X, Y)


def _djsrh(seed):
    return DJSRHHasher(n_bits=8, batch_size=16, random_state=seed, **SMALL).fit(X)


@pytest.fixture(scope="module", params=["hq", "djsrh"])
def models(request):
    make = _hq if request.param == "hq" else _djsrh
    return make(0), make(1)


def test_transform_marks_the_codes_with_the_fit(models):
    a, b = models
    ca, cb = a.transform(X), b.transform(X)
    assert ca.model_fingerprint and cb.model_fingerprint
    assert ca.model_fingerprint != cb.model_fingerprint
    # slicing, picking a modality, dropping parts keep it
    assert ca[:5].model_fingerprint == ca.model_fingerprint
    assert ca["img"].model_fingerprint == ca.model_fingerprint
    assert ca.without("embedding").model_fingerprint == ca.model_fingerprint
    # the same fit (same data, parameters, seed) is the same model
    again = type(a)(**a.get_params()).fit(X, Y)
    assert again.transform(X).model_fingerprint == ca.model_fingerprint
    # a pickled model still makes the same model's codes
    assert pickle.loads(pickle.dumps(a)).transform(X).model_fingerprint == (
        ca.model_fingerprint
    )


# HQ's codebooks differ between the two fits too, and that check may speak
# first; DJSRH's codes are bits only, so only the model fingerprint tells
REFUSED = "encoded by another model|other codebooks"


def test_queries_and_additions_of_another_model_are_refused(models, tmp_path):
    a, b = models
    ca, cb = a.transform(X), b.transform(X)
    search = TwoStageRetriever(alpha=10, n_neighbors=5).fit(ca, Y)
    search.kneighbors(ca, direction="img->txt")  # its own model: fine
    with pytest.raises(ValueError, match=REFUSED):
        search.kneighbors(cb, direction="img->txt")
    with pytest.raises(ValueError, match=REFUSED):
        search.score(cb, Y)
    n = search.n_samples_fit_
    with pytest.raises(ValueError, match=REFUSED):
        search.add(cb[:3], Y[:3])
    assert search.n_samples_fit_ == n
    for path in (tmp_path / "index.npz", tmp_path / "index"):
        loaded = TwoStageRetriever.load(search.save(path))
        assert loaded.model_fingerprint_ == ca.model_fingerprint
        with pytest.raises(ValueError, match=REFUSED):
            loaded.kneighbors(cb, direction="img->txt")


def test_codes_without_a_model_are_not_checked(models):
    a, _ = models
    ca = a.transform(X)
    search = TwoStageRetriever(alpha=10, n_neighbors=5).fit(ca, Y)
    part = ca["img"]
    hand_made = CodeSet(
        embedding=part.embedding,
        bits=part.bits,
        codes=part.codes,
        n_bits=part.n_bits,
        codebooks=ca.codebooks,
        codebook_kind=ca.codebook_kind,
        modality="img",
    )
    assert hand_made.model_fingerprint is None
    np.testing.assert_array_equal(
        search.kneighbors(hand_made, direction="img->txt")[1],
        search.kneighbors(part, direction="img->txt")[1],
    )


def test_modalities_of_two_models_do_not_combine(models):
    a, b = models
    with pytest.raises(ValueError, match="encoded by another model"):
        CodeSet.from_modalities(img=a.transform(X)["img"], txt=b.transform(X)["txt"])


@pytest.mark.parametrize("bad", ["", 3, True, b"ab"])
def test_model_fingerprint_must_be_a_string(bad):
    with pytest.raises(ValueError, match="model_fingerprint=.* must be a non-empty"):
        CodeSet(embedding=np.ones((2, 3)), model_fingerprint=bad)
