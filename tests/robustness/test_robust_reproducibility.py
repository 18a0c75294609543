"""Reproducibility on CPU: same seed, same bits; no global random state used."""

import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from robust_cases import LEARNERS, QUANTIZERS, make_learner, make_quantizer, same_codes

from skhash import TwoStageRetriever
from skhash.datasets import make_cross_modal

HERE = os.path.dirname(os.path.abspath(__file__))


def _labels(name, ctx):
    return None if name == "DJSRHHasher" else ctx.y


def digests(ctx_like):
    """sha256 of every learner's codes and of the rankings over them."""
    out = {}
    for name in LEARNERS:
        y = None if name == "DJSRHHasher" else ctx_like.y
        codes = (
            make_learner(name, random_state=7, max_epochs=2)
            .fit(ctx_like.X, y)
            .transform(ctx_like.X)
        )
        h = hashlib.sha256()
        for m in codes.modalities:
            for part in ("embedding", "bits", "codes"):
                a = codes.get(m, part)
                if a is not None:
                    h.update(np.ascontiguousarray(a).tobytes())
        out[name] = h.hexdigest()
        dist, idx = (
            TwoStageRetriever(alpha=10, n_neighbors=10)
            .fit(codes)
            .kneighbors(codes, direction="img->txt")
        )
        out[name + " ranking"] = hashlib.sha256(
            idx.tobytes() + dist.tobytes()
        ).hexdigest()
    return out


_SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
from robust_cases import Context
from test_robust_reproducibility import digests
print(json.dumps(digests(Context())))
"""


@pytest.mark.parametrize("name", LEARNERS)
def test_same_seed_same_codes_and_rankings(name, ctx):
    y = _labels(name, ctx)
    a = make_learner(name, random_state=3, max_epochs=2).fit(ctx.X, y)
    b = make_learner(name, random_state=3, max_epochs=2).fit(ctx.X, y)
    ca, cb = a.transform(ctx.X), b.transform(ctx.X)
    assert same_codes(ca, cb)
    ra = (
        TwoStageRetriever(alpha=10, n_neighbors=10)
        .fit(ca)
        .kneighbors(ca, direction="img->txt")
    )
    rb = (
        TwoStageRetriever(alpha=10, n_neighbors=10)
        .fit(cb)
        .kneighbors(cb, direction="img->txt")
    )
    for x, z in zip(ra, rb):
        np.testing.assert_array_equal(x, z)


@pytest.mark.parametrize("name", LEARNERS)
def test_same_seed_as_a_random_state_instance(name, ctx):
    y = _labels(name, ctx)
    a = make_learner(name, random_state=np.random.RandomState(5)).fit(ctx.X, y)
    b = make_learner(name, random_state=np.random.RandomState(5)).fit(ctx.X, y)
    assert same_codes(a.transform(ctx.X), b.transform(ctx.X))


@pytest.mark.parametrize("name", LEARNERS)
def test_random_state_none_differs(name, ctx):
    y = _labels(name, ctx)
    a = make_learner(name, random_state=None).fit(ctx.X, y)
    b = make_learner(name, random_state=None).fit(ctx.X, y)
    ea = a.transform(ctx.X).get("img", "embedding")
    eb = b.transform(ctx.X).get("img", "embedding")
    assert not np.array_equal(ea, eb)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_quantizer_same_seed_same_codebooks(name, ctx):
    a = make_quantizer(name).fit(ctx.X_img)
    b = make_quantizer(name).fit(ctx.X_img)
    np.testing.assert_array_equal(a.codebooks_, b.codebooks_)
    np.testing.assert_array_equal(a.transform(ctx.X_img), b.transform(ctx.X_img))


def test_bit_identical_across_processes(ctx):
    """A second Python process, same seed: the same bytes of codes and
    rankings for every learner (CPU, one torch thread in both)."""
    env = {**os.environ, "PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(here=HERE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    other = json.loads(proc.stdout.strip().splitlines()[-1])
    assert other == digests(ctx)


def _global_states():
    return (
        np.random.get_state(),
        torch.get_rng_state(),
        random.getstate(),
    )


def _assert_states_equal(before, after, numpy=True):
    if numpy:
        for x, z in zip(before[0], after[0]):
            np.testing.assert_array_equal(x, z)
    assert torch.equal(before[1], after[1]), "torch's global RNG was used"
    assert before[2] == after[2], "Python's random module was used"


def _fit_and_use(name, ctx, random_state):
    if name in QUANTIZERS:
        est = make_quantizer(name).set_params(random_state=random_state)
        est.fit(ctx.X_img).transform(ctx.X_img)
    elif name == "make_cross_modal":
        make_cross_modal(30, random_state=random_state)
    else:
        est = make_learner(name, random_state=random_state, max_epochs=2)
        codes = est.fit(ctx.X, _labels(name, ctx)).transform(ctx.X)
        TwoStageRetriever(n_neighbors=5).fit(codes, ctx.y).score(codes, ctx.y)


ALL = [*LEARNERS, *QUANTIZERS, "make_cross_modal"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("seed", [0, "instance"])
def test_no_global_random_state_touched(name, seed, ctx):
    random_state = np.random.RandomState(0) if seed == "instance" else seed
    before = _global_states()
    _fit_and_use(name, ctx, random_state)
    _assert_states_equal(before, _global_states())


@pytest.mark.parametrize("name", LEARNERS)
def test_random_state_none_leaves_torch_and_python_alone(name, ctx):
    """random_state=None draws its seed from numpy's global RNG, as in
    scikit-learn; torch's global RNG and Python's random stay untouched."""
    before = _global_states()
    _fit_and_use(name, ctx, None)
    _assert_states_equal(before, _global_states(), numpy=False)
