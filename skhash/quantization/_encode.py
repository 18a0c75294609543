"""Code assignment: :func:`encode` (compiled CPU kernels or torch on a GPU).

The kernels live in :mod:`skhash.quantization._encode_kernels` (numba,
imported on the first call) and :mod:`skhash.quantization._encode_torch`;
``_encode_numpy`` keeps the former vectorised numpy implementation as the
reference of the tests and of ``benchmarks/bench_encode.py``.
"""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, validate_params

from skhash.quantization._checks import (
    _KINDS,
    _check_block_diagonal,
    _check_codebooks,
    _check_codes,
    _check_width,
    _check_X_distances,
    _codes_dtype,
    product_blocks,
)
from skhash.quantization._kmeans import _nearest

__all__ = ["encode"]


@validate_params(
    {
        "X": ["array-like"],
        "codebooks": ["array-like"],
        "kind": [_KINDS],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "init_codes": ["array-like", None],
        "beam_width": [Interval(Integral, 1, None, closed="left")],
        "ils_iters": [Interval(Integral, 0, None, closed="left")],
        "n_jobs": [Integral, None],
        "device": [str, None],
    },
    prefer_skip_nested_validation=True,
)
def encode(
    X,
    codebooks,
    *,
    kind,
    n_iter=3,
    init_codes=None,
    beam_width=1,
    ils_iters=0,
    n_jobs=None,
    device=None,
):
    """Assign each item the codes that best reconstruct it.

    - ``kind="product"``: the exact nearest codeword in each block.
    - ``kind="additive"`` with one codebook: exhaustive nearest codeword
      (``init_codes`` are then not needed, and ignored).
    - ``kind="additive"`` with several codebooks: greedy residual encoding (or
      ``init_codes``), then ``n_iter`` sweeps of iterated conditional modes
      (ICM): for each codebook in turn, pick the codeword minimising
      ``‖x − Σ_{l≠m} C_l[c_l] − C_m[k]‖²`` with the others fixed. In exact
      arithmetic an ICM sweep never increases the reconstruction error of an
      item; a sweep that changes no code ends the search.
    - ``beam_width > 1`` (additive): the greedy start becomes a beam search
      that keeps the ``beam_width`` best partial encodings codebook after
      codebook (faiss's ``ResidualQuantizer.max_beam_size``), then ICM refines
      the best; lower error for about ``beam_width`` times the work of the
      greedy start.

    Items are encoded independently of each other by compiled kernels
    (numba), in fixed-size blocks: the temporary memory does not grow with
    ``n_samples``, and an item gets the same codes whatever else is encoded
    in the same call. The additive greedy start is one BLAS product per
    codebook and block of items with a fused argmin and residual update;
    ICM scores codewords with exact int32 sums of an int16 copy of the
    codeword Gram tables ``⟨C_l[i], C_m[k]⟩`` (``M²K²`` entries, used up to
    64 MiB; larger codebooks update the residual directly) and re-scores
    exactly the codewords within its proven error bound of the best, so the
    codes are those of the exact search. The tables of the last codebooks
    encoded with are kept (by content), so that calls in chunks on the same
    codebooks build them once. Computations run in ``X``'s dtype (float32
    stays float32, anything else float64), except float32 data or codebooks
    of magnitude beyond ``1e15`` or (all) below ``1e-15``, which run in
    float64: their squared distances, or the steps of the integer tables
    (about the codewords' squared norms / 32767), would overflow or vanish
    in float32.

    Parameters
    ----------
    X : array-like of shape (n_samples, d)
        Embeddings to encode.
    codebooks : array-like of shape (n_codebooks, n_codewords, d)
        The codebooks.
    kind : {"additive", "product"}
        Kind of the codebooks.
    n_iter : int, default=3
        Number of ICM sweeps (additive kind with several codebooks only).
    init_codes : array-like of shape (n_samples, n_codebooks), default=None
        Starting codes for ICM instead of the greedy encoding (additive kind
        only), e.g. the codes of the previous round of training.
    beam_width : int, default=1
        Beam of the start of the additive search (1: greedy). Ignored with
        ``init_codes``.
    ils_iters : int, default=0
        Rounds of iterated local search after ICM (additive kind; faiss's
        ``LocalSearchQuantizer.encode_ils_iters``): each sets ``min(4, M)``
        codes of the best encoding so far to random codewords, runs ICM
        again and keeps the result if its error is lower. The draws are
        seeded by the item's own codes, so results stay deterministic and
        independent of the other items.
    n_jobs : int, default=None
        Threads over blocks of items (``None``: 1, ``-1``: all cores); the
        codes do not depend on it.
    device : str, default=None
        ``None`` or ``"cpu"``: the compiled CPU kernels. A CUDA device such
        as ``"cuda"`` or ``"cuda:1"`` runs the same searches with torch on
        that GPU, in chunks of items (``beam_width`` must be 1); there the
        float32 sums run in another order, so an item whose best codewords
        tie within rounding may get the other one.

    Returns
    -------
    codes : ndarray of shape (n_samples, n_codebooks)
        ``uint8`` when ``n_codewords <= 256``, else ``uint16``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.quantization import encode, kmeans_codebooks, quantization_error
    >>> X = np.random.RandomState(0).randn(50, 4)
    >>> C = kmeans_codebooks(X, 2, 4, kind="additive", random_state=0)
    >>> codes = encode(X, C, kind="additive")
    >>> codes.shape, codes.dtype
    ((50, 2), dtype('uint8'))
    >>> beam = encode(X, C, kind="additive", beam_width=8)
    >>> bool(quantization_error(X, beam, C) <= quantization_error(X, codes, C) + 1e-9)
    True
    """
    from skhash.quantization import _encode_kernels as _encode
    from skhash.utils._threads import n_threads

    if np.ndim(X) == 2 and np.shape(X)[0] == 0:
        # no item: no codes (a transform of an empty selection), after the
        # same checks of the codebooks and the width
        probe = np.zeros((1, np.shape(X)[1]))
        _, C, _, out_dtype = _check_encode_args(probe, codebooks, kind, None)
        return np.empty((0, C.shape[0]), dtype=out_dtype)
    X, codebooks, init_codes, out_dtype = _check_encode_args(
        X, codebooks, kind, init_codes
    )
    if kind == "additive" and codebooks.shape[0] == 1:
        # one codebook: the exhaustive nearest codeword, whatever the start
        # (given codes were returned unchanged: no ICM step with one codebook)
        init_codes = None
    n_jobs = n_threads(n_jobs)
    if device is not None and device != "cpu":
        if ils_iters > 0 and kind == "additive":
            raise ValueError(
                f"ils_iters={ils_iters} runs on the CPU only; pass device=None "
                "for the local search, or ils_iters=0 on the GPU."
            )
        return _encode_on_device(
            X, codebooks, kind, n_iter, init_codes, beam_width, out_dtype, device
        )
    if kind == "product":
        blocks = product_blocks(X.shape[1], codebooks.shape[0])
        return _encode.encode_product(X, codebooks, blocks, out_dtype, n_jobs=n_jobs)
    return _encode.encode_additive(
        X,
        codebooks,
        n_iter=n_iter,
        init_codes=init_codes,
        out_dtype=out_dtype,
        beam_width=1 if init_codes is not None else beam_width,
        ils_iters=ils_iters,
        n_jobs=n_jobs,
    )


def _encode_on_device(
    X, codebooks, kind, n_iter, init_codes, beam_width, out_dtype, device
):
    """:func:`encode` with torch on a CUDA ``device``."""
    if not str(device).startswith("cuda"):
        raise ValueError(
            f"device={device!r} is not supported by encode; pass None or 'cpu' "
            "(compiled CPU kernels) or a CUDA device such as 'cuda' or 'cuda:0'."
        )
    if beam_width > 1 and init_codes is None and kind == "additive":
        raise ValueError(
            f"beam_width={beam_width} runs on the CPU only; pass device=None "
            "for the beam search, or beam_width=1 on the GPU."
        )
    from skhash._base import resolve_device
    from skhash.quantization._encode_torch import encode_torch

    blocks = None
    if kind == "product":
        blocks = product_blocks(X.shape[1], codebooks.shape[0])
    return encode_torch(
        X,
        codebooks,
        kind=kind,
        n_iter=n_iter,
        init_codes=init_codes,
        out_dtype=out_dtype,
        device=resolve_device(device),
        blocks=blocks,
    )


#: The additive encoder's integer tables step by about the codewords' squared
#: norms / 32767, and it keeps their reciprocals: float32 data or codebooks
#: beyond this magnitude (or all below its inverse) are encoded in float64,
#: a tighter span than the squared distances' alone (1e18), where those
#: reciprocals overflow float32 (seen at 1e-18: the codes were right, through
#: the exact fallback, but with an overflow warning).
_ENCODE_SPAN = 1e15


def _check_encode_args(X, codebooks, kind, init_codes):
    """Validated ``(X, codebooks, init_codes, codes dtype)`` of :func:`encode`."""
    codebooks = _check_codebooks(codebooks)
    X = _check_X_distances(X, codebooks, span=_ENCODE_SPAN)
    _check_width(X, codebooks)
    n_codebooks, n_codewords, _ = codebooks.shape
    if kind == "product":
        if init_codes is not None:
            raise ValueError(
                'init_codes is only used with kind="additive"; the product '
                "encoding is exact. Leave init_codes=None."
            )
        _check_block_diagonal(codebooks)
    elif init_codes is not None:
        init_codes = _check_codes(init_codes, n_codebooks, n_codewords, "init_codes")
        if init_codes.shape[0] != X.shape[0]:
            raise ValueError(
                f"init_codes has {init_codes.shape[0]} rows but X has "
                f"{X.shape[0]}; pass one row of codes per item of X."
            )
    return X, codebooks, init_codes, _codes_dtype(n_codewords)


def _encode_numpy(X, codebooks, *, kind, n_iter=3, init_codes=None):
    """The numpy reference of :func:`encode` (vectorised over all items).

    Kept to check the compiled kernels and as the baseline of
    ``benchmarks/bench_encode.py``; same arguments as :func:`encode`.
    """
    X, codebooks, init_codes, out_dtype = _check_encode_args(
        X, codebooks, kind, init_codes
    )
    n_codebooks = codebooks.shape[0]
    if kind == "additive" and n_codebooks == 1:
        init_codes = None  # the exhaustive nearest codeword (see encode)
    n = X.shape[0]
    C = codebooks.astype(X.dtype, copy=False)
    sqnorms = np.einsum("mkd,mkd->mk", C, C)

    if kind == "product":
        codes = np.empty((n, n_codebooks), dtype=out_dtype)
        for m, block in enumerate(product_blocks(X.shape[1], n_codebooks)):
            Cb = C[m][:, block]
            codes[:, m] = _nearest(X[:, block], Cb, sqnorms[m])
        return codes

    if init_codes is not None:
        codes = init_codes.copy()
        recon = np.zeros_like(X)
        for m in range(n_codebooks):
            recon += C[m][codes[:, m]]
    else:
        # Greedy residual encoding.
        codes = np.empty((n, n_codebooks), dtype=np.intp)
        recon = np.zeros_like(X)
        for m in range(n_codebooks):
            codes[:, m] = _nearest(X - recon, C[m], sqnorms[m])
            recon += C[m][codes[:, m]]

    if n_codebooks > 1:
        for _ in range(n_iter):
            for m in range(n_codebooks):
                # Residual with codebook m left out.
                target = X - recon
                target += C[m][codes[:, m]]
                new = _nearest(target, C[m], sqnorms[m])
                recon = X - target
                recon += C[m][new]
                codes[:, m] = new
    return codes.astype(out_dtype)
