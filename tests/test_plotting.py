"""Tests of the Display objects: the plotted data equal the metric functions'."""

import sys

import matplotlib  # noqa: E402  (in the tests extra)
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skhash import CodeSet, MultiModal, TwoStageRetriever, pack_bits  # noqa: E402
from skhash.hashing import HQHasher  # noqa: E402
from skhash.metrics import (  # noqa: E402
    precision_at_top_r,
    precision_recall_hamming,
    relevance,
)
from skhash.pipeline import Pipeline  # noqa: E402
from skhash.plotting import (  # noqa: E402
    AlphaSweepDisplay,
    PrecisionAtTopRDisplay,
    PrecisionRecallDisplay,
)
from skhash.quantization import encode, kmeans_codebooks  # noqa: E402
from skhash.retrieval import get_backend  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def coded():
    """Two-modality codes (bits, additive codes, embeddings) of 150 items."""
    rng = np.random.RandomState(0)
    y = rng.randint(3, size=150)
    centers = rng.randn(3, 16)
    parts = {}
    for m in ("img", "txt"):
        parts[m] = (centers[y] + 0.8 * rng.randn(150, 16)).astype(np.float32)
    C = kmeans_codebooks(
        np.concatenate(list(parts.values())), 2, 8, kind="additive", random_state=0
    )
    codes = CodeSet.from_modalities(
        **{
            m: CodeSet(
                embedding=e,
                bits=pack_bits(e),
                n_bits=16,
                codes=encode(e, C, kind="additive"),
                codebooks=C,
                codebook_kind="additive",
                modality=m,
            )
            for m, e in parts.items()
        }
    )
    return codes, y


def _line_xy(line):
    x, y = line.get_data()
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


# --------------------------------------------------------------------------- #
# PrecisionRecallDisplay
# --------------------------------------------------------------------------- #
def test_pr_from_predictions_plots_metric_output():
    rng = np.random.RandomState(1)
    y_true = rng.rand(5, 30) < 0.3
    dist = rng.randint(0, 9, size=(5, 30))
    display = PrecisionRecallDisplay.from_predictions(
        y_true, dist, n_bits=8, name="codes"
    )
    precision, recall, radii = precision_recall_hamming(y_true, dist, n_bits=8)
    x, y = _line_xy(display.line_)
    np.testing.assert_allclose(x, recall)
    np.testing.assert_allclose(y, precision)
    np.testing.assert_array_equal(display.radii, radii)
    assert display.line_.get_label() == "codes"
    assert display.ax_.get_xlabel() == "Recall"
    assert display.ax_.get_ylabel() == "Precision"
    assert display.figure_ is display.ax_.figure


def test_pr_from_estimator_equals_metric_on_hamming_matrix(coded):
    codes, y = coded
    db, q = codes[:100], codes[100:]
    search = TwoStageRetriever(alpha=20).fit(db, y[:100])
    display = PrecisionRecallDisplay.from_estimator(
        search, q, y[100:], direction="img->txt"
    )
    hamming = get_backend().hamming(q["img"].bits, db["txt"].bits)
    expected = precision_recall_hamming(relevance(y[100:], y[:100]), hamming, n_bits=16)
    x, yy = _line_xy(display.line_)
    np.testing.assert_allclose(x, expected[1])
    np.testing.assert_allclose(yy, expected[0])
    assert display.line_.get_label() == "TwoStageRetriever"
    # the retriever's own alpha is untouched
    assert search.alpha == 20


def test_pr_from_estimator_needs_bits_and_direction(coded):
    codes, y = coded
    no_bits = codes.without("bits")
    search = TwoStageRetriever(alpha=1.0).fit(no_bits[:100], y[:100])
    with pytest.raises(ValueError, match="needs binary codes"):
        PrecisionRecallDisplay.from_estimator(
            search, no_bits[100:], y[100:], direction="img->txt"
        )
    search = TwoStageRetriever().fit(codes[:100], y[:100])
    with pytest.raises(ValueError, match="pass direction="):
        PrecisionRecallDisplay.from_estimator(search, codes[100:], y[100:])
    with pytest.raises(ValueError, match="names a modality the retriever does not"):
        PrecisionRecallDisplay.from_estimator(
            search, codes[100:], y[100:], direction="img->foo"
        )
    unlabelled = TwoStageRetriever().fit(codes[:100])
    with pytest.raises(ValueError, match="without database labels"):
        PrecisionRecallDisplay.from_estimator(
            unlabelled, codes[100:], y[100:], direction="img->txt"
        )


def test_plot_on_given_axes_with_kwargs():
    fig, ax = plt.subplots()
    display = PrecisionRecallDisplay(
        precision=np.array([1.0, 0.5]), recall=np.array([0.5, 1.0]), radii=np.arange(2)
    )
    display.plot(ax=ax, name="a", color="red")
    assert display.ax_ is ax and display.figure_ is fig
    assert display.line_.get_color() == "red"
    assert display.line_.get_label() == "a"


# --------------------------------------------------------------------------- #
# PrecisionAtTopRDisplay
# --------------------------------------------------------------------------- #
def test_top_r_from_predictions_plots_metric_output():
    rng = np.random.RandomState(2)
    y_true = rng.rand(4, 40) < 0.4
    y_score = rng.randn(4, 40)
    r = [1, 5, 10, 40]
    display = PrecisionAtTopRDisplay.from_predictions(y_true, y_score, r_values=r)
    x, yy = _line_xy(display.line_)
    np.testing.assert_array_equal(x, r)
    np.testing.assert_allclose(yy, precision_at_top_r(y_true, y_score, r_values=r))


def test_top_r_from_estimator_uses_the_retrievers_ranking(coded):
    codes, y = coded
    search = TwoStageRetriever(alpha=30, n_neighbors=10).fit(codes[:100], y[:100])
    r = [1, 10, 50, 500]  # 500 is clipped to the database size
    display = PrecisionAtTopRDisplay.from_estimator(
        search, codes[100:], y[100:], r_values=r, direction="txt->img"
    )
    idx = search.kneighbors(codes[100:], 100, direction="txt->img")[1]
    rel = relevance(y[100:], y[:100])
    ranked = np.take_along_axis(rel, idx, axis=1)
    expected = [ranked[:, :k].mean() for k in (1, 10, 50, 100)]
    np.testing.assert_array_equal(display.r_values, [1, 10, 50, 100])
    np.testing.assert_allclose(_line_xy(display.line_)[1], expected)
    # the top-r precision of the retriever's ranking equals its precision@k
    p10 = search.score(codes[100:], y[100:], direction="txt->img", metric="precision")
    assert display.precision[1] == pytest.approx(p10)


def test_top_r_default_r_values(coded):
    codes, y = coded
    search = TwoStageRetriever().fit(codes["img"][:100], y[:100])
    display = PrecisionAtTopRDisplay.from_estimator(search, codes["img"][100:], y[100:])
    assert display.r_values[0] == 1 and display.r_values[-1] == 100
    assert np.all(np.diff(display.r_values) > 0)


def test_top_r_from_pipeline():
    rng = np.random.RandomState(0)
    y = rng.randint(3, size=90)
    X = MultiModal(
        img=rng.randn(3, 6)[y] + rng.randn(90, 6),
        txt=rng.randn(3, 4)[y] + rng.randn(90, 4),
    )
    pipe = Pipeline(
        [
            (
                "hq",
                HQHasher(
                    n_bits=8,
                    n_codebooks=2,
                    n_codewords=4,
                    hidden_layer_sizes=(16,),
                    max_epochs=2,
                    random_state=0,
                ),
            ),
            ("search", TwoStageRetriever(alpha=10, n_neighbors=5)),
        ]
    ).fit(X[:60], y[:60])
    display = PrecisionAtTopRDisplay.from_estimator(
        pipe, X[60:], y[60:], r_values=[5], direction="img->txt"
    )
    assert display.line_.get_label() == "HQHasher"
    p5 = pipe.score(X[60:], y[60:], direction="img->txt", metric="precision")
    assert display.precision[0] == pytest.approx(p5)
    pr = PrecisionRecallDisplay.from_estimator(
        pipe, X[60:], y[60:], direction="img->txt"
    )
    assert pr.radii[-1] == 8


# --------------------------------------------------------------------------- #
# AlphaSweepDisplay
# --------------------------------------------------------------------------- #
def test_alpha_sweep_scores_equal_retriever_score(coded):
    codes, y = coded
    search = TwoStageRetriever(alpha=5, n_neighbors=10).fit(codes[:100], y[:100])
    alphas = [0, 0.1, 25, 1.0]
    display = AlphaSweepDisplay.from_estimator(
        search, codes[100:], y[100:], alphas=alphas, n_repeats=2
    )
    expected = [
        TwoStageRetriever(alpha=a, n_neighbors=10)
        .fit(codes[:100], y[:100])
        .score(codes[100:], y[100:])
        for a in alphas
    ]
    x, yy = _line_xy(display.line_)
    np.testing.assert_allclose(yy, expected)
    np.testing.assert_allclose(x, [0.0, 0.1, 0.25, 1.0])  # int 25 -> 25 / N
    sx, sy = _line_xy(display.speed_line_)
    np.testing.assert_allclose(sx, x)
    assert np.all(sy > 0)
    assert display.ax_.get_ylabel() == "MAP@10"
    assert display.speed_ax_.get_ylabel() == "Queries per second"
    assert search.alpha == 5  # not mutated


def test_alpha_sweep_one_direction_and_variant(coded):
    codes, y = coded
    search = TwoStageRetriever(n_neighbors=10).fit(codes[:100], y[:100])
    display = AlphaSweepDisplay.from_estimator(
        search,
        codes[100:],
        y[100:],
        alphas=[0.2],
        direction="img->txt",
        n_neighbors=20,
        variant="full",
    )
    expected = search.set_params(alpha=0.2).score(
        codes[100:], y[100:], direction="img->txt", n_neighbors=20, variant="full"
    )
    assert display.scores[0] == pytest.approx(expected)
    assert display.n_neighbors == 20


def test_alpha_sweep_rejects_bad_input(coded):
    codes, y = coded
    search = TwoStageRetriever().fit(codes[:100], y[:100])
    with pytest.raises(ValueError, match="n_repeats"):
        AlphaSweepDisplay.from_estimator(search, codes[100:], y[100:], n_repeats=0)
    with pytest.raises(ValueError, match="numbers"):
        AlphaSweepDisplay.from_estimator(search, codes[100:], y[100:], alphas=["a"])
    # each refused with the parameter and the fix (dcmh failed asking for an
    # n_relevant the caller cannot pass, True was read as K=1, a y of another
    # length failed deep in the ranking)
    for kwargs, match in (
        ({"variant": "dcmh"}, "variant='dcmh' is not one of"),
        ({"variant": "bogus"}, "variant='bogus' is not one of"),
        ({"n_neighbors": True}, "n_neighbors=True must be a positive int"),
    ):
        with pytest.raises(ValueError, match=match):
            AlphaSweepDisplay.from_estimator(search, codes[100:], y[100:], **kwargs)
    with pytest.raises(ValueError, match="y has 10 rows but X holds 50 queries"):
        AlphaSweepDisplay.from_estimator(search, codes[100:], y[100:110])


def test_final_step_must_be_a_retriever(coded):
    codes, y = coded
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="TwoStageRetriever"):
        PrecisionAtTopRDisplay.from_estimator(scaler, codes, y)


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    display = PrecisionAtTopRDisplay(np.array([1]), np.array([1.0]))
    with pytest.raises(ImportError, match=r"pip install skhash\[plot\]"):
        display.plot()


def test_import_does_not_import_matplotlib():
    import subprocess

    code = "import sys, skhash.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
