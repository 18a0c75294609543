"""Start-up: lazy imports (no torch for search and metrics) and the lazy
numba backend (a first query never waits for the kernels to compile).

The import checks run in fresh interpreters, since this test process has
long imported torch.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import skhash


def _run(code, env=None):
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_search_and_metrics_do_not_import_torch():
    result = _run(
        "import json, sys\n"
        "import skhash.metrics, skhash.retrieval, skhash.quantization\n"
        "from skhash import CodeSet, TwoStageRetriever, pack_bits\n"
        "from skhash.quantization import AdditiveQuantizer, encode\n"
        "import numpy as np\n"
        "cs = CodeSet(bits=pack_bits(np.ones((4, 8))), n_bits=8)\n"
        "TwoStageRetriever(n_neighbors=2).fit(cs[1:]).kneighbors(cs[[0, 2]])\n"
        "before = sorted(m for m in ('torch', 'skorch') if m in sys.modules)\n"
        "from skhash import HQHasher\n"
        "print(json.dumps({'before': before, 'after': 'torch' in sys.modules,\n"
        "                  'name': HQHasher.__name__}))\n"
    )
    assert result == {"before": [], "after": True, "name": "HQHasher"}


def test_every_public_name_resolves():
    for name in skhash.__all__:
        assert getattr(skhash, name) is not None
    assert set(skhash.__all__) <= set(dir(skhash))
    assert skhash.hashing.HQHasher is skhash.HQHasher
    assert skhash.quantization.DQNQuantizer is skhash.DQNQuantizer
    assert "DQNQuantizer" in dir(skhash.quantization)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        skhash.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        skhash.quantization.nope  # noqa: B018


def test_lazy_backend_answers_before_compiling(tmp_path):
    # a fresh numba cache: nothing is compiled or cached; the first call is
    # answered by the numpy reference while the kernel compiles behind it
    result = _run(
        "import json, time\n"
        "import numpy as np\n"
        "from skhash.retrieval import _numba\n"
        "from skhash.retrieval._kernels import NumpyBackend\n"
        "rng = np.random.RandomState(0)\n"
        "db = rng.randint(256, size=(3000, 8)).astype(np.uint8)\n"
        "q = db[:7]\n"
        "be = _numba.NumbaBackend(lazy=True)\n"
        "t = time.perf_counter()\n"
        "idx, dist = be.shortlist(q, db, 20)\n"
        "first = time.perf_counter() - t\n"
        "compiled = len(_numba._shortlist_kernel.overloads)\n"
        "ref = NumpyBackend().shortlist(q, db, 20)\n"
        "same = bool((idx == ref[0]).all() and (dist == ref[1]).all())\n"
        "threads = len(_numba._compiling)\n"
        "print(json.dumps({'first': first, 'compiled': compiled,\n"
        "                  'same': same, 'threads': threads}))\n",
        env={"NUMBA_CACHE_DIR": str(tmp_path)},
    )
    assert result["same"]
    assert result["compiled"] == 0  # answered without waiting for the compile
    assert result["threads"] == 1  # and the compile was started
    assert result["first"] < 5.0  # numpy on 7 x 3000 codes; compiling takes ~10 s


def test_lazy_backend_switches_to_the_kernel_once_ready():
    from skhash.retrieval import _numba

    rng = np.random.RandomState(1)
    db = rng.randint(256, size=(500, 5)).astype(np.uint8)
    eager = _numba.NumbaBackend()
    ref = eager.shortlist(db[:4], db, 9)  # compiles (or loads) in the foreground
    lazy = _numba.NumbaBackend(lazy=True)
    got = lazy.shortlist(db[:4], db, 9)  # the kernel is ready: used directly
    assert_array_equal(got[0], ref[0])
    assert_array_equal(got[1], ref[1])
    luts = rng.rand(2, 3, 4).astype(np.float32)
    codes = rng.randint(4, size=(50, 3)).astype(np.uint8)
    cand = rng.randint(50, size=(2, 6))
    assert_array_equal(
        lazy.rerank_aqd(luts, cand, codes), eager.rerank_aqd(luts, cand, codes)
    )
    d = rng.rand(3, 10)
    for a, b in zip(lazy.topk(d, 4), eager.topk(d, 4)):
        assert_array_equal(a, b)
    assert "lazy=True" in repr(lazy)
