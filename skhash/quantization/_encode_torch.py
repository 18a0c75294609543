"""Code assignment in torch, for embeddings produced on a GPU.

The same searches as :mod:`skhash.quantization._encode` (exact product
assignment; greedy residual start then ICM sweeps for additive codes, from
the codeword Gram tables when they fit), vectorised over a chunk of items
instead of looping over them, so that they run on the learner's CUDA device.
torch is imported only when these functions run.

On a GPU the float32 sums run in another order than on the CPU, so an item
whose two best codewords are within rounding of each other can get the other
one; the reconstruction error is the same up to rounding.
"""

from __future__ import annotations

import numpy as np

__all__ = ["encode_torch"]

# Items per chunk: ``None`` sizes chunks by ``_CHUNK_BYTES`` (an int fixes it).
_CHUNK = None
# Bytes of one chunk's (chunk, M, K) float32 temporaries, three of which live
# at once in the ICM (scores, cross-term sums, the gathered table rows). Large
# chunks keep a GPU busy: on an H200, 8 x 256 codebooks, 10**6 items took
# 1.39 µs/item in chunks of 4,096 and 0.45 in chunks of 65,536
# (benchmarks/bench_gpu.py). A quarter of the device's free memory caps it.
_CHUNK_BYTES = 1 << 31


def chunk_items(M, K, device):
    """Items per chunk of :func:`encode_torch` for ``M x K`` codebooks."""
    if _CHUNK is not None:
        return int(_CHUNK)
    budget = _CHUNK_BYTES
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        budget = min(budget, free // 4)
    return int(max(1024, min(1 << 20, budget // (12 * M * K))))


def encode_torch(
    X, codebooks, *, kind, n_iter, init_codes, out_dtype, device, blocks=None
):
    """Codes of ``X`` computed with torch on ``device``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Validated items (computed in float32).
    codebooks : ndarray of shape (M, K, d), float32
        Validated codebooks.
    kind : {"additive", "product"}
        Kind of the codebooks.
    n_iter : int
        ICM sweeps (additive).
    init_codes : ndarray of shape (n, M) or None
        Validated starting codes (additive).
    out_dtype : dtype
        Dtype of the codes.
    device : str or torch.device
        Where to compute.
    blocks : list of ndarray, default=None
        ``product_blocks(d, M)`` (product kind).

    Returns
    -------
    codes : ndarray of shape (n, M)
    """
    import torch

    from skhash.quantization._encode_kernels import _TABLE_BYTES, table_bytes

    M, K, d = codebooks.shape
    n = X.shape[0]
    out = np.empty((n, M), dtype=out_dtype)
    with torch.no_grad():
        C = _tensor(codebooks, np.float32, device)
        flat = C.reshape(M * K, d)
        sq = (flat * flat).sum(1).reshape(M, K)
        tables = kind == "additive" and table_bytes(M, K) <= _TABLE_BYTES
        if tables:
            T2 = (2.0 * (flat @ flat.T)).reshape(M, K, M, K)
            off = torch.ones(M, M, 1, device=device)
            off[torch.arange(M), torch.arange(M)] = 0.0  # row l == m left out
        rows = chunk_items(M, K, device)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            xb = _tensor(X[s:e], np.float32, device)
            init = None
            if init_codes is not None:
                init = _tensor(init_codes[s:e], np.int64, device)
            if kind == "product":
                codes = _product(xb, C, sq, blocks)
            elif tables:
                codes = _icm_tables(xb, flat, sq, T2, off, init, n_iter)
            else:
                codes = _icm_direct(xb, C, sq, init, n_iter)
            out[s:e] = codes.cpu().numpy()
    return out


def _tensor(a, dtype, device):
    """``a`` as a tensor on ``device``; the tensor is only read. torch warns
    on read-only arrays (a CodeSet's embeddings, say), so those are copied."""
    import torch

    a = np.ascontiguousarray(a, dtype=dtype)
    if not a.flags.writeable:
        a = a.copy()
    return torch.as_tensor(a, device=device)


def _product(xb, C, sq, blocks):
    import torch

    codes = torch.empty(xb.shape[0], C.shape[0], dtype=torch.int64, device=xb.device)
    for m, block in enumerate(blocks):
        lo, hi = int(block[0]), int(block[-1]) + 1
        dist = sq[m] - 2.0 * (xb[:, lo:hi] @ C[m, :, lo:hi].T)
        codes[:, m] = torch.argmin(dist, dim=1)
    return codes


def _icm_tables(xb, flat, sq, T2, off, init, n_iter):
    """Greedy then ICM over a chunk, with ``A[i, m, k] = sq[m, k] +
    Σ_{l≠m} T2[l, c_il, m, k]`` as in the numba kernel."""
    import torch

    M, K = sq.shape
    B = xb.shape[0]
    U = (-2.0 * (xb @ flat.T)).reshape(B, M, K)
    A = sq.expand(B, M, K).clone()
    if init is not None:
        codes = init.clone()
        for m in range(M):
            A += T2[m, codes[:, m]] * off[m]
    else:
        codes = torch.empty(B, M, dtype=torch.int64, device=xb.device)
        for m in range(M):
            best = torch.argmin(U[:, m] + A[:, m], dim=1)
            codes[:, m] = best
            A += T2[m, best] * off[m]
    if M == 1:
        return codes
    for _ in range(n_iter):
        any_change = False
        for m in range(M):
            best = torch.argmin(U[:, m] + A[:, m], dim=1)
            cur = codes[:, m]
            changed = best != cur
            if bool(changed.any()):
                any_change = True
                rows = torch.nonzero(changed).squeeze(1)
                A[rows] += (T2[m, best[rows]] - T2[m, cur[rows]]) * off[m]
                codes[rows, m] = best[rows]
        if not any_change:
            break
    return codes


def _icm_direct(xb, C, sq, init, n_iter):
    """Greedy then ICM on the residual (codebooks too large for the tables)."""
    import torch

    M = C.shape[0]
    B = xb.shape[0]
    if init is not None:
        codes = init.clone()
        r = xb - sum(C[m][codes[:, m]] for m in range(M))
    else:
        codes = torch.empty(B, M, dtype=torch.int64, device=xb.device)
        r = xb.clone()
        for m in range(M):
            best = torch.argmin(sq[m] - 2.0 * (r @ C[m].T), dim=1)
            codes[:, m] = best
            r -= C[m][best]
    if M == 1:
        return codes
    for _ in range(n_iter):
        any_change = False
        for m in range(M):
            t = r + C[m][codes[:, m]]
            best = torch.argmin(sq[m] - 2.0 * (t @ C[m].T), dim=1)
            any_change = any_change or bool((best != codes[:, m]).any())
            codes[:, m] = best
            r = t - C[m][best]
        if not any_change:
            break
    return codes


def learner_device(device):
    """The ``device=`` for :func:`~skhash.quantization.encode` of a learner
    whose network lives on ``device``: that CUDA device when it is one and
    CUDA is available here (a learner trained on a GPU and loaded on a CPU
    machine encodes on the CPU), else None (the compiled CPU kernels)."""
    if device is None or not str(device).startswith("cuda"):
        return None
    import torch

    return str(device) if torch.cuda.is_available() else None
