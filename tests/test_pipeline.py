import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_array_equal
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import StandardScaler

from skhash import CodeSet, MultiModal
from skhash.compose import ModalityTransformer
from skhash.datasets import make_cross_modal
from skhash.hashing import HQHasher
from skhash.metrics import get_scorer, make_map_scorer
from skhash.pipeline import Pipeline, make_pipeline
from skhash.retrieval import TwoStageRetriever

HQ_PARAMS = {
    "n_bits": 16,
    "n_codebooks": 2,
    "n_codewords": 8,
    "hidden_layer_sizes": (16,),
    "max_epochs": 2,
    "batch_size": 64,
    "quantization_warmup": 1,
    "device": "cpu",
    "random_state": 0,
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # tiny networks on shared cores: intra-op threads only spin
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    X, y = make_cross_modal(200, n_classes=4, random_state=0)
    return X[:150], y[:150], X[150:], y[150:]


def _pipe(**kwargs):
    return Pipeline(
        [("hq", HQHasher(**HQ_PARAMS)), ("search", TwoStageRetriever(alpha=20))],
        **kwargs,
    )


class CountingHQ(HQHasher):
    """HQHasher that counts its fits (class-wide, this process)."""

    n_fits = 0

    def fit(self, X, y=None):
        type(self).n_fits += 1
        return super().fit(X, y)


class Recorder(BaseEstimator):
    """Final step recording what the pipeline hands it."""

    def fit(self, X, y=None):
        self.X_, self.y_ = X, y
        return self

    def transform(self, X):
        return X

    def score(self, X, y=None, **kwargs):
        self.score_args_ = (X, y, kwargs)
        return 0.5

    def kneighbors(
        self, X=None, n_neighbors=None, *, direction=None, return_distance=True
    ):
        self.kneighbors_args_ = (X, n_neighbors, direction, return_distance)
        return "result"


# --------------------------------------------------------------------------- #
# how a call is read
# --------------------------------------------------------------------------- #
A = np.arange(12.0).reshape(6, 2)
B = np.arange(18.0).reshape(6, 3)
Y1 = np.array([0, 1, 0, 1, 1, 0])
Y2 = np.eye(2, dtype=int)[Y1]


def _fit_record(*args, modalities=("img", "txt"), **kwargs):
    pipe = Pipeline([("rec", Recorder())], modalities=modalities)
    pipe.fit(*args, **kwargs)
    return pipe[-1].X_, pipe[-1].y_


@pytest.mark.parametrize(
    "args, kwargs, expect_mods, expect_y",
    [
        ((A, B, Y1), {}, ("img", "txt"), Y1),  # modalities then labels
        ((A, B, Y2), {}, ("img", "txt"), Y2),  # multi-label y
        ((A, B), {"y": Y2}, ("img", "txt"), Y2),  # keyword y
        ((A, B), {"y": None}, ("img", "txt"), None),  # explicitly unlabelled
        ((MultiModal(img=A, txt=B), Y2), {}, ("img", "txt"), Y2),  # GridSearchCV
        ((MultiModal(img=A, txt=B),), {"y": Y1}, ("img", "txt"), Y1),
        ((), {"X": MultiModal(img=A, txt=B), "y": Y1}, ("img", "txt"), Y1),
        ((A, Y1), {}, None, Y1),  # plain array + 1-D labels
        ((A,), {"y": Y2}, None, Y2),  # plain array + keyword multi-label y
        ((A,), {}, None, None),
    ],
)
def test_fit_call_forms(args, kwargs, expect_mods, expect_y):
    X, y = _fit_record(*args, **kwargs)
    if expect_mods is None:
        assert X is A
    else:
        assert isinstance(X, MultiModal) and X.modalities == expect_mods
        assert_array_equal(X["img"], A)
        assert_array_equal(X["txt"], B)
    if expect_y is None:
        assert y is None
    else:
        assert_array_equal(y, expect_y)


def test_modalities_parameter_names_and_orders_positional_arrays():
    X, y = _fit_record(A, B, A, Y1, modalities=("a", "b", "c"))
    assert X.modalities == ("a", "b", "c") and y is Y1
    X, y = _fit_record(A, B, A, modalities=("a", "b", "c"))  # n >= 3: no ambiguity
    assert X.modalities == ("a", "b", "c") and y is None
    X, y = _fit_record(A, Y2, modalities=("a", "b", "c"))  # k == 2: (X, y)
    assert X is A and y is Y2
    X, y = _fit_record(A, Y2, modalities=None)  # plain scikit-learn reading
    assert X is A and y is Y2


def test_two_2d_arrays_without_y_are_ambiguous():
    pipe = Pipeline([("rec", Recorder())])
    with pytest.raises(TypeError, match=r"fit\(X_img, X_txt, y=None\)"):
        pipe.fit(A, B)
    with pytest.raises(TypeError, match=r"score\(X, y=Y\)"):
        pipe.score(A, Y2)
    assert not hasattr(pipe[-1], "X_")  # nothing was fitted


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((A, B, Y1), {"y": Y1}, "arrays before y="),
        ((MultiModal(img=A, txt=B), Y1), {"y": Y1}, "y both"),
        ((MultiModal(img=A, txt=B), Y1, Y1), {}, "MultiModal"),
        ((A, B, A, Y1), {}, "4 positional arguments"),
        ((A, MultiModal(img=A, txt=B), Y1), {}, "was passed as the modality 'txt'"),
        ((A,), {"X": A}, "both positionally and as X="),
        ((), {}, "needs data"),
    ],
)
def test_bad_call_forms_raise(args, kwargs, match):
    with pytest.raises(TypeError, match=match):
        Pipeline([("rec", Recorder())]).fit(*args, **kwargs)


@pytest.mark.parametrize("modalities", [("img",), "img", ("a", "a"), ("a", "b c")])
def test_invalid_modalities_parameter(modalities):
    with pytest.raises(ValueError, match="'modalities' parameter"):
        Pipeline([("rec", Recorder())], modalities=modalities).fit(A, B, Y1)


def test_transform_score_kneighbors_forms():
    pipe = Pipeline([("rec", Recorder())]).fit(A, B, Y1)
    rec = pipe[-1]
    for Xt in (pipe.transform(A, B), pipe.transform(MultiModal(img=A, txt=B))):
        assert Xt.modalities == ("img", "txt")
    assert pipe.transform(A) is A
    with pytest.raises(TypeError, match="takes one X or 2 arrays"):
        pipe.transform(A, B, A)

    assert pipe.score(A, B, Y1, direction="img->txt", n_neighbors=3) == 0.5
    X, y, kwargs = rec.score_args_
    assert X.modalities == ("img", "txt") and y is Y1
    assert kwargs == {"direction": "img->txt", "n_neighbors": 3}

    assert pipe.kneighbors(A, B, 4, direction="img->txt") == "result"
    X, k, direction, return_distance = rec.kneighbors_args_
    assert X.modalities == ("img", "txt") and k == 4 and direction == "img->txt"
    pipe.kneighbors(MultiModal(img=A, txt=B), n_neighbors=2, return_distance=False)
    assert rec.kneighbors_args_[1:] == (2, None, False)
    for call in (
        lambda: pipe.kneighbors(),
        lambda: pipe.kneighbors(None, 3),
        lambda: pipe.kneighbors(X=None, n_neighbors=3),
    ):
        call()
        assert rec.kneighbors_args_[0] is None
    with pytest.raises(TypeError, match="n_neighbors both"):
        pipe.kneighbors(A, 3, n_neighbors=3)


def test_kneighbors_only_with_a_searching_final_step():
    pipe = Pipeline([("scale", StandardScaler())], modalities=None).fit(A)
    assert not hasattr(pipe, "kneighbors") and not hasattr(pipe, "score")


def test_fit_transform_with_modality_transformer_unsupervised():
    prep = ModalityTransformer([("img", StandardScaler())])
    pipe = Pipeline([("prep", prep)])
    Xt = pipe.fit_transform(A, B, y=None)
    assert Xt.modalities == ("img", "txt")
    np.testing.assert_allclose(Xt["img"].mean(axis=0), 0, atol=1e-12)
    assert_array_equal(Xt["txt"], B)


def test_make_pipeline_clone_and_slicing():
    pipe = make_pipeline(
        ModalityTransformer([("img", StandardScaler())]),
        HQHasher(),
        TwoStageRetriever(),
        modalities=("image", "text"),
    )
    assert isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == [
        "modalitytransformer",
        "hqhasher",
        "twostageretriever",
    ]
    params = pipe.get_params()
    assert params["modalities"] == ("image", "text")
    assert params["modalitytransformer__img__with_mean"] is True
    assert clone(pipe).modalities == ("image", "text")
    head = pipe[:2]
    assert isinstance(head, Pipeline) and head.modalities == ("image", "text")


# --------------------------------------------------------------------------- #
# end to end with HQHasher and TwoStageRetriever
# --------------------------------------------------------------------------- #
def test_call_forms_give_identical_results(data):
    X, y, Q, yq = data
    forms = {
        "positional": _pipe().fit(X["img"], X["txt"], y),
        "keyword_y": _pipe().fit(X["img"], X["txt"], y=y),
        "multimodal": _pipe().fit(X, y),
    }
    ref = forms["multimodal"]
    codes_ref = ref[:-1].transform(Q)
    scores = set()
    for pipe in forms.values():
        codes = pipe[:-1].transform(Q["img"], Q["txt"])
        assert isinstance(codes, CodeSet)
        for m in ("img", "txt"):
            assert_array_equal(codes.get(m, "bits"), codes_ref.get(m, "bits"))
            assert_array_equal(codes.get(m, "codes"), codes_ref.get(m, "codes"))
        scores |= {
            pipe.score(Q["img"], Q["txt"], yq),
            pipe.score(Q, yq),
            pipe.score(Q["img"], Q["txt"], y=yq),
        }
    assert len(scores) == 1
    score = scores.pop()
    # the score is MAP@50 of the queries against the training database
    assert score == get_scorer("map@50")(ref, Q, yq)
    assert 0.0 < score <= 1.0
    one_way = ref.score(Q["img"], Q["txt"], yq, direction="img->txt")
    assert one_way == make_map_scorer(50, direction="img->txt")(ref, Q, yq)

    dist, idx = ref.kneighbors(Q["img"], Q["txt"], 7, direction="txt->img")
    dist2, idx2 = ref.kneighbors(Q, n_neighbors=7, direction="txt->img")
    assert idx.shape == (50, 7)
    assert_array_equal(idx, idx2)
    assert_array_equal(dist, dist2)


def test_single_modality_plain_array_forms(data):
    X, y, Q, yq = data
    plain = _pipe().fit(X["img"], y)
    wrapped = _pipe().fit(MultiModal(X=X["img"]), y)
    by_keyword = _pipe(modalities=None).fit(X=X["img"], y=y)
    scores = {
        plain.score(Q["img"], yq),
        wrapped.score(MultiModal(X=Q["img"]), yq),
        by_keyword.score(Q["img"], yq),
    }
    assert len(scores) == 1


def test_grid_search_over_lambda_q_and_alpha(data):
    X, y, _, _ = data
    search = GridSearchCV(
        _pipe(),
        {"hq__lambda_q": [0.0, 0.1], "search__alpha": [0, 30]},
        scoring=make_map_scorer(k=50),
        cv=KFold(2, shuffle=True, random_state=0),
        n_jobs=2,
    )
    search.fit(X, y)
    assert set(search.best_params_) == {"hq__lambda_q", "search__alpha"}
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    assert isinstance(search.best_estimator_, Pipeline)


@pytest.mark.parametrize("use_memory", [True, False])
def test_memory_trains_each_learner_once_per_fold(data, tmp_path, use_memory):
    X, y, _, _ = data
    pipe = Pipeline(
        [("hq", CountingHQ(**HQ_PARAMS)), ("search", TwoStageRetriever())],
        memory=str(tmp_path) if use_memory else None,
    )
    alphas = [0, 10, 1.0]
    search = GridSearchCV(
        pipe,
        {"search__alpha": alphas},
        scoring=get_scorer("map@50"),
        cv=KFold(2, shuffle=True, random_state=0),
        n_jobs=1,
    )
    CountingHQ.n_fits = 0
    search.fit(X, y)
    # one fit per fold, plus the refit on all the data
    expected = 2 + 1 if use_memory else 2 * len(alphas) + 1
    assert CountingHQ.n_fits == expected
    assert search.best_params_["search__alpha"] in alphas


def test_memory_with_positional_call(data, tmp_path):
    X, y, Q, yq = data
    pipe = Pipeline(
        [("hq", CountingHQ(**HQ_PARAMS)), ("search", TwoStageRetriever(alpha=20))],
        memory=str(tmp_path),
    )
    CountingHQ.n_fits = 0
    first = clone(pipe).fit(X["img"], X["txt"], y).score(Q, yq)
    second = clone(pipe).set_params(search__alpha=0).fit(X, y).score(Q, yq)
    assert CountingHQ.n_fits == 1
    assert 0 <= first <= 1 and 0 <= second <= 1


def test_score_and_grid_search_with_metadata_routing(data):
    # with routing on, an absent sample_weight is not routed to a retriever
    # that takes none (every score call failed, and so GridSearchCV without
    # scoring=); the score is the one without routing
    X_tr, y_tr, X_te, y_te = data
    pipe = _pipe().fit(X_tr, y_tr)
    expected = pipe.score(X_te, y_te)
    with sklearn.config_context(enable_metadata_routing=True):
        assert pipe.score(X_te, y_te) == expected
        search = GridSearchCV(_pipe(), {"search__alpha": [0, 20]}, cv=2).fit(X_tr, y_tr)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_kneighbors_of_one_array_takes_the_direction_s_source(data):
    # the user guide's call: one plain array of queries of the modality the
    # direction starts from
    X_tr, y_tr, X_te, _ = data
    pipe = _pipe().fit(X_tr, y_tr)
    for src, dst in (("img", "txt"), ("txt", "img")):
        direction = f"{src}->{dst}"
        got = pipe.kneighbors(X_te[src], 10, direction=direction, return_distance=False)
        want = pipe.kneighbors(
            MultiModal(**{src: X_te[src]}), 10, direction=direction,
            return_distance=False,
        )  # fmt: skip
        assert_array_equal(got, want)
    with pytest.raises(ValueError, match="pass a MultiModal"):
        pipe.kneighbors(X_te["img"], 10)  # no direction: which modality?
