"""scikit-learn's common estimator checks, on every public skhash estimator.

One place lists the fast constructor arguments and the expected failures
(each with its reason), as imbalanced-learn's ``test_common.py`` does; a
discovery test makes sure a new public estimator cannot escape the checks.
"""

import inspect

from sklearn.base import BaseEstimator
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import skhash
import skhash.compose
import skhash.hashing
import skhash.quantization
import skhash.retrieval
from skhash import DQNQuantizer, HQHasher, TwoStageRetriever
from skhash.compose import ModalityTransformer
from skhash.hashing import DJSRHHasher
from skhash.quantization import OPQ, AdditiveQuantizer, ProductQuantizer
from skhash.retrieval import ShardedRetriever

_TOWER = {"hidden_layer_sizes": (16,), "device": "cpu", "random_state": 0}

INSTANCES = [
    HQHasher(
        n_bits=16,
        n_codebooks=2,
        n_codewords=8,
        max_epochs=1,
        quantization_warmup=1,
        batch_size=32,
        **_TOWER,
    ),
    DQNQuantizer(
        n_codebooks=2, n_codewords=8, n_dims=8, max_epochs=3, batch_size=32, **_TOWER
    ),
    DJSRHHasher(n_bits=8, max_epochs=2, batch_size=16, **_TOWER),
    ProductQuantizer(n_codebooks=2, n_codewords=4, n_iter=5, random_state=0),
    OPQ(n_codebooks=2, n_codewords=4, n_iter=3, n_kmeans_iter=5, random_state=0),
    AdditiveQuantizer(
        n_codebooks=2, n_codewords=4, n_iter=2, n_icm_iter=2, random_state=0
    ),
    # on plain arrays the retriever is an exact cosine nearest-neighbour index
    TwoStageRetriever(n_neighbors=3),
    ShardedRetriever(n_neighbors=3, n_shards=2),
    ModalityTransformer([("X", StandardScaler())]),
    ModalityTransformer([("X", MinMaxScaler())], remainder="drop"),
    ModalityTransformer([("X", "passthrough")]),
]

# The learners' transform returns a CodeSet (embeddings, packed bits,
# quantization codes and the shared codebooks), which refuses np.asarray on
# purpose; every expected failure below compares transform outputs as arrays.
# The same contracts are asserted on the CodeSet parts by each learner's tests
# (tests/hashing/test_hq.py, test_djsrh.py, tests/quantization/test_dqn.py:
# determinism, per-item transform, pickling, pipelines).
_CODESET = "transform returns a CodeSet, not an array; covered in the learner's tests"
_LEARNER_XFAIL = dict.fromkeys(
    [
        "check_transformer_data_not_an_array",
        "check_transformer_general",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit_idempotent",
        "check_pipeline_consistency",
        "check_estimators_pickle",
    ],
    _CODESET,
)


def _expected_failed_checks(estimator):
    if isinstance(estimator, (HQHasher, DQNQuantizer, DJSRHHasher)):
        return _LEARNER_XFAIL
    return {}


@parametrize_with_checks(INSTANCES, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _public_estimator_classes():
    found = set()
    for module in (
        skhash,
        skhash.compose,
        skhash.hashing,
        skhash.quantization,
        skhash.retrieval,
    ):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
                found.add(obj)
    return found


def test_every_public_estimator_is_checked():
    # skhash.Pipeline is scikit-learn's Pipeline with more call forms; it is
    # a meta-estimator checked in tests/test_pipeline.py
    public = _public_estimator_classes() - {skhash.Pipeline}
    assert public == {type(est) for est in INSTANCES}
