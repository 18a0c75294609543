import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.preprocessing import StandardScaler

from skhash import MultiModal
from skhash.compose import ModalityTransformer
from skhash.hashing import HQHasher
from skhash.pipeline import make_pipeline
from skhash.retrieval import TwoStageRetriever

rng = np.random.RandomState(0)
IMG = rng.randn(20, 4) * 3 + 1
TXT = rng.randint(0, 3, (20, 6)).astype(float)
TXT[:, 0] += 1  # no all-zero rows
EXTRA = rng.randn(20, 2)
X = MultiModal(img=IMG, txt=TXT, extra=EXTRA)


def test_transforms_each_named_modality_and_passes_the_rest():
    prep = ModalityTransformer([("img", StandardScaler()), ("txt", TfidfTransformer())])
    Xt = prep.fit_transform(X)
    assert isinstance(Xt, MultiModal)
    assert Xt.modalities == ("img", "txt", "extra")  # the input's order
    assert_allclose(Xt["img"], StandardScaler().fit_transform(IMG))
    assert sp.issparse(Xt["txt"])  # kept sparse by default
    assert_allclose(
        Xt["txt"].toarray(), TfidfTransformer().fit_transform(TXT).toarray()
    )
    assert_array_equal(Xt["extra"], EXTRA)
    assert [name for name, _ in prep.transformers_] == ["img", "txt", "extra"]
    assert prep.named_transformers_.extra == "passthrough"
    assert isinstance(prep.named_transformers_.img, StandardScaler)
    assert prep.transformers[0][1] is not prep.named_transformers_.img  # cloned
    assert prep.modalities_ == ("img", "txt", "extra")
    assert prep.n_features_per_modality_ == {"img": 4, "txt": 6, "extra": 2}
    assert not hasattr(prep, "n_features_in_")
    Xt2 = prep.transform(X)
    assert_allclose(Xt2["img"], Xt["img"])
    assert_allclose(Xt2["txt"].toarray(), Xt["txt"].toarray())


def test_remainder_drop_drop_entry_and_densify():
    prep = ModalityTransformer(
        [("img", "drop"), ("txt", TfidfTransformer())], remainder="drop", densify=True
    )
    Xt = prep.fit_transform(X)
    assert Xt.modalities == ("txt",)
    assert isinstance(Xt["txt"], np.ndarray)
    assert prep.transform(X).modalities == ("txt",)
    with pytest.raises(ValueError, match="Every modality was dropped"):
        ModalityTransformer([("img", "drop")], remainder="drop").fit(
            MultiModal(img=IMG)
        )


def test_transform_accepts_a_subset_of_modalities():
    prep = ModalityTransformer([("img", StandardScaler())]).fit(X)
    out = prep.transform(MultiModal(txt=TXT[:3]))
    assert out.modalities == ("txt",)
    assert_array_equal(out["txt"], TXT[:3])


def test_errors_name_the_modality():
    prep = ModalityTransformer([("img", StandardScaler()), ("audio", StandardScaler())])
    with pytest.raises(ValueError, match=r"transformers for \['audio'\]"):
        prep.fit(X)
    prep = ModalityTransformer([("img", StandardScaler())]).fit(X)
    with pytest.raises(ValueError, match=r"Unknown modalities \['video'\]"):
        prep.transform(MultiModal(video=IMG))
    with pytest.raises(ValueError, match=r"Unknown modalities \['X'\].*MultiModal"):
        prep.transform(IMG)
    with pytest.raises(ValueError, match="Modality 'extra' has 3 features"):
        prep.transform(MultiModal(extra=rng.randn(2, 3)))
    with pytest.raises(TypeError, match="must implement fit and transform"):
        ModalityTransformer([("img", object())]).fit(X)
    with pytest.raises(ValueError, match="list of \\(modality, transformer\\)"):
        ModalityTransformer([("img",)]).fit(X)
    with pytest.raises(ValueError, match="identifier"):
        ModalityTransformer([("my img", StandardScaler())]).fit(X)
    with pytest.raises(ValueError, match="unique"):
        ModalityTransformer([("img", StandardScaler()), ("img", "drop")]).fit(X)


def test_plain_array_is_modality_X():
    prep = ModalityTransformer([("X", StandardScaler())])
    out = prep.fit_transform(IMG)
    assert isinstance(out, np.ndarray)
    assert_allclose(out, StandardScaler().fit_transform(IMG))
    assert prep.n_features_in_ == 4 and prep.modalities_ == ("X",)
    # refit on a MultiModal forgets the plain-array attributes
    prep.fit(MultiModal(X=IMG))
    assert not hasattr(prep, "n_features_in_")


def test_deep_params():
    prep = ModalityTransformer([("img", StandardScaler()), ("txt", TfidfTransformer())])
    params = prep.get_params()
    assert params["img__with_mean"] is True
    assert params["txt__norm"] == "l2"
    assert "img" in params and "remainder" in params
    prep.set_params(img__with_mean=False, txt="drop", remainder="drop")
    assert prep.transformers[0][1].with_mean is False
    assert prep.transformers[1][1] == "drop"
    assert clone(prep).get_params(deep=False)["remainder"] == "drop"
    assert "img__with_mean" not in prep.get_params(deep=False)


def test_in_a_pipeline_with_a_learner():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        y = rng.randint(0, 2, 20)
        pipe = make_pipeline(
            ModalityTransformer(
                [("img", StandardScaler()), ("txt", TfidfTransformer())]
            ),
            HQHasher(
                n_bits=8,
                n_codebooks=1,
                n_codewords=4,
                hidden_layer_sizes=(8,),
                max_epochs=1,
                device="cpu",
                random_state=0,
            ),
            TwoStageRetriever(n_neighbors=5),
        )
        pipe.fit(IMG, TXT, y)
        assert pipe.named_steps["hqhasher"].modalities_ == ("img", "txt")
        assert 0 <= pipe.score(IMG, TXT, y) <= 1
        assert pipe.get_params()["modalitytransformer__txt__norm"] == "l2"
    finally:
        torch.set_num_threads(n)


def test_column_names_are_checked_and_passed_through():
    pd = pytest.importorskip("pandas")
    img = pd.DataFrame(IMG, columns=[f"i{j}" for j in range(4)])
    txt = pd.DataFrame(TXT, columns=[f"t{j}" for j in range(6)])
    prep = ModalityTransformer([("img", StandardScaler())]).fit(
        MultiModal(img=img, txt=txt)
    )
    assert list(prep.feature_names_in_) == ["img", "txt"]
    assert_array_equal(prep.feature_names_in_["txt"], txt.columns)
    # reordered columns are refused, as by the learners (they used to be
    # transformed silently, column for column)
    for swapped in (
        MultiModal(img=img[img.columns[::-1]], txt=txt),
        MultiModal(img=img, txt=txt[txt.columns[::-1]]),
    ):
        with pytest.raises(ValueError, match="columns are in another order"):
            prep.transform(swapped)
    # the passthrough modality keeps its names for the next step's checks
    out = prep.transform(MultiModal(img=img, txt=txt))
    assert set(out.feature_names) == {"txt"}
    assert_array_equal(out.feature_names["txt"], txt.columns)
    assert_allclose(out["img"], StandardScaler().fit_transform(IMG))


class _Failing(StandardScaler):
    def fit_transform(self, X, y=None):
        raise RuntimeError("refit failed")


@pytest.mark.parametrize("plain", [True, False])
def test_a_failed_refit_leaves_the_transformer_as_it_was(plain):
    # the refit fails after the input checks had reset n_features_in_ (a
    # plain array) or deleted it (a MultiModal): all is restored
    first = IMG if plain else MultiModal(X=IMG)
    prep = ModalityTransformer([("X", StandardScaler())]).fit(first)
    fitted = {k: v for k, v in vars(prep).items() if k.endswith("_")}
    assert "n_features_in_" in fitted or not plain
    prep.set_params(X=_Failing())
    wider = np.ones((3, 7)) if plain else MultiModal(X=np.ones((3, 7)))
    with pytest.raises(RuntimeError, match="refit failed"):
        prep.fit(wider)
    after = {k: v for k, v in vars(prep).items() if k.endswith("_")}
    assert after.keys() == fitted.keys()
    assert all(after[k] is v for k, v in fitted.items())
    assert_allclose(
        np.asarray(prep.transform(first) if plain else prep.transform(first)["X"]),
        StandardScaler().fit_transform(IMG),
    )
