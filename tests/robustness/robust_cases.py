"""The bad inputs tried by ``test_robust_inputs.py``, kept as data.

Each :class:`Case` names the call, the bad input, and what must happen: an
exception type with the literal text of its message (matched with
``pytest.raises(match=re.escape(message))``), or acceptance (the input is
converted and a check on the result passes). The same list renders the table
in ``ERRORS.md``; ``test_errors_table_is_current`` fails when the file is
stale. Regenerate it with::

    python tests/robustness/robust_cases.py

Cases marked ``xfail`` are behaviours of :class:`~skhash.TwoStageRetriever`
that need a fix in ``skhash/retrieval`` (owned by another developer); they
run as ``xfail(strict=True)``.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from unittest import mock

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skhash import (
    CodeSet,
    DQNQuantizer,
    HQHasher,
    MultiModal,
    Pipeline,
    TwoStageRetriever,
    make_pipeline,
    pack_bits,
    unpack_bits,
)
from skhash.compose import ModalityTransformer
from skhash.datasets import (
    load_mirflickr,
    load_nuswide,
    load_wiki,
    make_cross_modal,
)
from skhash.exceptions import IndexFormatError
from skhash.hashing import DJSRHHasher
from skhash.metrics import (
    average_precision_from_ranking,
    get_scorer,
    harmonic_mean,
    make_map_scorer,
    make_precision_scorer,
    mean_average_precision,
    n_relevant,
    precision_at_k,
    precision_at_top_r,
    precision_recall_hamming,
    ranked_relevance,
    relevance,
)
from skhash.quantization import (
    AdditiveQuantizer,
    ProductQuantizer,
    aqd,
    decode,
    encode,
    kmeans_codebooks,
    lookup_tables,
    product_blocks,
    quantization_error,
    reconstruction_sqnorms,
    update_codebooks,
)
from skhash.retrieval import get_backend

HERE = os.path.dirname(os.path.abspath(__file__))
ERRORS_MD = os.path.join(HERE, "ERRORS.md")

N, D_IMG, D_TXT = 60, 8, 5
LEARNERS = ("HQHasher", "DJSRHHasher", "DQNQuantizer")
SUPERVISED = ("HQHasher", "DQNQuantizer")
QUANTIZERS = ("ProductQuantizer", "AdditiveQuantizer")


# --------------------------------------------------------------------------- #
# Tiny estimators and data
# --------------------------------------------------------------------------- #


def make_learner(name, **params):
    """A tiny CPU learner (one epoch, 16 hidden units, 8 bits / 4 codewords).

    With a custom ``module`` the default towers' width is left at its
    default: the module replaces those towers, and setting it would only
    make the learner warn that it is ignored."""
    small = {"max_epochs": 1, "device": "cpu", "random_state": 0}
    if "module" not in params:
        small["hidden_layer_sizes"] = (16,)
    small.update(params)
    if name == "HQHasher":
        small.setdefault("batch_size", 32)
        small.setdefault("quantization_warmup", 0)
        return HQHasher(n_bits=8, n_codebooks=2, n_codewords=4, **small)
    if name == "DJSRHHasher":
        small.setdefault("batch_size", 16)
        return DJSRHHasher(n_bits=8, **small)
    if name == "DQNQuantizer":
        small.setdefault("batch_size", 32)
        return DQNQuantizer(2, n_codewords=4, n_dims=8, **small)
    raise KeyError(name)


def make_quantizer(name):
    cls = {"ProductQuantizer": ProductQuantizer, "AdditiveQuantizer": AdditiveQuantizer}
    return cls[name](2, 4, random_state=0)


def same_codes(a, b):
    """Whether two CodeSets hold identical parts (bitwise)."""
    if a.modalities != b.modalities or len(a) != len(b):
        return False
    for m in a.modalities:
        for part in ("embedding", "bits", "codes"):
            pa, pb = a.get(m, part), b.get(m, part)
            if (pa is None) != (pb is None):
                return False
            if pa is not None and not np.array_equal(pa, pb):
                return False
    return True


def with_value(a, value, where=(3, 2)):
    out = np.array(a, dtype=np.float64, copy=True)
    out[where] = value
    return out


class Context:
    """Data and fitted estimators shared by the cases; never mutated by them."""

    def __init__(self):
        rng = np.random.RandomState(0)
        self.y = np.repeat(np.arange(3), N // 3)
        self.Y = np.eye(3, dtype=np.int64)[self.y]
        self.X_img = rng.randn(N, D_IMG) + self.y[:, None]
        self.X_txt = rng.randn(N, D_TXT) - self.y[:, None]
        self.X = MultiModal(img=self.X_img, txt=self.X_txt)
        self._fitted = {}

    def learner(self, name):
        """``name`` fitted on the two modalities (img, txt)."""
        key = ("cross", name)
        if key not in self._fitted:
            y = None if name == "DJSRHHasher" else self.y
            self._fitted[key] = make_learner(name).fit(self.X, y)
        return self._fitted[key]

    def learner_single(self, name):
        """``name`` fitted on the plain array X_img (single modality)."""
        key = ("single", name)
        if key not in self._fitted:
            y = None if name == "DJSRHHasher" else self.y
            self._fitted[key] = make_learner(name).fit(self.X_img, y)
        return self._fitted[key]

    def quantizer(self, name):
        key = ("quantizer", name)
        if key not in self._fitted:
            self._fitted[key] = make_quantizer(name).fit(self.X_img)
        return self._fitted[key]

    @cached_property
    def codes(self):
        """HQ codes of X: the database of the retriever cases."""
        return self.learner("HQHasher").transform(self.X)

    @cached_property
    def retriever(self):
        return TwoStageRetriever(alpha=10, n_neighbors=5).fit(self.codes, self.y)

    @cached_property
    def retriever_plain(self):
        """A retriever over plain float embeddings (exact cosine search)."""
        return TwoStageRetriever(n_neighbors=5).fit(self.X_img, self.y)

    @cached_property
    def other_codes(self):
        """Codes of another model: 16 bits, 16-d codebooks."""
        hq = HQHasher(
            n_bits=16,
            n_codebooks=2,
            n_codewords=4,
            hidden_layer_sizes=(16,),
            max_epochs=1,
            device="cpu",
            random_state=1,
        ).fit(self.X, self.y)
        return hq.transform(self.X)

    @cached_property
    def pipeline(self):
        pipe = Pipeline(
            [
                ("hq", make_learner("HQHasher")),
                ("search", TwoStageRetriever(alpha=10, n_neighbors=5)),
            ]
        )
        return pipe.fit(self.X_img, self.X_txt, self.y)

    @cached_property
    def modality_transformer(self):
        return ModalityTransformer([("img", StandardScaler())]).fit(self.X)

    @cached_property
    def relevance(self):
        rng = np.random.RandomState(1)
        return (rng.rand(4, 10) > 0.5).astype(np.int64), rng.rand(4, 10)

    @cached_property
    def tmpdir(self):
        return tempfile.mkdtemp(prefix="skhash-robustness-")


# --------------------------------------------------------------------------- #
# Cases
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Case:
    """One bad input and what it must give.

    Parameters
    ----------
    group : str
        Section of the table (an estimator or a module).
    call : str
        The call tried, e.g. ``"HQHasher.fit"``.
    situation : str
        The bad input, in words.
    run : callable
        ``run(ctx)`` makes the call.
    raises : type or None
        The exception type, or None when the input is accepted.
    message : str
        Literal text the error message must contain (the whole message,
        or its first sentence for scikit-learn's long ones).
    outcome : str
        For an accepted input, what happens to it.
    check : callable or None
        For an accepted input, ``check(result, ctx)`` asserts the outcome.
    xfail : str
        Why the behaviour is wrong today (a fix is needed), or "".
    current : str
        For an ``xfail`` case, what happens today.
    """

    group: str
    call: str
    situation: str
    run: Callable
    raises: type | None = None
    message: str = ""
    outcome: str = ""
    check: Callable | None = None
    xfail: str = ""
    current: str = ""

    @property
    def id(self):
        words = re.sub(r"[^A-Za-z0-9]+", "-", f"{self.call} {self.situation}")
        return words.strip("-").lower()

    @property
    def pattern(self):
        return re.escape(self.message)


CASES: list[Case] = []


def rejects(group, call, situation, run, raises, message, **kw):
    CASES.append(Case(group, call, situation, run, raises, message, **kw))


def accepts(group, call, situation, run, outcome, check=None, **kw):
    CASES.append(Case(group, call, situation, run, None, "", outcome, check, **kw))


# -- learners ---------------------------------------------------------------- #


def _transform_same_as_float(convert):
    """Check: transform(convert(X_img)) equals transform of its float64 copy."""

    def check(codes, ctx, name):
        est = ctx.learner(name)
        converted = convert(ctx.X_img)
        dense = converted.toarray() if sp.issparse(converted) else converted
        ref = est.transform(MultiModal(img=np.asarray(dense, dtype=np.float64)))
        assert same_codes(codes, ref)

    return check


def _fitted_and_finite(est, ctx):
    codes = est.transform(ctx.X)
    for m in codes.modalities:
        assert np.isfinite(codes.get(m, "embedding")).all()
    assert len(codes) == N


def _learner_cases(name):
    g = name
    y = None if name == "DJSRHHasher" else "y"

    def fit(X, yy=y, **params):
        def run(ctx):
            return make_learner(name, **params).fit(X(ctx), _labels(yy, ctx))

        return run

    f, t = f"{name}.fit", f"{name}.transform"
    rejects(
        g,
        f,
        "NaN in a modality",
        fit(lambda c: MultiModal(img=with_value(c.X_img, np.nan), txt=c.X_txt)),
        ValueError,
        "Modality 'img' (shape (60, 8)) is not valid: Input modality 'img' "
        "contains NaN.",
    )
    rejects(
        g,
        f,
        "inf in a plain array",
        fit(lambda c: with_value(c.X_img, np.inf)),
        ValueError,
        "X (shape (60, 8)) is not valid: Input X contains infinity "
        "or a value too large for dtype('float64').",
    )
    rejects(
        g,
        f,
        "values beyond float32 (1e300)",
        fit(lambda c: MultiModal(img=with_value(c.X_img, 1e300), txt=c.X_txt)),
        ValueError,
        "Modality 'img' has values too large for float32 (largest magnitude "
        "1e+300; float32 holds up to 3.4e+38), in which the towers compute; "
        "rescale the features.",
    )
    rejects(
        g,
        f,
        "modalities with different row counts (a dict)",
        fit(lambda c: {"img": c.X_img, "txt": c.X_txt[:50]}),
        ValueError,
        "All modalities must have the same number of rows (one row per item); "
        "got img: (60, 8), txt: (50, 5).",
    )
    rejects(
        g,
        f,
        "0 items",
        fit(lambda c: c.X_img[:0], None),
        ValueError,
        "X (shape (0, 8)) is not valid: Found array with 0 sample(s) "
        "(shape=(0, 8)) while a minimum of 1 is required.",
    )
    rejects(
        g,
        f,
        "1 item",
        fit(lambda c: c.X_img[:1], None),
        ValueError,
        f"{name} needs at least 2 training items; got n_samples=1.",
    )
    rejects(
        g,
        f,
        "string features",
        fit(lambda c: np.full((N, 2), "a")),
        ValueError,
        "X (shape (60, 2)) is not valid: could not convert string to float: "
        "np.str_('a')",
    )
    rejects(
        g,
        f,
        "device='cuda' without CUDA",
        lambda ctx: _without_cuda(
            lambda: make_learner(name, device="cuda").fit(
                ctx.X, None if name == "DJSRHHasher" else ctx.y
            )
        ),
        ValueError,
        "device='cuda' was requested but CUDA is not available on this machine. "
        "Use device='auto' (CUDA when present, else CPU) or device='cpu'.",
    )
    rejects(
        g,
        f,
        "lr=0",
        fit(lambda c: c.X, lr=0),
        InvalidParameterError,
        f"The 'lr' parameter of {name} must be a float in the range (0.0, inf). "
        "Got 0 instead.",
    )
    for width in (0, -3, 2.5, True):
        rejects(
            g,
            f,
            f"hidden_layer_sizes=(16, {width!r})",
            fit(lambda c: c.X, hidden_layer_sizes=(16, width)),
            InvalidParameterError,
            f"hidden_layer_sizes=(16, {width!r}): every width must be a positive "
            "int of at most 1048576 (no bool, float, zero or negative); got "
            f"{width!r}.",
        )
    for device, text in (
        ("gpu", "device='gpu' is not a device name (CUDA devices are named 'cuda')"),
        ("cuda:x", "device='cuda:x' is not a device name; use 'auto', 'cpu'"),
        ("meta", "device='meta' is a 'meta' device, on which a learner cannot train"),
    ):
        rejects(
            g,
            f,
            f"device={device!r}",
            fit(lambda c: c.X, device=device),
            ValueError,
            text,
        )
    for param in ("max_epochs", "batch_size"):
        rejects(
            g,
            f,
            f"{param}=True (a bool as a count)",
            fit(lambda c: c.X, **{param: True}),
            InvalidParameterError,
            f"The '{param}' parameter of {name} must be a number, not a bool: got "
            f"{param}=True.",
        )
    rejects(
        g,
        f,
        "lr=0.01 with optimizer__lr=0.1",
        fit(lambda c: c.X, lr=0.01, optimizer__lr=0.1),
        ValueError,
        "optimizer__lr=0.1 contradicts lr=0.01: they are the same setting. Pass "
        "only lr=0.1.",
    )
    if name != "DQNQuantizer":
        rejects(
            g,
            f,
            "n_bits=10**6 (beyond the widest code)",
            lambda ctx: (
                make_learner(name).set_params(n_bits=10**6).fit(ctx.X, _labels(y, ctx))
            ),
            InvalidParameterError,
            f"The 'n_bits' parameter of {name} must be an int in the range "
            "[1, 65536]. Got 1000000 instead.",
        )
        rejects(
            g,
            f,
            "n_bits=True",
            lambda ctx: (
                make_learner(name).set_params(n_bits=True).fit(ctx.X, _labels(y, ctx))
            ),
            InvalidParameterError,
            f"The 'n_bits' parameter of {name} must be a number, not a bool",
        )
    if name in SUPERVISED:
        rejects(
            g,
            f,
            "y mixing strings and ints",
            fit(lambda c: c.X, lambda_y(lambda c: ["a", 1] * (len(c.y) // 2))),
            ValueError,
            "y mixes strings and numbers (e.g. 'cat' and 1)",
        )
        rejects(
            g,
            f,
            "y holding None",
            fit(lambda c: c.X, lambda_y(lambda c: [None] + list(c.y[1:]))),
            ValueError,
            "y holds missing labels (None or NaN); every item needs a label.",
        )
    if name == "DJSRHHasher":
        rejects(
            g,
            f,
            "an alpha_schedule returning a string",
            fit(lambda c: c.X, alpha_schedule=lambda t: "fast"),
            ValueError,
            "alpha_schedule returned 'fast' (str) at epoch 1; it must return a "
            "finite positive number",
        )
        rejects(
            g,
            f,
            "modalities whose roles cannot be told by name",
            fit(lambda c: MultiModal(a=c.X_img, b=c.X_txt)),
            ValueError,
            "DJSRHHasher cannot tell which of the modalities ('a', 'b') is the image",
        )
    rejects(
        g,
        f,
        "a misspelt routed parameter (module_width=3)",
        fit(lambda c: c.X, module_width=3),
        TypeError,
        f"{name} got an unexpected keyword argument 'module_width'. Extra "
        "arguments must start with 'module__' (passed to the tower class), "
        "'optimizer__' (passed to the optimizer), 'iterator_train__' (passed to "
        "the training DataLoader), 'iterator_valid__' (passed to the validation "
        "DataLoader), 'callbacks__' (set on a named callback). Did you mean "
        "module__width?",
    )
    if name in SUPERVISED:
        rejects(
            g,
            f,
            "y with fewer rows than X",
            fit(lambda c: c.X, lambda_y(lambda c: c.y[:50])),
            ValueError,
            "y must have shape (n_samples,) or (n_samples, n_classes) with "
            "n_samples=60; got (50,).",
        )
        rejects(
            g,
            f,
            "3-D y",
            fit(lambda c: c.X, lambda_y(lambda c: c.y.reshape(N, 1, 1))),
            ValueError,
            "y must have shape (n_samples,) or (n_samples, n_classes) with "
            "n_samples=60; got (60, 1, 1).",
        )
        rejects(
            g,
            f,
            "y=None (supervised)",
            fit(lambda c: c.X, None),
            ValueError,
            f"{name} requires y to be passed, but the target y is None",
        )
        rejects(
            g,
            f,
            "a single class",
            fit(lambda c: c.X, lambda_y(lambda c: np.zeros(N, dtype=int))),
            ValueError,
            "y has a single class (0): every pair would be similar and the codes "
            "could not learn anything. Pass labels of at least two classes.",
        )
        rejects(
            g,
            f,
            "an indicator y with an all-zero row",
            fit(lambda c: c.X, lambda_y(lambda c: _zero_row(c.Y))),
            ValueError,
            "1 rows of y have no label; every item needs at least one label for "
            "the pairwise similarity.",
        )
        rejects(
            g,
            f,
            "a 2-D y of counts, not 0/1",
            fit(lambda c: c.X, lambda_y(lambda c: 2 * c.Y)),
            ValueError,
            "A 2-D y must be a multi-label indicator matrix of 0/1 values.",
        )
        rejects(
            g,
            f,
            "NaN in y",
            fit(lambda c: c.X, lambda_y(lambda c: with_value(c.y, np.nan, 3))),
            ValueError,
            "y contains NaN (1 values); labels must be class ids or a 0/1 "
            "indicator matrix. Drop or impute the items with missing labels.",
        )
        accepts(
            g,
            f,
            "string class labels",
            fit(lambda c: c.X, lambda_y(lambda c: np.array(list("abc"))[c.y])),
            "accepted: mapped to class ids",
            _fitted_and_finite,
        )
    else:
        accepts(
            g,
            f,
            "y of the wrong shape",
            fit(lambda c: c.X, lambda_y(lambda c: c.y[:50])),
            "accepted: y is ignored (unsupervised)",
            _fitted_and_finite,
        )
        rejects(
            g,
            f,
            "three modalities",
            fit(lambda c: MultiModal(img=c.X_img, txt=c.X_txt, aud=c.X_txt)),
            ValueError,
            "DJSRHHasher takes one or two modalities; got 3: ('img', 'txt', 'aud').",
        )
    for what, convert in _CONVERTIBLE:
        accepts(
            g,
            f,
            f"{what} features",
            fit(
                lambda c, convert=convert: MultiModal(img=convert(c.X_img), txt=c.X_txt)
            ),
            "accepted: converted to float32",
            _fitted_and_finite,
        )

    # transform
    def tr(X, single=False):
        def run(ctx):
            est = ctx.learner_single(name) if single else ctx.learner(name)
            return est.transform(X(ctx))

        return run

    accepts(
        g,
        t,
        "one of the two modalities seen in fit",
        tr(lambda c: MultiModal(img=c.X_img)),
        "accepted: codes of that modality only",
        lambda codes, ctx: _assert(codes.modalities == ("img",) and len(codes) == N),
    )
    rejects(
        g,
        t,
        "a modality not seen in fit",
        tr(lambda c: MultiModal(aud=c.X_img)),
        ValueError,
        f"Unknown modalities ['aud']: {name} was fitted on ('img', 'txt').",
    )
    rejects(
        g,
        t,
        "wrong feature width",
        tr(lambda c: MultiModal(img=c.X_img[:, :5])),
        ValueError,
        f"Modality 'img' has 5 features, but {name} is expecting 8 features as "
        "input (the width seen in fit).",
    )
    rejects(
        g,
        t,
        "wrong feature width (single-modality fit)",
        tr(lambda c: c.X_img[:, :5], single=True),
        ValueError,
        f"X has 5 features, but {name} is expecting 8 features as input (the "
        "width seen in fit).",
    )
    rejects(
        g,
        t,
        "NaN",
        tr(lambda c: MultiModal(img=with_value(c.X_img, np.nan))),
        ValueError,
        "Modality 'img' (shape (60, 8)) is not valid: Input modality 'img' "
        "contains NaN.",
    )
    rejects(
        g,
        t,
        "values beyond float32 (1e300), plain array",
        tr(lambda c: with_value(c.X_img, -1e300), single=True),
        ValueError,
        "X has values too large for float32 (largest magnitude 1e+300; float32 "
        "holds up to 3.4e+38), in which the towers compute; rescale the "
        "features.",
    )
    rejects(
        g,
        t,
        "0 items",
        tr(lambda c: MultiModal(img=c.X_img[:0])),
        ValueError,
        "Modality 'img' (shape (0, 8)) is not valid: Found array with 0 "
        "sample(s) (shape=(0, 8)) while a minimum of 1 is required.",
    )
    rejects(
        g,
        t,
        "a plain array to a cross-modal fit",
        tr(lambda c: c.X_img),
        ValueError,
        f"{name} was fitted on the modalities ('img', 'txt'); pass a MultiModal "
        "such as MultiModal(img=...), not a plain array.",
    )
    rejects(
        g,
        t,
        "before fit",
        lambda ctx: make_learner(name).transform(ctx.X),
        NotFittedError,
        f"This {name} instance is not fitted yet.",
    )
    for what, convert in _CONVERTIBLE:
        accepts(
            g,
            t,
            f"{what} features",
            tr(lambda c, convert=convert: MultiModal(img=convert(c.X_img))),
            "accepted: same codes as its float64 copy",
            lambda codes, ctx, convert=convert: _transform_same_as_float(convert)(
                codes, ctx, name
            ),
        )


_CONVERTIBLE = [
    ("integer", lambda a: np.round(a).astype(np.int64)),
    ("boolean", lambda a: a > 0),
    ("float16", lambda a: a.astype(np.float16)),
    ("scipy CSR sparse (bag-of-words)", lambda a: sp.csr_matrix(np.maximum(a, 0))),
    ("scipy COO sparse", lambda a: sp.coo_matrix(np.maximum(a, 0))),
]


def lambda_y(f):
    """Mark a label factory (a callable of the context)."""
    return _YFactory(f)


class _YFactory:
    def __init__(self, f):
        self.f = f


def _zero_row(Y):
    Y = Y.copy()
    Y[5] = 0
    return Y


def _assert(cond):
    assert cond
    return None


def _without_cuda(call):
    with mock.patch("torch.cuda.is_available", return_value=False):
        return call()


def _labels(yy, ctx):
    """Labels given as a context attribute name, None, or a factory."""
    if isinstance(yy, _YFactory):
        return yy.f(ctx)
    if isinstance(yy, str):
        return getattr(ctx, yy)
    return yy


for _name in LEARNERS:
    _learner_cases(_name)


# -- quantizers -------------------------------------------------------------- #


def _quantizer_cases(name):
    g, f, t = name, f"{name}.fit", f"{name}.transform"

    def fit(X):
        return lambda ctx: make_quantizer(name).fit(X(ctx))

    def tr(X):
        return lambda ctx: ctx.quantizer(name).transform(X(ctx))

    rejects(
        g,
        f,
        "NaN",
        fit(lambda c: with_value(c.X_img, np.nan)),
        ValueError,
        "Input X contains NaN.",
    )
    rejects(
        g,
        f,
        "inf",
        fit(lambda c: with_value(c.X_img, np.inf)),
        ValueError,
        "Input X contains infinity or a value too large for dtype('float64').",
    )
    rejects(
        g,
        f,
        "0 items",
        fit(lambda c: c.X_img[:0]),
        ValueError,
        "Found array with 0 sample(s) (shape=(0, 8)) while a minimum of 1 is "
        f"required by {name}.",
    )
    rejects(
        g,
        f,
        "a MultiModal",
        fit(lambda c: c.X),
        TypeError,
        f"{name} quantizes one 2-D array of embeddings; got a MultiModal of the "
        "modalities ('img', 'txt'). Pass one modality's array (X['img']), or use "
        "a cross-modal learner such as skhash.DQNQuantizer.",
    )
    rejects(
        g,
        f,
        "a CodeSet",
        fit(lambda c: c.codes),
        TypeError,
        "A CodeSet is not an array: use its parts (.embedding, .bits, .codes) or "
        "pick a modality first (codes['img'].bits).",
    )
    rejects(
        g,
        f,
        "scipy sparse",
        fit(lambda c: sp.csr_matrix(c.X_img)),
        TypeError,
        "Sparse data was passed for X, but dense data is required. Use "
        "'.toarray()' to convert to a dense numpy array.",
    )
    for what, convert in _CONVERTIBLE[:3]:
        accepts(
            g,
            f,
            f"{what} features",
            fit(lambda c, convert=convert: convert(c.X_img)),
            "accepted: converted to float64",
            lambda est, ctx: _assert(est.codebooks_.shape[:2] == (2, 4)),
        )
    accepts(
        g,
        f,
        "fewer items than codewords",
        fit(lambda c: c.X_img[:3]),
        "accepted: codewords drawn among the items (documented)",
        lambda est, ctx: _assert(np.isfinite(est.codebooks_).all()),
    )
    if name == "ProductQuantizer":
        rejects(
            g,
            f,
            "more codebooks than features",
            lambda ctx: ProductQuantizer(9, 4).fit(ctx.X_img),
            ValueError,
            "n_codebooks=9 product blocks need at least as many features, but "
            "n_features=8; set n_codebooks <= 8.",
        )
    rejects(
        g,
        t,
        "wrong feature width",
        tr(lambda c: c.X_img[:, :5]),
        ValueError,
        f"X has 5 features, but {name} is expecting 8 features as input.",
    )
    rejects(
        g,
        t,
        "a MultiModal",
        tr(lambda c: c.X),
        TypeError,
        f"{name} quantizes one 2-D array of embeddings; got a MultiModal",
    )
    rejects(
        g,
        t,
        "0 items",
        tr(lambda c: c.X_img[:0]),
        ValueError,
        "Found array with 0 sample(s) (shape=(0, 8)) while a minimum of 1 is "
        f"required by {name}.",
    )
    rejects(
        g,
        f"{name}.inverse_transform",
        "codes out of range",
        lambda ctx: ctx.quantizer(name).inverse_transform(np.full((2, 2), 7)),
        ValueError,
        "codes must lie in [0, n_codewords) = [0, 4), got values in [7, 7]; "
        "encode with the same codebooks, or pass the n_codewords the codes were "
        "made with.",
    )
    rejects(
        g,
        t,
        "before fit",
        lambda ctx: make_quantizer(name).transform(ctx.X_img),
        NotFittedError,
        f"This {name} instance is not fitted yet.",
    )


for _name in QUANTIZERS:
    _quantizer_cases(_name)

_C = np.random.RandomState(0).randn(2, 4, 8).astype(np.float32)
rejects(
    "quantization functions",
    "encode",
    "wrong embedding width",
    lambda ctx: encode(ctx.X_img[:, :5], _C, kind="additive"),
    ValueError,
    "X has 5 features but the codebooks have d=8 dimensions (shape (2, 4, 8)); "
    "pass X in the embedding space the codebooks were learned in.",
)
rejects(
    "quantization functions",
    "encode",
    "additive codebooks as kind='product'",
    lambda ctx: encode(ctx.X_img, _C, kind="product"),
    ValueError,
    'kind="product" codebooks must be zero outside their block of dimensions',
)
rejects(
    "quantization functions",
    "kmeans_codebooks",
    "NaN",
    lambda ctx: kmeans_codebooks(with_value(ctx.X_img, np.nan), 2, 4, kind="additive"),
    ValueError,
    "Input X contains NaN.",
)
rejects(
    "quantization functions",
    "aqd",
    "codes out of range",
    lambda ctx: aqd(ctx.X_img, np.full((3, 2), 9), _C, metric="ip"),
    ValueError,
    "codes must lie in [0, n_codewords) = [0, 4), got values in [9, 9]",
)
rejects(
    "quantization functions",
    "aqd",
    "unknown metric",
    lambda ctx: aqd(ctx.X_img, np.zeros((3, 2), int), _C, metric="cos"),
    InvalidParameterError,
    "The 'metric' parameter of aqd must be a str among",
)


_GQ = "quantization functions"
rejects(
    _GQ,
    "decode",
    "codes out of range",
    lambda ctx: decode(np.full((2, 2), 5), _C),
    ValueError,
    "codes must lie in [0, n_codewords) = [0, 4), got values in [5, 5]",
)
rejects(
    _GQ,
    "decode",
    "codes for another number of codebooks",
    lambda ctx: decode(np.zeros((2, 3), int), _C),
    ValueError,
    "codes must have shape (n_samples, n_codebooks=2), got shape (2, 3).",
)
rejects(
    _GQ,
    "update_codebooks",
    "fewer rows of codes than items",
    lambda ctx: update_codebooks(ctx.X_img, np.zeros((5, 2), int), 4, kind="additive"),
    ValueError,
    "codes has 5 rows but X has 60; pass one row of codes per item of X.",
)
rejects(
    _GQ,
    "quantization_error",
    "wrong embedding width",
    lambda ctx: quantization_error(ctx.X_img[:, :3], np.zeros((N, 2), int), _C),
    ValueError,
    "X has 3 features but the codebooks have d=8 dimensions (shape (2, 4, 8))",
)
rejects(
    _GQ,
    "lookup_tables",
    "2-D codebooks",
    lambda ctx: lookup_tables(ctx.X_img, _C[0], metric="ip"),
    ValueError,
    "codebooks must be a 3-D array of shape (n_codebooks, n_codewords, "
    "n_features), each at least 1, got an array of shape (4, 8).",
)
_C_NAN = _C.copy()
_C_NAN[1, 2, 3] = np.nan
rejects(
    _GQ,
    "encode",
    "NaN in the codebooks",
    lambda ctx: encode(ctx.X_img, _C_NAN, kind="additive"),
    ValueError,
    "codebooks contain 1 NaN or infinite entries (the first at index (1, 2, 3): "
    "nan); pass finite codebooks",
)
rejects(
    _GQ,
    "encode",
    "float64 codebooks beyond float32's range",
    lambda ctx: encode(ctx.X_img, _C.astype(np.float64) * 1e39, kind="additive"),
    ValueError,
    "codebooks hold values up to 2.55e+39, beyond float32's range (3.4e+38), in "
    "which they are used; rescale the codebooks",
)
rejects(
    _GQ,
    "encode",
    "complex codebooks",
    lambda ctx: encode(ctx.X_img, _C * (1 + 1j), kind="additive"),
    ValueError,
    "codebooks must be real numbers, got an array of dtype complex",
)
rejects(
    _GQ,
    "encode",
    "object-dtype codebooks",
    lambda ctx: encode(ctx.X_img, _C.astype(object), kind="additive"),
    ValueError,
    "codebooks must be real numbers, got an array of dtype object.",
)
rejects(
    _GQ,
    "aqd",
    "inf in the codebooks",
    lambda ctx: aqd(
        ctx.X_img, np.ones((N, 2), int), np.where(_C > 2, np.inf, _C), metric="ip"
    ),
    ValueError,
    "NaN or infinite entries (the first at index",
)
rejects(
    _GQ,
    "update_codebooks",
    "NaN in the previous codebooks",
    lambda ctx: update_codebooks(
        ctx.X_img, np.zeros((N, 2), int), 4, kind="additive", previous=_C_NAN
    ),
    ValueError,
    "previous contain 1 NaN or infinite entries",
)
rejects(
    _GQ,
    "reconstruction_sqnorms",
    "codes for another number of codebooks",
    lambda ctx: reconstruction_sqnorms(np.zeros((3, 3), int), _C),
    ValueError,
    "codes must have shape (n_samples, n_codebooks=2), got shape (3, 3).",
)
rejects(
    _GQ,
    "product_blocks",
    "more blocks than dimensions",
    lambda ctx: product_blocks(3, 4),
    ValueError,
    "n_codebooks=4 product blocks need at least as many dimensions, but "
    "n_features=3; lower n_codebooks to at most 3.",
)
rejects(
    _GQ,
    "kmeans_codebooks",
    "0 codewords",
    lambda ctx: kmeans_codebooks(ctx.X_img, 2, 0, kind="product"),
    InvalidParameterError,
    "The 'n_codewords' parameter of kmeans_codebooks must be an int in the range "
    "[1, 65536]. Got 0 instead.",
)


# -- retriever --------------------------------------------------------------- #

G = "TwoStageRetriever"
KN, SC, FT = f"{G}.kneighbors", f"{G}.score", f"{G}.fit"


def _knn(X=None, n_neighbors=None, direction="img->txt", retriever="retriever", **p):
    def run(ctx):
        r = getattr(ctx, retriever)
        if p:
            r = copy.deepcopy(r).set_params(**p)
        X_ = X(ctx) if X is not None else None
        return r.kneighbors(X_, n_neighbors, direction=direction)

    return run


rejects(
    G,
    KN,
    "no direction on a two-modality index",
    _knn(lambda c: c.codes, direction=None),
    ValueError,
    "This retriever indexes the modalities ('img', 'txt'); pass direction=, one "
    "of ['img->img', 'img->txt', 'txt->img', 'txt->txt'].",
)
rejects(
    G,
    KN,
    "unknown database modality in direction",
    _knn(lambda c: c.codes, direction="img->aud"),
    ValueError,
    "Unknown direction 'img->aud': the database modality 'aud' is not indexed "
    "(indexed: ('img', 'txt')). Valid directions: ['img->img', 'img->txt', "
    "'txt->img', 'txt->txt'].",
)
rejects(
    G,
    KN,
    "unknown query modality with X=None",
    _knn(None, direction="aud->txt"),
    ValueError,
    "Unknown direction 'aud->txt': with X=None the queries are indexed items, "
    "and 'aud' is not indexed (indexed: ('img', 'txt')).",
)
rejects(
    G,
    KN,
    "malformed direction",
    _knn(lambda c: c.codes, direction="img2txt"),
    ValueError,
    "direction must look like 'img->txt' (query modality -> database modality); "
    "got 'img2txt'.",
)
rejects(
    G,
    KN,
    "queries without the query modality",
    _knn(lambda c: c.codes["txt"], direction="img->txt"),
    ValueError,
    "The queries X hold the modalities ('txt',), but the direction 'img->txt' "
    "queries with 'img'; pass a CodeSet with modality 'img' (e.g. codes['img']) "
    "or change direction.",
)
rejects(
    G,
    KN,
    "K larger than the database",
    _knn(lambda c: c.codes, 61),
    ValueError,
    "n_neighbors=61 must be <= the number of indexed items N=60; pass a smaller "
    "n_neighbors.",
)
rejects(
    G,
    KN,
    "K = N with X=None (each query excludes itself)",
    _knn(None, 60),
    ValueError,
    "n_neighbors=60 must be <= the number of indexed items N=60 minus the query "
    "itself (X=None); pass a smaller n_neighbors.",
)
rejects(
    G,
    KN,
    "K = 0",
    _knn(lambda c: c.codes, 0),
    ValueError,
    "n_neighbors must be a positive int; got 0. Pass n_neighbors >= 1.",
)
accepts(
    G,
    KN,
    "alpha (int) larger than the database",
    _knn(lambda c: c.codes, alpha=1000),
    "accepted: clipped to N, the same as alpha=1.0",
    lambda res, ctx: _assert(
        all(
            np.array_equal(a, b)
            for a, b in zip(res, _knn(lambda c: c.codes, alpha=1.0)(ctx))
        )
    ),
)
rejects(
    G,
    KN,
    "alpha (float) above 1.0",
    _knn(lambda c: c.codes, alpha=1.5),
    InvalidParameterError,
    "The 'alpha' parameter of TwoStageRetriever must be a str among {'auto'}, "
    "an int in the range [0, inf) or a float in the range [0.0, 1.0]. Got 1.5 "
    "instead.",
)
rejects(
    G,
    KN,
    "0 queries",
    _knn(lambda c: c.codes[:0]),
    ValueError,
    "X holds 0 queries; pass at least one query to kneighbors/score.",
)
rejects(
    G,
    KN,
    "queries coded with another number of bits",
    _knn(lambda c: c.other_codes),
    ValueError,
    "The queries have n_bits=16 but the database was indexed with n_bits=8; "
    "encode the queries with the same hasher.",
)
rejects(
    G,
    KN,
    "query codes without bits on a hashed index",
    _knn(lambda c: c.codes.without("bits")),
    ValueError,
    "The queries of modality 'img' carry no bits, but the database 'txt' is "
    "indexed with n_bits=8 binary codes (stage 1); pass queries with bits.",
)
rejects(
    G,
    KN,
    "query embeddings of the wrong width (AQD stage)",
    lambda ctx: (
        copy.deepcopy(ctx.retriever)
        .set_params(alpha=1.0)
        .kneighbors(
            CodeSet(
                embedding=ctx.other_codes.get("img", "embedding"),
                bits=ctx.codes.get("img", "bits"),
                n_bits=8,
                modality="img",
            ),
            direction="img->txt",
        )
    ),
    ValueError,
    "The query embeddings have 16 dimensions but the codebooks have d=8; pass "
    "embeddings from the same model.",
)
rejects(
    G,
    KN,
    "a plain array of queries (no bits) on a hashed index",
    _knn(lambda c: c.X_img),
    ValueError,
    "The queries of modality 'img' carry no bits, but the database 'txt' is "
    "indexed with n_bits=8 binary codes (stage 1); pass queries with bits.",
)
rejects(
    G,
    KN,
    "wrong feature width (plain embeddings)",
    _knn(lambda c: c.X_img[:, :5], direction=None, retriever="retriever_plain"),
    ValueError,
    "X has 5 features, but TwoStageRetriever is expecting 8 features as input.",
)
rejects(
    G,
    KN,
    "NaN in query embeddings",
    _knn(
        lambda c: with_value(c.X_img, np.nan),
        direction=None,
        retriever="retriever_plain",
    ),
    ValueError,
    "Input X contains NaN.",
)
rejects(
    G,
    KN,
    "query embeddings beyond float32",
    _knn(
        lambda c: with_value(c.X_img, 1e39),
        direction=None,
        retriever="retriever_plain",
    ),
    ValueError,
    "the query embeddings X hold values up to 1e+39, beyond float32's range",
)
rejects(
    G,
    KN,
    "scipy sparse queries",
    _knn(lambda c: sp.csr_matrix(c.X_img), direction=None, retriever="retriever_plain"),
    TypeError,
    "Sparse data was passed for X, but dense data is required.",
)
for _what, _convert in _CONVERTIBLE[:3]:
    accepts(
        G,
        KN,
        f"{_what} query embeddings",
        _knn(
            lambda c, cv=_convert: cv(c.X_img),
            direction=None,
            retriever="retriever_plain",
        ),
        "accepted: converted to float32",
        lambda res, ctx: _assert(res[1].shape == (N, 5)),
    )
rejects(
    G,
    KN,
    "before fit",
    lambda ctx: TwoStageRetriever().kneighbors(ctx.codes, direction="img->txt"),
    NotFittedError,
    "This TwoStageRetriever instance is not fitted yet.",
)
rejects(
    G,
    FT,
    "an empty database (CodeSet)",
    lambda ctx: TwoStageRetriever().fit(ctx.codes[:0]),
    ValueError,
    "X holds 0 items; fit needs a database of at least one item.",
)
rejects(
    G,
    FT,
    "an empty database (array)",
    lambda ctx: TwoStageRetriever().fit(ctx.X_img[:0]),
    ValueError,
    "Found array with 0 sample(s) (shape=(0, 8)) while a minimum of 1 is "
    "required by TwoStageRetriever.",
)
rejects(
    G,
    FT,
    "y with fewer rows than the database",
    lambda ctx: TwoStageRetriever().fit(ctx.codes, ctx.y[:50]),
    ValueError,
    "y must have one row per indexed item: X has 60 items but y has shape (50,).",
)
rejects(
    G,
    FT,
    "NaN in y",
    lambda ctx: TwoStageRetriever().fit(ctx.codes, with_value(ctx.y, np.nan, 3)),
    ValueError,
    "Input y contains NaN.",
)
rejects(
    G,
    FT,
    "NaN in database embeddings",
    lambda ctx: TwoStageRetriever().fit(with_value(ctx.X_img, np.nan)),
    ValueError,
    "Input X contains NaN.",
)
rejects(
    G,
    FT,
    "scipy sparse database",
    lambda ctx: TwoStageRetriever().fit(sp.csr_matrix(ctx.X_img)),
    TypeError,
    "Sparse data was passed for X, but dense data is required.",
)
rejects(
    G,
    FT,
    "rerank='exact' on codes without embeddings",
    lambda ctx: TwoStageRetriever(rerank="exact").fit(ctx.codes.without("embedding")),
    ValueError,
    "rerank='exact' compares float embeddings, but modality 'img' of X has none; "
    "pass a CodeSet with embeddings or choose rerank='aqd'.",
)
rejects(
    G,
    FT,
    "unknown rerank",
    lambda ctx: TwoStageRetriever(rerank="cosine").fit(ctx.codes),
    InvalidParameterError,
    "The 'rerank' parameter of TwoStageRetriever must be a str among",
)
rejects(
    G,
    "get_backend",
    "unknown name",
    lambda ctx: get_backend("faster"),
    ValueError,
    "Unknown search backend 'faster'; registered backends are",
)
rejects(
    G,
    FT,
    "unknown backend",
    lambda ctx: TwoStageRetriever(backend="faster").fit(ctx.codes),
    ValueError,
    "Unknown search backend 'faster'; registered backends are",
)
rejects(
    G,
    FT,
    "a MultiModal of raw features (not codes)",
    lambda ctx: TwoStageRetriever().fit(ctx.X),
    TypeError,
    "CodeSet",
)
rejects(
    G,
    f"{G}.load",
    "an .npz file not written by save",
    lambda ctx: TwoStageRetriever.load(_foreign_npz(ctx)),
    IndexFormatError,
    "was not written by TwoStageRetriever.save (no '__meta__' entry)",
)
rejects(
    G,
    f"{G}.load",
    "a path that does not exist",
    lambda ctx: TwoStageRetriever.load(os.path.join(ctx.tmpdir, "missing.npz")),
    FileNotFoundError,
    "No such file or directory",
)
rejects(
    G,
    SC,
    "y with fewer rows than the queries",
    lambda ctx: ctx.retriever.score(ctx.codes, ctx.y[:50]),
    ValueError,
    "y has 50 rows but X holds 60 queries.",
)
rejects(
    G,
    SC,
    "3-D y",
    lambda ctx: ctx.retriever.score(ctx.codes, ctx.y.reshape(N, 1, 1)),
    ValueError,
    "y_query must be 1-D class ids or a 2-D label indicator matrix, got an array "
    "of shape (60, 1, 1). Reshape it to (n_samples,) or (n_samples, n_labels).",
)
rejects(
    G,
    SC,
    "class ids against an indicator-labelled database",
    lambda ctx: (
        TwoStageRetriever(n_neighbors=5).fit(ctx.codes, ctx.Y).score(ctx.codes, ctx.y)
    ),
    ValueError,
    "y_query is 1-D (class ids) but y_database is 2-D (label indicator matrix); "
    "pass both as class ids or both as indicator matrices.",
)
rejects(
    G,
    SC,
    "a database indexed without labels",
    lambda ctx: TwoStageRetriever(n_neighbors=5).fit(ctx.codes).score(ctx.codes, ctx.y),
    ValueError,
    "score needs the labels of the database items; fit with fit(X, y) to index them.",
)
rejects(
    G,
    SC,
    "unknown metric",
    lambda ctx: ctx.retriever.score(ctx.codes, ctx.y, metric="ndcg"),
    ValueError,
    "metric must be 'map' or 'precision'; got 'ndcg'.",
)
accepts(
    G,
    SC,
    "a query whose indicator row is all zero",
    lambda ctx: (
        TwoStageRetriever(n_neighbors=5)
        .fit(ctx.codes, ctx.Y)
        .score(ctx.codes[:1], np.zeros((1, 3), dtype=int))
    ),
    "accepted: the query has no relevant item and scores 0",
    lambda score, ctx: _assert(score == 0.0),
)
accepts(
    G,
    SC,
    "a single class",
    lambda ctx: (
        TwoStageRetriever(n_neighbors=5)
        .fit(ctx.codes, np.zeros(N))
        .score(ctx.codes, np.zeros(N))
    ),
    "accepted: every item is relevant, MAP = 1",
    lambda score, ctx: _assert(score == 1.0),
)
accepts(
    G,
    SC,
    "n_neighbors larger than the database",
    lambda ctx: ctx.retriever.score(ctx.codes, ctx.y, n_neighbors=1000),
    "accepted: clipped to N (the whole database)",
    lambda score, ctx: _assert(
        score == ctx.retriever.score(ctx.codes, ctx.y, n_neighbors="all")
    ),
)


# -- retriever: counts, labels, codebooks, files (issue 12) ------------------ #


def _str_retriever(ctx):
    names = np.array(["cat", "dog", "emu"])
    return TwoStageRetriever(alpha=10, n_neighbors=5).fit(ctx.codes, names[ctx.y])


def _int_retriever(ctx, dtype=np.int64):
    return TwoStageRetriever(alpha=10, n_neighbors=5).fit(
        ctx.codes[:40], ctx.y[:40].astype(dtype)
    )


def _add(y_new, retriever=_int_retriever):
    def run(ctx):
        return retriever(ctx).add(ctx.codes[40:], y_new(ctx))

    return run


def _other_codebooks(ctx):
    """ctx.codes with the same shapes but other codebook values."""
    img = ctx.codes["img"]
    return CodeSet(
        embedding=img.embedding,
        bits=img.bits,
        codes=img.codes,
        n_bits=img.n_bits,
        codebooks=img.codebooks + 0.5,
        codebook_kind=img.codebook_kind,
        modality="img",
    )


def _junk_padding(ctx):
    """Query codes of 6 bits whose 2 padding bits are set."""
    img = ctx.codes["img"]
    bits = unpack_bits(img.bits, 8)[:, :6]
    clean = CodeSet(bits=pack_bits(bits), n_bits=6, modality="img")
    junk = CodeSet(bits=pack_bits(bits) | np.uint8(0b11), n_bits=6, modality="img")
    r = TwoStageRetriever(n_neighbors=5).fit(clean)
    return r.kneighbors(junk), r.kneighbors(clean)


def _tmp_file(ctx, name, data):
    path = os.path.join(ctx.tmpdir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _pickle_file(ctx):
    import pickle

    return _tmp_file(ctx, "index.pkl", pickle.dumps(ctx.retriever))


def _npy_file(ctx):
    path = os.path.join(ctx.tmpdir, "array.npy")
    np.save(path, np.ones(3))
    return path


def _truncated_npz(ctx):
    whole = ctx.retriever.save(os.path.join(ctx.tmpdir, "whole.npz"))
    with open(whole, "rb") as f:
        data = f.read()
    return _tmp_file(ctx, "cut.npz", data[: len(data) // 2])


rejects(
    G,
    SC,
    "n_neighbors=True",
    lambda ctx: ctx.retriever.score(ctx.codes, ctx.y, n_neighbors=True),
    ValueError,
    "n_neighbors must be a positive int, 'all' or None; got True (bool is not "
    "accepted). Pass e.g. n_neighbors=50.",
)
rejects(
    G,
    KN,
    "n_neighbors=True",
    _knn(lambda c: c.codes, True),
    ValueError,
    "n_neighbors=True must be a positive int (bool is not accepted); pass e.g. "
    "n_neighbors=10.",
)
rejects(
    G,
    KN,
    "alpha=True",
    _knn(lambda c: c.codes, alpha=True),
    InvalidParameterError,
    "The 'alpha' parameter of TwoStageRetriever must be a number, not a bool; got "
    "alpha=True. Pass an int, e.g. alpha=100.",
)
rejects(
    G,
    FT,
    "n_neighbors=True (parameter)",
    lambda ctx: TwoStageRetriever(n_neighbors=True).fit(ctx.codes),
    InvalidParameterError,
    "The 'n_neighbors' parameter of TwoStageRetriever must be a number, not a "
    "bool; got n_neighbors=True.",
)
rejects(
    G,
    SC,
    "integer class ids against a string-labelled index",
    lambda ctx: _str_retriever(ctx).score(ctx.codes, ctx.y),
    ValueError,
    "y_query holds numbers (dtype int64) but y_database holds strings (dtype <U3): "
    "no query can share a label with an item.",
)
rejects(
    G,
    SC,
    "an indicator matrix of another width",
    lambda ctx: (
        TwoStageRetriever(n_neighbors=5)
        .fit(ctx.codes, ctx.Y)
        .score(ctx.codes, ctx.Y[:, :2])
    ),
    ValueError,
    "y_query has 2 label columns but y_database has 3; both indicator matrices "
    "must use the same label columns.",
)
rejects(
    G,
    FT,
    "y holding None",
    lambda ctx: TwoStageRetriever().fit(
        ctx.codes, [None if i == 3 else "a" for i in range(N)]
    ),
    ValueError,
    "y holds None (a missing label) at position 3; labels must all be class ids.",
)
rejects(
    G,
    FT,
    "y mixing ints and strings",
    lambda ctx: TwoStageRetriever().fit(ctx.codes, [0, "a"] * (N // 2)),
    ValueError,
    "y mixes label types (number 0 and str 'a'); give every label the same type",
)
rejects(
    G,
    FT,
    "complex y",
    lambda ctx: TwoStageRetriever().fit(ctx.codes, ctx.y + 1j),
    ValueError,
    "y has dtype complex128; labels must be ints, floats, bools or strings.",
)
G_ADD = f"{G}.add"
rejects(
    G,
    G_ADD,
    "float labels 2.7 into an int index",
    _add(lambda c: np.full(N - 40, 2.7)),
    ValueError,
    "y holds 2.7, which is not a whole number, but the index labels are integers "
    "(dtype int64)",
)
rejects(
    G,
    G_ADD,
    "string labels into an int index",
    _add(lambda c: np.array(["cat"] * (N - 40))),
    ValueError,
    "y holds strings (dtype <U3) but the index labels are numbers (dtype int64); "
    "add labels of the same type as at fit.",
)
accepts(
    G,
    G_ADD,
    "longer string labels than the indexed ones",
    lambda ctx: (
        TwoStageRetriever(n_neighbors=5)
        .fit(ctx.codes[:40], np.array(["cat", "dog", "emu"])[ctx.y[:40]])
        .add(ctx.codes[40:], np.array(["horse"] * (N - 40)))
    ),
    "accepted: the label dtype widens from <U3 to <U5, no value is cut",
    lambda r, ctx: _assert(r.y_.dtype == np.dtype("<U5") and r.y_[-1] == "horse"),
)
accepts(
    G,
    G_ADD,
    "whole-number float labels into an int index",
    _add(lambda c: c.y[40:].astype(float)),
    "accepted: stored as the index's int64, values unchanged",
    lambda r, ctx: _assert(r.y_.dtype == np.int64 and np.array_equal(r.y_, ctx.y)),
)
accepts(
    G,
    G_ADD,
    "int64 labels beyond int32 into an int32 index",
    lambda ctx: _int_retriever(ctx, np.int32).add(
        ctx.codes[40:], np.full(N - 40, 2**40)
    ),
    "accepted: the label dtype widens to int64",
    lambda r, ctx: _assert(r.y_.dtype == np.int64 and r.y_[-1] == 2**40),
)
accepts(
    G,
    G_ADD,
    "0 items",
    lambda ctx: _int_retriever(ctx).add(ctx.codes[:0], ctx.y[:0]),
    "accepted: a no-op (checked like any add, nothing changes)",
    lambda r, ctx: _assert(r.n_samples_fit_ == 40),
)
rejects(
    G,
    G_ADD,
    "items coded with other codebooks of the same shape",
    lambda ctx: TwoStageRetriever().fit(ctx.codes["img"]).add(_other_codebooks(ctx)),
    ValueError,
    "X was quantized with other codebooks than the indexed items (fingerprint",
)
rejects(
    G,
    KN,
    "query embeddings with other codebooks of the same shape (AQD)",
    _knn(_other_codebooks),
    ValueError,
    "The queries' embeddings come with other codebooks (fingerprint",
)
accepts(
    G,
    KN,
    "query bits with junk in the padding bits (n_bits=6)",
    _junk_padding,
    "accepted: the padding bits are cleared, results equal the clean queries'",
    lambda res, ctx: _assert(all(np.array_equal(a, b) for a, b in zip(res[0], res[1]))),
)
rejects(
    G,
    f"{G}.load",
    "a pickle of a retriever",
    lambda ctx: TwoStageRetriever.load(_pickle_file(ctx)),
    IndexFormatError,
    "was not written by TwoStageRetriever.save (neither a .npz nor a .npy file: "
    "numpy would have to unpickle it, which load never does)",
)
rejects(
    G,
    f"{G}.load",
    "a .npy file",
    lambda ctx: TwoStageRetriever.load(_npy_file(ctx)),
    IndexFormatError,
    "was not written by TwoStageRetriever.save (a single .npy array, not a .npz file)",
)
rejects(
    G,
    f"{G}.load",
    "a truncated .npz",
    lambda ctx: TwoStageRetriever.load(_truncated_npz(ctx)),
    IndexFormatError,
    "was not written by TwoStageRetriever.save (not a .npz file, or a truncated one",
)
rejects(
    G,
    f"{G}.save",
    "an .npz path in a folder that does not exist",
    lambda ctx: ctx.retriever.save(os.path.join(ctx.tmpdir, "no", "index.npz")),
    FileNotFoundError,
    "No such file or directory",
)
rejects(
    G,
    f"{G}.load",
    "verify='yes'",
    lambda ctx: TwoStageRetriever.load(_foreign_npz(ctx), verify="yes"),
    ValueError,
    "verify must be True or False; got 'yes'.",
)


def _foreign_npz(ctx):
    path = os.path.join(ctx.tmpdir, "foreign.npz")
    np.savez(path, a=np.ones(3))
    return path


# -- metrics ----------------------------------------------------------------- #

GM = "metrics"


def _map(y_true=None, y_score=None, **kw):
    def run(ctx):
        yt, ys = ctx.relevance
        return mean_average_precision(
            y_true(yt) if y_true else yt, y_score(ys) if y_score else ys, **kw
        )

    return run


rejects(
    GM,
    "mean_average_precision",
    "NaN score",
    _map(y_score=lambda s: with_value(s, np.nan, (0, 0))),
    ValueError,
    "Input y_score contains NaN.",
)
rejects(
    GM,
    "mean_average_precision",
    "inf score",
    _map(y_score=lambda s: with_value(s, np.inf, (0, 0))),
    ValueError,
    "Input y_score contains infinity or a value too large for dtype('float64').",
)
rejects(
    GM,
    "mean_average_precision",
    "scores of another shape",
    _map(y_score=lambda s: s[:, :9]),
    ValueError,
    "y_true and y_score must have the same shape (n_queries, n_database); got "
    "(4, 10) and (4, 9).",
)
rejects(
    GM,
    "mean_average_precision",
    "relevance other than 0/1",
    _map(y_true=lambda t: 2 * t),
    ValueError,
    "y_true must contain only 0 and 1 (or booleans); got values such as [2]. "
    "Binarise it, e.g. with y_true > 0.",
)
rejects(
    GM,
    "mean_average_precision",
    "1-D inputs",
    _map(y_true=lambda t: t[0], y_score=lambda s: s[0]),
    ValueError,
    "Expected 2D array, got 1D array instead",
)
rejects(
    GM,
    "mean_average_precision",
    "0 queries",
    _map(y_true=lambda t: t[:0], y_score=lambda s: s[:0]),
    ValueError,
    "y_true has no query (shape (0, 10)); pass at least one row, one per query.",
)
rejects(
    GM,
    "mean_average_precision",
    "an empty database",
    _map(y_true=lambda t: t[:, :0], y_score=lambda s: s[:, :0]),
    ValueError,
    "y_true has an empty database (shape (4, 0)); pass at least one column, one "
    "per database item.",
)
rejects(
    GM,
    "mean_average_precision",
    "k=0",
    _map(k=0),
    InvalidParameterError,
    "The 'k' parameter of mean_average_precision must be an int in the range "
    "[1, inf) or None. Got 0 instead.",
)
rejects(
    GM,
    "mean_average_precision",
    "unknown variant",
    _map(variant="macro"),
    InvalidParameterError,
    "The 'variant' parameter of mean_average_precision must be a str among",
)
rejects(
    GM,
    "mean_average_precision",
    "scipy sparse relevance",
    _map(y_true=lambda t: sp.csr_matrix(t)),
    InvalidParameterError,
    "The 'y_true' parameter of mean_average_precision must be an array-like.",
)
accepts(
    GM,
    "mean_average_precision",
    "k larger than the database",
    _map(k=1000),
    "accepted: the whole database, the same as k=None",
    lambda v, ctx: _assert(v == _map(k=None)(ctx)),
)
accepts(
    GM,
    "mean_average_precision",
    "all-zero relevance rows",
    _map(y_true=lambda t: 0 * t),
    "accepted: those queries score 0",
    lambda v, ctx: _assert(v == 0.0),
)
accepts(
    GM,
    "mean_average_precision",
    "boolean relevance, float16 / integer scores",
    _map(
        y_true=lambda t: t.astype(bool),
        y_score=lambda s: np.round(100 * s).astype(np.float16),
    ),
    "accepted: converted to float64",
    lambda v, ctx: _assert(v == _map(y_score=lambda s: np.round(100 * s))(ctx)),
)
rejects(
    GM,
    "precision_at_k",
    "NaN score",
    lambda ctx: precision_at_k(
        ctx.relevance[0], with_value(ctx.relevance[1], np.nan, (0, 0))
    ),
    ValueError,
    "Input y_score contains NaN.",
)
rejects(
    GM,
    "precision_at_top_r",
    "r = 0",
    lambda ctx: precision_at_top_r(*ctx.relevance, r_values=[0]),
    ValueError,
    "r_values must all be at least 1; got [0].",
)
rejects(
    GM,
    "precision_recall_hamming",
    "distances that are not whole numbers",
    lambda ctx: precision_recall_hamming(
        ctx.relevance[0], 0.5 + 0 * ctx.relevance[1], n_bits=8
    ),
    ValueError,
    "hamming_distances must be whole numbers in [0, n_bits] = [0, 8]; got values "
    "such as [0.5]. Check n_bits against the code length.",
)
rejects(
    GM,
    "precision_recall_hamming",
    "distances above n_bits",
    lambda ctx: precision_recall_hamming(
        ctx.relevance[0], 9 + 0 * ctx.relevance[1], n_bits=8
    ),
    ValueError,
    "hamming_distances must be whole numbers in [0, n_bits] = [0, 8]; got values "
    "such as [9.0].",
)
rejects(
    GM,
    "relevance",
    "3-D labels",
    lambda ctx: relevance(np.zeros((3, 3, 3)), ctx.y),
    ValueError,
    "y_query must be 1-D class ids or a 2-D label indicator matrix, got an array "
    "of shape (3, 3, 3).",
)
rejects(
    GM,
    "relevance",
    "indicator matrices with different label columns",
    lambda ctx: relevance(ctx.Y[:, :2], ctx.Y),
    ValueError,
    "y_query has 2 label columns but y_database has 3; both indicator matrices "
    "must use the same label columns.",
)
rejects(
    GM,
    "relevance",
    "class ids against an indicator matrix",
    lambda ctx: relevance(ctx.y, ctx.Y),
    ValueError,
    "y_query is 1-D (class ids) but y_database is 2-D (label indicator matrix)",
)
rejects(
    GM,
    "relevance",
    "no query",
    lambda ctx: relevance(ctx.y[:0], ctx.y),
    ValueError,
    "y_query is empty (shape (0,)); pass at least one sample and, for an "
    "indicator matrix, at least one label column.",
)
rejects(
    GM,
    "relevance",
    "NaN label",
    lambda ctx: relevance(np.array([np.nan, 1.0]), ctx.y),
    ValueError,
    "y_query contains NaN; labels must be class ids or 0/1 indicators. Drop or "
    "impute the samples with missing labels.",
)
accepts(
    GM,
    "relevance",
    "a single class",
    lambda ctx: relevance(np.zeros(2), np.zeros(N)),
    "accepted: every item is relevant",
    lambda rel, ctx: _assert(rel.all()),
)
rejects(
    GM,
    "ranked_relevance",
    "indices out of the database",
    lambda ctx: ranked_relevance(ctx.y[:2], ctx.y, np.array([[0, 60], [1, 2]])),
    ValueError,
    "indices must lie in [0, n_database) = [0, 60); got values such as [60].",
)
rejects(
    GM,
    "ranked_relevance",
    "one row of indices for two queries",
    lambda ctx: ranked_relevance(ctx.y[:2], ctx.y, np.array([[0, 1]])),
    ValueError,
    "indices must have shape (n_queries, k) = (2, k); got shape (1, 2).",
)
rejects(
    GM,
    "average_precision_from_ranking",
    "relevance other than 0/1",
    lambda ctx: average_precision_from_ranking(np.array([[2, 0]])),
    ValueError,
    "ranked_relevance must contain only 0 and 1 (or booleans); got values such as [2].",
)
rejects(
    GM,
    "harmonic_mean",
    "a negative score",
    lambda ctx: harmonic_mean(-1, 2),
    InvalidParameterError,
    "The 'a' parameter of harmonic_mean must be a float in the range [0.0, inf). "
    "Got -1 instead.",
)
rejects(
    GM,
    "harmonic_mean",
    "NaN",
    lambda ctx: harmonic_mean(np.nan, 2),
    InvalidParameterError,
    "The 'a' parameter of harmonic_mean must be a float in the range [0.0, inf). "
    "Got nan instead.",
)
rejects(
    GM,
    "get_scorer",
    "unknown name",
    lambda ctx: get_scorer("ndcg"),
    ValueError,
    "'ndcg' is not a valid scoring value. Valid names:",
)


rejects(
    GM,
    "n_relevant",
    "class ids against an indicator matrix",
    lambda ctx: n_relevant(ctx.y, ctx.Y),
    ValueError,
    "y_query is 1-D (class ids) but y_database is 2-D (label indicator matrix)",
)
rejects(
    GM,
    "make_map_scorer",
    "k=0",
    lambda ctx: make_map_scorer(k=0),
    InvalidParameterError,
    "The 'k' parameter of make_map_scorer must be an int in the range [1, inf) "
    "or None. Got 0 instead.",
)
rejects(
    GM,
    "make_precision_scorer",
    "k=-1",
    lambda ctx: make_precision_scorer(k=-1),
    InvalidParameterError,
    "The 'k' parameter of make_precision_scorer must be an int in the range "
    "[1, inf) or None. Got -1 instead.",
)
rejects(
    GM,
    "get_scorer('map@10')(...)",
    "an estimator without score",
    lambda ctx: get_scorer("map@10")(StandardScaler().fit(ctx.X_img), ctx.X_img, ctx.y),
    TypeError,
    "A retrieval scorer needs a fitted retriever with a score method, or a "
    "pipeline ending in one, such as skhash's TwoStageRetriever; got "
    "StandardScaler, which has no score method.",
)


# labels that can never match, counts given as bools (issue 12)
for _fn in (relevance, n_relevant):
    rejects(
        GM,
        _fn.__name__,
        "string query labels against integer database labels",
        lambda ctx, f=_fn: f(["a", "b"], [0, 1, 2]),
        ValueError,
        "y_query holds strings (dtype <U1) but y_database holds numbers (dtype "
        "int64): no query can share a label with an item.",
    )
rejects(
    GM,
    "ranked_relevance",
    "string query labels against integer database labels",
    lambda ctx: ranked_relevance(["a", "b"], [0, 1, 2], [[0], [1]]),
    ValueError,
    "y_query holds strings (dtype <U1) but y_database holds numbers",
)
rejects(
    GM,
    "relevance",
    "bytes query labels against string database labels",
    lambda ctx: relevance(np.array([b"a"]), np.array(["a"])),
    ValueError,
    "y_query holds bytes (dtype |S1) but y_database holds strings (dtype <U1)",
)
rejects(
    GM,
    "relevance",
    "labels holding None",
    lambda ctx: relevance([0, None], [0, 1]),
    ValueError,
    "y_query holds None (a missing label) at position 1",
)
rejects(
    GM,
    "relevance",
    "a list mixing ints and strings",
    lambda ctx: relevance([0, "a"], [0, 1]),
    ValueError,
    "y_query mixes label types (number 0 and str 'a')",
)
rejects(
    GM,
    "n_relevant",
    "class ids against an indicator matrix",
    lambda ctx: n_relevant([0, 1], [[1, 0], [0, 1]]),
    ValueError,
    "y_query is 1-D (class ids) but y_database is 2-D (label indicator matrix)",
)
rejects(
    GM,
    "mean_average_precision",
    "k=True",
    _map(k=True),
    ValueError,
    "k=True must be a positive int (bool is not accepted); pass e.g. k=50.",
)
rejects(
    GM,
    "precision_at_k",
    "k=True",
    lambda ctx: precision_at_k(*ctx.relevance, k=True),
    ValueError,
    "k=True must be a positive int (bool is not accepted); pass e.g. k=50.",
)
for _name, _make in (
    ("make_map_scorer", lambda ctx: make_map_scorer(k=True)),
    ("make_precision_scorer", lambda ctx: make_precision_scorer(k=True)),
    (
        "average_precision_from_ranking",
        lambda ctx: average_precision_from_ranking(
            [[1, 0]], [1], variant="dcmh", k=True
        ),
    ),
):
    rejects(
        GM,
        _name,
        "k=True",
        _make,
        ValueError,
        "k=True must be a positive int (bool is not accepted); pass e.g. k=50.",
    )
rejects(
    GM,
    "average_precision_from_ranking",
    "a fractional n_relevant",
    lambda ctx: average_precision_from_ranking([[1, 0]], [1.5], variant="full"),
    ValueError,
    "n_relevant[0]=1.5 is not a whole number; n_relevant counts the relevant "
    "database items of each query (see skhash.metrics.n_relevant).",
)
rejects(
    GM,
    "precision_recall_hamming",
    "n_bits=True",
    lambda ctx: precision_recall_hamming(
        ctx.relevance[0], ctx.relevance[0], n_bits=True
    ),
    ValueError,
    "n_bits=True must be a positive int (bool is not accepted); pass e.g. n_bits=64.",
)


# -- codes, MultiModal ------------------------------------------------------- #

GC = "CodeSet, pack_bits, unpack_bits"
rejects(
    GC,
    "pack_bits",
    "1-D signs",
    lambda ctx: pack_bits(np.ones(3)),
    ValueError,
    "signs must be 2-D (n_samples, n_bits); got (3,).",
)
rejects(
    GC,
    "unpack_bits",
    "float bits",
    lambda ctx: unpack_bits(np.ones((2, 2)), 8),
    ValueError,
    "bits must be a 2-D uint8 array; got dtype float64 and shape (2, 2).",
)
rejects(
    GC,
    "CodeSet",
    "NaN embedding",
    lambda ctx: CodeSet(embedding=with_value(ctx.X_img, np.nan)),
    ValueError,
    "the embeddings of modality 'X' contain 1 NaN or infinite entries (the first "
    "at index (3, 2): nan); check the model",
)
rejects(
    GC,
    "CodeSet",
    "complex embedding",
    lambda ctx: CodeSet(embedding=ctx.X_img * (1 + 1j)),
    ValueError,
    "the embeddings of modality 'X' must be real numbers, got an array of dtype "
    "complex128; pass its real part",
)
rejects(
    GC,
    "CodeSet",
    "embedding beyond float32",
    lambda ctx: CodeSet(embedding=with_value(ctx.X_img, 1e39)),
    ValueError,
    "the embeddings of modality 'X' hold values up to 1e+39, beyond float32's range",
)
rejects(
    GC,
    "CodeSet",
    "codes without codebooks",
    lambda ctx: CodeSet(codes=np.zeros((3, 2), int)),
    ValueError,
    "codes of modality 'X' need the codebooks they index; pass codebooks= and "
    "codebook_kind=.",
)
rejects(
    GC,
    "CodeSet",
    "codes out of range",
    lambda ctx: CodeSet(
        codes=np.full((3, 2), 4), codebooks=_C, codebook_kind="additive"
    ),
    ValueError,
    "codes of modality 'X' must lie in [0, 4) for n_codewords=4; got values in [4, 4].",
)
rejects(
    GC,
    "CodeSet",
    "bits of another width than n_bits",
    lambda ctx: CodeSet(bits=np.zeros((3, 2), np.uint8), n_bits=8),
    ValueError,
    "bits of modality 'X' have 2 bytes per item but n_bits=8 needs 1 "
    "(ceil(n_bits / 8)); pass the n_bits the codes were packed with (between 9 "
    "and 16 for 2 bytes).",
)
rejects(
    GC,
    "CodeSet.from_modalities",
    "different row counts",
    lambda ctx: CodeSet.from_modalities(
        img=CodeSet(embedding=ctx.X_img), txt=CodeSet(embedding=ctx.X_img[:5])
    ),
    ValueError,
    "All modalities need the same number of rows; got {'img': 60, 'txt': 5}.",
)
rejects(
    GC,
    "numpy.asarray",
    "a CodeSet",
    lambda ctx: np.asarray(ctx.codes),
    TypeError,
    "A CodeSet is not an array: use its parts (.embedding, .bits, .codes) or pick "
    "a modality first (codes['img'].bits).",
)

for _value, _message in [
    (0, "n_bits=0 must be >= 1, the number of bits per item; pass e.g. n_bits=16."),
    (-3, "n_bits=-3 must be >= 1, the number of bits per item"),
    (12.5, "n_bits=12.5 must be a positive int (bool is not accepted)"),
    (True, "n_bits=True must be a positive int (bool is not accepted)"),
]:
    rejects(
        GC,
        "CodeSet",
        f"n_bits={_value!r}",
        lambda ctx, v=_value: CodeSet(bits=np.zeros((3, 2), np.uint8), n_bits=v),
        ValueError,
        _message,
    )
rejects(
    GC,
    "CodeSet",
    "a modality name holding '->'",
    lambda ctx: CodeSet(embedding=ctx.X_img, modality="img->txt"),
    ValueError,
    "modality='img->txt' must be a non-empty name without '->'",
)
rejects(
    GC,
    "CodeSet",
    "a modality name that is not a string",
    lambda ctx: CodeSet(embedding=ctx.X_img, modality=1),
    ValueError,
    "modality=1 must be a non-empty name without '->'",
)
rejects(
    GC,
    "CodeSet",
    "NaN codebooks",
    lambda ctx: CodeSet(
        codes=np.zeros((3, 2), int),
        codebooks=with_value(_C.reshape(2, -1), np.nan, (0, 0)).reshape(_C.shape),
        codebook_kind="additive",
    ),
    ValueError,
    "codebooks contain 1 NaN or infinite entries (the first at index (0, 0, 0): "
    "nan); pass finite codebooks",
)
rejects(
    GC,
    "CodeSet",
    "complex codebooks",
    lambda ctx: CodeSet(
        codes=np.zeros((3, 2), int), codebooks=_C * 1j, codebook_kind="additive"
    ),
    ValueError,
    "codebooks must be real numbers, got an array of dtype complex",
)
rejects(
    GC,
    "CodeSet.bits",
    "writing into a part",
    lambda ctx: ctx.codes["img"].bits.__setitem__((0, 0), 1),
    ValueError,
    "assignment destination is read-only",
)
rejects(
    GC,
    "CodeSet",
    "setting an attribute",
    lambda ctx: setattr(ctx.codes, "n_bits", 12),
    AttributeError,
    "CodeSet is read-only: cannot set 'n_bits'.",
)
rejects(
    GC,
    "CodeSet.without",
    "every part",
    lambda ctx: ctx.codes.without("embedding", "bits", "codes"),
    ValueError,
    "without('embedding', 'bits', 'codes') would leave modality 'img' with no part",
)
accepts(
    GC,
    "CodeSet",
    "a writable array passed in",
    lambda ctx: (ctx.X_img.copy(), CodeSet(embedding=ctx.X_img.astype(np.float32))),
    "accepted: the CodeSet's parts are read-only views; the caller's array stays "
    "writable",
    lambda res, ctx: _assert(
        res[0].flags.writeable and not res[1].embedding.flags.writeable
    ),
)

GMM = "MultiModal"
rejects(
    GMM,
    "MultiModal",
    "no modality",
    lambda ctx: MultiModal(),
    ValueError,
    "MultiModal needs at least one modality, e.g. MultiModal(img=X_img, txt=X_txt).",
)
rejects(
    GMM,
    "MultiModal",
    "a name that is not an identifier",
    lambda ctx: MultiModal(**{"1st": ctx.X_img}),
    ValueError,
    "Modality names must be identifiers such as 'img' or 'txt'; got '1st'.",
)
rejects(
    GMM,
    "MultiModal",
    "different row counts",
    lambda ctx: MultiModal(img=ctx.X_img, txt=ctx.X_txt[:50]),
    ValueError,
    "All modalities must have the same number of rows (one row per item); got "
    "img: (60, 8), txt: (50, 5).",
)
rejects(
    GMM,
    "MultiModal",
    "a 1-D modality",
    lambda ctx: MultiModal(img=ctx.y),
    ValueError,
    "Modality 'img' (shape (60,)) is not valid: Expected 2D array, got 1D array "
    "instead",
)
accepts(
    GMM,
    "MultiModal",
    "a 3-D modality (items of shape (2, 2), e.g. images)",
    lambda ctx: MultiModal(img=np.ones((3, 2, 2))),
    "accepted: any rank of at least 2, the item shape kept",
    lambda mm, ctx: _assert(mm.item_shapes == {"img": (2, 2)}),
)
rejects(
    GMM,
    "MultiModal",
    "complex values",
    lambda ctx: MultiModal(img=ctx.X_img + 1j),
    ValueError,
    "Modality 'img' (shape (60, 8)) is not valid: Complex data not supported",
)
rejects(
    GMM,
    "MultiModal",
    "a MultiModal as a modality",
    lambda ctx: MultiModal(img=ctx.X),
    TypeError,
    "Modality 'img' is itself a MultiModal; pass its arrays.",
)
rejects(
    GMM,
    "MultiModal.__setitem__",
    "assigning a modality",
    lambda ctx: ctx.X.__setitem__("img", ctx.X_img),
    TypeError,
    "MultiModal is read-only; build a new one with MultiModal(**{**X, name: array}).",
)
for _method, _args in (
    ("pop", ("img",)),
    ("popitem", ()),
    ("__delitem__", ("img",)),
    ("setdefault", ("aud", None)),
    ("clear", ()),
    ("update", ({"aud": None},)),
    ("__ior__", ({"aud": None},)),
):
    rejects(
        GMM,
        f"MultiModal.{_method}",
        "changing the modalities",
        lambda ctx, m=_method, a=_args: getattr(ctx.X, m)(*a),
        TypeError,
        "MultiModal is read-only; build a new one with "
        "MultiModal(**{**X, name: array}).",
    )
rejects(
    GMM,
    "MultiModal.__getitem__",
    "writing into a modality's array",
    lambda ctx: ctx.X["img"].__setitem__((0, 0), 1.0),
    ValueError,
    "assignment destination is read-only",
)
accepts(
    GMM,
    "MultiModal",
    "integer, boolean, float16 and sparse modalities",
    lambda ctx: MultiModal(
        a=ctx.X_img.astype(int),
        b=ctx.X_img > 0,
        c=ctx.X_img.astype(np.float16),
        d=sp.coo_matrix(ctx.X_img),
    ),
    "accepted: numeric dtypes kept (no copy; learners convert per batch), sparse "
    "as CSR",
    lambda mm, ctx: _assert(
        [mm[m].dtype for m in "abc"] == [np.int64, np.bool_, np.float16]
        and sp.isspmatrix_csr(mm["d"])
    ),
)


# -- compose, pipeline, datasets --------------------------------------------- #

GT = "ModalityTransformer"
rejects(
    GT,
    f"{GT}.fit",
    "a transformer for a modality X lacks",
    lambda ctx: ModalityTransformer([("aud", StandardScaler())]).fit(ctx.X),
    ValueError,
    "ModalityTransformer has transformers for ['aud'], but X holds the "
    "modalities ('img', 'txt').",
)
rejects(
    GT,
    f"{GT}.fit",
    "transformers not as (name, transformer) pairs",
    lambda ctx: ModalityTransformer([StandardScaler()]).fit(ctx.X),
    ValueError,
    "transformers must be a list of (modality, transformer) tuples, e.g. "
    "[('img', StandardScaler())];",
)
rejects(
    GT,
    f"{GT}.fit",
    "every modality dropped",
    lambda ctx: ModalityTransformer([("img", "drop"), ("txt", "drop")]).fit_transform(
        ctx.X
    ),
    ValueError,
    "Every modality was dropped; ModalityTransformer has nothing to return.",
)
rejects(
    GT,
    f"{GT}.transform",
    "a modality not seen in fit",
    lambda ctx: ctx.modality_transformer.transform(MultiModal(aud=ctx.X_img)),
    ValueError,
    "Unknown modalities ['aud']: ModalityTransformer was fitted on ('img', 'txt').",
)
rejects(
    GT,
    f"{GT}.transform",
    "wrong feature width",
    lambda ctx: ctx.modality_transformer.transform(MultiModal(img=ctx.X_img[:, :3])),
    ValueError,
    "Modality 'img' has 3 features, but ModalityTransformer was fitted with 8 "
    "features for it.",
)
accepts(
    GT,
    f"{GT}.transform",
    "one of the two modalities seen in fit",
    lambda ctx: ctx.modality_transformer.transform(MultiModal(txt=ctx.X_txt)),
    "accepted: that modality only",
    lambda mm, ctx: _assert(mm.modalities == ("txt",)),
)

GP = "Pipeline"
_PIPE = lambda: Pipeline(  # noqa: E731
    [("hq", make_learner("HQHasher")), ("search", TwoStageRetriever(alpha=10))]
)
rejects(
    GP,
    "Pipeline.fit",
    "four positional arrays",
    lambda ctx: _PIPE().fit(ctx.X_img, ctx.X_txt, ctx.y, ctx.y),
    TypeError,
    "fit() got 4 positional arguments; accepted: fit(X), fit(X, y) with a "
    "MultiModal or plain array X, or the 2 modalities ('img', 'txt') optionally "
    "followed by y.",
)
rejects(
    GP,
    "Pipeline.fit",
    "two 2-D arrays and no y= (ambiguous)",
    lambda ctx: _PIPE().fit(ctx.X_img, ctx.X_txt),
    TypeError,
    "fit() got two 2-D arrays and no y=: this could be the modalities ('img', "
    "'txt') without labels, or one modality with a multi-label indicator y.",
)
rejects(
    GP,
    "Pipeline.fit",
    "the data both positionally and as X=",
    lambda ctx: _PIPE().fit(ctx.X_img, X=ctx.X_img),
    TypeError,
    "fit() got the data both positionally and as X=; pass it once.",
)
rejects(
    GP,
    "Pipeline.fit",
    "no data",
    lambda ctx: _PIPE().fit(),
    TypeError,
    "fit() needs data: fit(X_img, X_txt, y) or fit(X, y) with a MultiModal X.",
)
rejects(
    GP,
    "Pipeline.fit",
    "modalities with different row counts",
    lambda ctx: _PIPE().fit(ctx.X_img, ctx.X_txt[:50], ctx.y),
    ValueError,
    "All modalities must have the same number of rows (one row per item); got "
    "img: (60, 8), txt: (50, 5).",
)
rejects(
    GP,
    "Pipeline.fit",
    "a MultiModal among the modality arrays",
    lambda ctx: _PIPE().fit(ctx.X_img, ctx.X, ctx.y),
    TypeError,
    "A MultiModal was passed as the modality 'txt'; pass either one MultiModal "
    "X, or one plain array per modality in the order ('img', 'txt').",
)
rejects(
    GP,
    "Pipeline.fit",
    "modalities=('img',)",
    lambda ctx: Pipeline([("search", TwoStageRetriever())], modalities=("img",)).fit(
        ctx.X_img, ctx.X_txt, ctx.y
    ),
    ValueError,
    "The 'modalities' parameter of Pipeline must hold at least two distinct "
    "identifiers such as ('img', 'txt'); got ('img',).",
)
rejects(
    GP,
    "Pipeline.kneighbors",
    "queries without the query modality",
    lambda ctx: ctx.pipeline.kneighbors(
        MultiModal(txt=ctx.X_txt), direction="img->txt"
    ),
    ValueError,
    "The queries X hold the modalities ('txt',), but the direction 'img->txt' "
    "queries with 'img'",
)
rejects(
    GP,
    "Pipeline.transform",
    "three arrays for two modalities",
    lambda ctx: ctx.pipeline[:-1].transform(ctx.X_img, ctx.X_txt, ctx.X_txt),
    TypeError,
    "transform() takes one X or 2 arrays (modalities ('img', 'txt')); got 3 "
    "positional arguments.",
)
accepts(
    GP,
    "Pipeline.kneighbors",
    "queries of one modality (a MultiModal subset)",
    lambda ctx: ctx.pipeline.kneighbors(
        MultiModal(img=ctx.X_img), direction="img->txt", return_distance=False
    ),
    "accepted: transform takes any subset of the modalities",
    lambda idx, ctx: _assert(idx.shape == (N, 5)),
)

rejects(
    GP,
    "make_pipeline",
    "modalities='img' (a string)",
    lambda ctx: make_pipeline(TwoStageRetriever(), modalities="img").fit(
        ctx.X_img, ctx.y
    ),
    ValueError,
    "The 'modalities' parameter of Pipeline must be a tuple of at least two "
    "names such as ('img', 'txt'), or None; got 'img'.",
)

GD = "datasets"
rejects(
    GD,
    "make_cross_modal",
    "n_samples=1",
    lambda ctx: make_cross_modal(1),
    InvalidParameterError,
    "The 'n_samples' parameter of make_cross_modal must be an int in the range "
    "[2, inf). Got 1 instead.",
)
rejects(
    GD,
    "make_cross_modal",
    "a single class",
    lambda ctx: make_cross_modal(10, n_classes=1),
    InvalidParameterError,
    "The 'n_classes' parameter of make_cross_modal must be an int in the range "
    "[2, inf). Got 1 instead.",
)
rejects(
    GD,
    "load_mirflickr",
    "a path that does not exist",
    lambda ctx: load_mirflickr(os.path.join(ctx.tmpdir, "nope")),
    FileNotFoundError,
    "does not exist; pass the .mat file of the single-file layout (DCMH) or the "
    "folder of the one-variable-per-file layout (DJSRH).",
)
rejects(
    GD,
    "load_nuswide",
    "a path that does not exist",
    lambda ctx: load_nuswide(os.path.join(ctx.tmpdir, "nope")),
    FileNotFoundError,
    "does not exist; pass the .mat file of the single-file layout (DCMH) or the "
    "folder of the one-variable-per-file layout (DJSRH).",
)
rejects(
    GD,
    "load_wiki",
    "an unknown split",
    lambda ctx: load_wiki(split="random"),
    ValueError,
    "split must be 'standard'; got 'random'.",
)


# --------------------------------------------------------------------------- #
# The table
# --------------------------------------------------------------------------- #


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(cases=None):
    """The markdown of ERRORS.md, from the cases' expectations."""
    cases = CASES if cases is None else cases
    n_rejected = sum(c.raises is not None and not c.xfail for c in cases)
    n_accepted = sum(c.raises is None for c in cases)
    n_xfail = sum(bool(c.xfail) for c in cases)
    lines = [
        "<!-- Generated by tests/robustness/robust_cases.py from the test "
        "expectations; do not edit. -->",
        "",
        "# What skhash does with bad input",
        "",
        f"{len(cases)} cases, each run by `tests/robustness/test_robust_inputs.py`: "
        f"{n_rejected} rejected with the error shown (the message must contain "
        f"the text given), {n_accepted} accepted and converted, and {n_xfail} "
        "that still need a fix (tested as strict xfail).",
        "",
        "Data of the cases: 60 paired items, `img` with 8 features and `txt` "
        "with 5, 3 classes; the learners are fitted on both modalities unless "
        "the row says otherwise.",
    ]
    groups = []
    for c in cases:
        if c.group not in groups:
            groups.append(c.group)
    for group in groups:
        lines += [
            "",
            f"## {group}",
            "",
            "| Call | Bad input | Result |",
            "|---|---|---|",
        ]
        for c in cases:
            if c.group != group:
                continue
            if c.xfail:
                result = (
                    f"**needs a fix**: {c.xfail}. Now: `{c.current}`; wanted: "
                    f'`{c.raises.__name__}` mentioning "{c.message}"'
                )
            elif c.raises is None:
                result = c.outcome[:1].upper() + c.outcome[1:]
            else:
                result = f"`{c.raises.__name__}`: {c.message}"
            lines.append(f"| `{c.call}` | {_cell(c.situation)} | {_cell(result)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(ERRORS_MD, "w", encoding="utf-8") as f:
        f.write(render_table())
    print(f"wrote {ERRORS_MD} ({len(CASES)} cases)")
