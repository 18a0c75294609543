"""Finite features of any magnitude are standardised, never collapsed.

The learners' standardisation squares each feature's deviations in float32:
beyond about 1.8e19 the square overflowed (the scale became ``inf`` and every
item was standardised to 0), below about 1e-19 it vanished, and a scale
under 1e-8 was read as a constant feature (left unscaled, the features stayed
near 0); either way all items got one code.
"""

import numpy as np
import pytest
from robust_cases import make_learner

from skhash import MultiModal
from skhash._scaling import _channel_statistics


@pytest.mark.parametrize("shape", [(60, 5), (12, 3, 4, 4)])
@pytest.mark.parametrize("factor", [1e20, 1e30, 1e-30])
def test_channel_statistics_scale_with_the_features(shape, factor):
    X = np.random.RandomState(0).randn(*shape).astype(np.float32)
    mean, scale = _channel_statistics(X, X.ndim)
    big = (X.astype(np.float64) * factor).astype(np.float32)
    X0 = big.copy()
    big_mean, big_scale = _channel_statistics(big, big.ndim)
    np.testing.assert_array_equal(big, X0)  # not modified
    assert np.isfinite(big_scale).all() and (big_scale > 0).all()
    np.testing.assert_allclose(big_scale, scale * factor, rtol=1e-5)
    np.testing.assert_allclose(big_mean, mean * factor, rtol=1e-4, atol=1e-6 * factor)


def test_channel_statistics_ordinary_features_unchanged_by_the_fallback():
    # the float64 pass runs only where the float32 one overflowed
    X = np.random.RandomState(1).randn(500, 7).astype(np.float32) * 3 + 1
    mean, scale = _channel_statistics(X, 2)
    d = X - mean.astype(np.float32)
    expected = np.sqrt((d * d).sum(axis=0, dtype=np.float64) / len(X))
    np.testing.assert_array_equal(scale, expected)


@pytest.mark.parametrize("name", ["HQHasher", "DJSRHHasher", "DQNQuantizer"])
def test_learners_on_huge_features_do_not_collapse_to_one_code(name):
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 64)
    img = rng.randn(64, 6) + y[:, None]
    txt = rng.randn(64, 5) - y[:, None]

    def n_codes(factor):
        X = MultiModal(img=img * factor, txt=txt)
        est = make_learner(name, max_epochs=2).fit(X, y)
        codes = est.transform(MultiModal(img=img * factor))
        assert np.isfinite(codes.get("img", "embedding")).all()
        part = "bits" if codes.bits is not None else "codes"
        return len(np.unique(codes.get("img", part), axis=0))

    ordinary = n_codes(1.0)
    assert ordinary > 2
    # standardised, the scaled features are the ordinary ones up to
    # rounding: about as many distinct codes, never all items on one
    for factor in (1e30, 1e-30):
        assert n_codes(factor) >= ordinary // 2
