"""OPQ (learned rotation + product codes) and DQNQuantizer(quantizer="opq")."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skhash import MultiModal, TwoStageRetriever
from skhash.datasets import make_cross_modal
from skhash.nn import pairwise_cosine_loss
from skhash.quantization import OPQ, DQNQuantizer, ProductQuantizer, aqd, encode


@pytest.fixture(scope="module")
def correlated():
    # 3 latent factors spread over all 12 dimensions: contiguous blocks are
    # a bad split for product quantization, a rotation fixes it
    rng = np.random.RandomState(0)
    return (rng.randn(400, 3) @ rng.randn(3, 12) * [1] * 12).astype(np.float32)


@pytest.fixture(scope="module")
def opq(correlated):
    return OPQ(n_codebooks=3, n_codewords=16, n_iter=15, random_state=0).fit(correlated)


def _pq_error(X, pq):
    return ((X - pq.inverse_transform(pq.transform(X))) ** 2).sum(1).mean()


class TestOPQ:
    def test_rotation_is_orthogonal(self, opq):
        R = opq.rotation_
        np.testing.assert_allclose(R @ R.T, np.eye(12), atol=1e-5)

    def test_error_never_increases_and_beats_pq(self, opq, correlated):
        err = opq.quantization_errors_
        assert len(err) == 16
        assert np.all(np.diff(err) <= 1e-6 * err[0])
        pq = ProductQuantizer(3, 16, random_state=0).fit(correlated)
        assert err[-1] < 0.9 * _pq_error(correlated, pq)

    def test_inverse_transform_matches_the_recorded_error(self, opq, correlated):
        rec = opq.inverse_transform(opq.transform(correlated))
        err = ((correlated - rec) ** 2).sum(1).mean()
        assert err == pytest.approx(opq.quantization_errors_[-1], rel=1e-4)

    def test_no_rounds_is_plain_pq(self, correlated):
        opq0 = OPQ(3, 16, n_iter=0, random_state=0).fit(correlated)
        pq = ProductQuantizer(3, 16, random_state=0).fit(correlated)
        np.testing.assert_array_equal(opq0.rotation_, np.eye(12, dtype=np.float32))
        np.testing.assert_array_equal(
            opq0.transform(correlated), pq.transform(correlated)
        )

    def test_reproducible_and_clonable(self, correlated, opq):
        again = clone(opq).fit(correlated)
        np.testing.assert_array_equal(again.rotation_, opq.rotation_)
        np.testing.assert_array_equal(
            again.transform(correlated), opq.transform(correlated)
        )

    def test_aqd_in_the_rotated_space_is_the_distance_to_the_reconstruction(
        self, opq, correlated
    ):
        q = correlated[:5]
        codes = opq.transform(correlated[5:50])
        got = aqd(q @ opq.rotation_, codes, opq.codebooks_, metric="l2")
        rec = opq.inverse_transform(codes)
        want = ((q[:, None, :] - rec[None]) ** 2).sum(-1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    def test_input_not_modified(self, correlated):
        X = correlated.copy()
        OPQ(3, 8, n_iter=2, random_state=0).fit(X)
        np.testing.assert_array_equal(X, correlated)

    def test_errors(self, correlated):
        with pytest.raises(ValueError, match="n_codebooks=20 product blocks"):
            OPQ(20, 8).fit(correlated)
        with pytest.raises(TypeError, match="one modality's array"):
            OPQ(2, 8).fit(MultiModal(img=correlated, txt=correlated))
        with pytest.raises(ValueError, match="n_iter"):
            OPQ(2, 8, n_iter=-1).fit(correlated)
        fitted = OPQ(3, 8, n_iter=1, random_state=0).fit(correlated)
        with pytest.raises(ValueError, match="features"):
            fitted.transform(correlated[:, :5])


@pytest.fixture(scope="module")
def cross_modal():
    return make_cross_modal(300, n_classes=4, difficulty=0.5, random_state=0)


FAST = dict(n_codewords=16, n_dims=16, max_epochs=3, random_state=0, device="cpu")


class TestDQNWithOPQ:
    @pytest.mark.parametrize("lambda_q", [0.0, 0.1])  # 0.0: the DQN2+ ablation
    def test_fit_rotation_and_consistent_codes(self, cross_modal, lambda_q):
        X, y = cross_modal
        dqn = DQNQuantizer(4, quantizer="opq", lambda_q=lambda_q, **FAST).fit(X, y)
        R = dqn.rotation_
        np.testing.assert_allclose(R @ R.T, np.eye(16), atol=1e-5)
        codes = dqn.transform(X)
        emb = codes["img"].embedding
        # rotated unit z: still on the unit sphere
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        # the codes are the nearest product codes of the rotated embedding
        again = encode(emb, codes.codebooks, kind="product")
        np.testing.assert_array_equal(again, codes["img"].codes)
        rec = sum(codes.codebooks[m, codes["img"].codes[:, m]] for m in range(4))
        err_opq = ((emb - rec) ** 2).sum(1).mean()
        assert err_opq < 1.0

    def test_opq_lowers_the_error_of_the_same_embeddings(self, cross_modal):
        X, y = cross_modal
        pq = DQNQuantizer(4, quantizer="pq", lambda_q=0.0, **FAST).fit(X, y)
        opq = DQNQuantizer(4, quantizer="opq", lambda_q=0.0, **FAST).fit(X, y)
        # lambda_q=0: identical towers; only the quantizer differs
        z_pq, z_opq = pq.transform(X), opq.transform(X)
        np.testing.assert_allclose(
            z_pq["img"].embedding @ opq.rotation_, z_opq["img"].embedding, atol=1e-5
        )

        def err(cs):
            e = cs["img"].embedding
            rec = sum(cs.codebooks[m, cs["img"].codes[:, m]] for m in range(4))
            return ((e - rec) ** 2).sum(1).mean()

        assert err(z_opq) <= err(z_pq) * 1.01

    def test_pq_has_no_rotation(self, cross_modal):
        X, y = cross_modal
        dqn = DQNQuantizer(4, quantizer="pq", **FAST).fit(X, y)
        assert dqn.rotation_ is None
        assert DQNQuantizer().quantizer == "opq"  # the default learns R

    def test_searchable(self, cross_modal):
        X, y = cross_modal
        dqn = DQNQuantizer(4, quantizer="opq", **FAST).fit(X, y)
        r = TwoStageRetriever(alpha=1.0, rerank="aqd-l2").fit(dqn.transform(X), y)
        assert r.score(dqn.transform(X), y, direction="img->txt") > 0.5

    def test_invalid_quantizer(self, cross_modal):
        X, y = cross_modal
        with pytest.raises(ValueError, match="quantizer"):
            DQNQuantizer(4, quantizer="rq", **FAST).fit(X, y)


class TestInnerProductScale:
    def test_divides_by_the_code_length(self):
        z = torch.ones(2, 8)
        S = torch.ones(2, 2)
        # <z, z> = 8: divided by B = 16 bits -> 0.5, (1 - 0.5)^2 = 0.25
        got = pairwise_cosine_loss(z, z, S, kind="ip", code_length=16)
        assert got.item() == pytest.approx(0.25)
        # default: the width (the former behaviour)
        assert pairwise_cosine_loss(z, z, S, kind="ip").item() == pytest.approx(0.0)

    def test_bad_code_length(self):
        z = torch.ones(2, 4)
        with pytest.raises(ValueError, match="code_length"):
            pairwise_cosine_loss(z, z, torch.ones(2, 2), kind="ip", code_length=0)

    def test_dqn_ip_uses_m_log2_k(self, cross_modal):
        X, y = cross_modal
        dqn = DQNQuantizer(4, similarity="ip", **FAST).fit(X, y)
        assert dqn.net_.criterion_.code_length == 4 * np.log2(16)
