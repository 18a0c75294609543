"""Ordered products behind the look-up tables: one summation order, so the
same bits from the compiled kernel and the numpy reference, for any batch;
and the encoders' wide kernel, the same order by fused multiply-adds."""

import platform

import numpy as np
import pytest
from llvmlite import binding
from numba import njit

from skhash.quantization import _products_kernel as PK
from skhash.quantization import lookup_tables
from skhash.quantization._products import WIDTH, ordered_products, tile_rows
from skhash.quantization._products_kernel import products_kernel
from skhash.utils._numba_stack import _WIDE, wide_vectors


def _sequential(A, B):
    """Each entry summed over the dimensions in order, by hand."""
    out = np.zeros((A.shape[0], B.shape[0]), dtype=A.dtype)
    for j in range(A.shape[1]):
        out += A[:, j, None] * B[None, :, j]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n,d,k", [(1, 1, 1), (3, 5, 7), (9, 64, 2048), (17, 33, WIDTH + 1), (8, 16, 64)]
)
def test_kernel_and_reference_are_the_same_bits(dtype, n, d, k):
    rng = np.random.RandomState(n * 100 + k)
    # mixed scales, so that a different order would round differently
    A = (rng.randn(n, d) * 10.0 ** rng.randint(-3, 4, (1, d))).astype(dtype)
    B = rng.randn(k, d).astype(dtype)
    tiles = tile_rows(B, dtype)
    ref = ordered_products(A, tiles, k, compiled=False)
    full = np.empty((n, tiles.shape[0] * WIDTH), dtype=dtype)
    products_kernel(A, tiles, full)
    np.testing.assert_array_equal(full[:, :k], ref)
    np.testing.assert_array_equal(ref, _sequential(A, B))
    assert ref.dtype == dtype and ref.shape == (n, k)


def test_a_row_is_the_same_bits_in_any_batch():
    rng = np.random.RandomState(0)
    A = rng.randn(50, 64).astype(np.float32)
    C = rng.randn(8, 256, 64).astype(np.float32)
    whole = lookup_tables(A, C, metric="ip")
    for start, stop in ((0, 1), (3, 4), (7, 30), (49, 50), (0, 13)):
        np.testing.assert_array_equal(
            lookup_tables(A[start:stop], C, metric="ip"), whole[start:stop]
        )


def test_empty_and_dtype_mismatch():
    tiles = tile_rows(np.ones((3, 4)), np.float32)
    assert ordered_products(np.ones((0, 4), np.float32), tiles, 3).shape == (0, 3)
    with pytest.raises(TypeError, match="float64"):
        ordered_products(np.ones((2, 4)), tiles, 3)


def _host_features():
    binding.initialize_native_target()
    return set(binding.get_host_cpu_features().flatten().split(","))


def _x86():
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _host_fuses():
    """Whether the host has fused multiply-add instructions, so that LLVM
    contracts the kernel's multiply-adds: an x86 feature, part of the base
    instruction set of 64-bit ARM, POWER and z."""
    if _x86():
        return "+fma" in _host_features()
    return platform.machine().lower() in ("aarch64", "arm64", "ppc64le", "s390x")


def _fma_chain32(A, B):
    """float32 entries as one chain of fused multiply-adds over the
    dimensions in order: ``round32(a b + s)`` (the product is exact in
    float64, and the float64 sum of it and ``s`` rounds to the same float32
    unless it lands on a float32 midpoint, which these data never do)."""
    out = np.zeros((A.shape[0], B.shape[0]), dtype=np.float32)
    for j in range(A.shape[1]):
        prod = A[:, j, None].astype(np.float64) * B[None, :, j].astype(np.float64)
        out = (prod + out.astype(np.float64)).astype(np.float32)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_products_kernel_fused_chains_and_wide_vectors(dtype):
    # the encoder's products: one chain of fused multiply-adds per entry,
    # over the dimensions in order (where the CPU has FMA: else the search
    # kernel's bits), whatever the batch; their own LLVM functions carry the
    # 512-bit preference (LLVM picks 256-bit vectors on Intel cores with
    # AVX-512 otherwise), and with AVX-512 their loops use it; the search's
    # kernel keeps the default width and separate multiplies and adds
    rng = np.random.RandomState(3)
    A = (rng.randn(13, 33) * 10.0 ** rng.randint(-3, 4, (1, 33))).astype(dtype)
    B = rng.randn(3 * WIDTH, 33)
    tiles = tile_rows(B, dtype)
    out, ref = (np.empty((13, 3 * WIDTH), dtype) for _ in range(2))
    PK.wide_products_kernel(A, tiles, out)
    products_kernel(A, tiles, ref)
    host = _host_features()
    if _host_fuses():
        assert (out != ref).any()  # the rounding differs: fused
        if dtype == np.float32:
            np.testing.assert_array_equal(out, _fma_chain32(A, B.astype(dtype)))
    else:
        np.testing.assert_array_equal(out, ref)
    # within the bound of an in-order chain of d steps either way
    exact = A.astype(np.longdouble) @ B.astype(dtype).T.astype(np.longdouble)
    bound = 33 * np.finfo(dtype).eps * (np.abs(A) @ np.abs(B.astype(dtype)).T)
    assert (np.abs(out - exact) <= bound).all()
    # a row's entries do not depend on the others in the call
    for rows in (slice(0, 1), slice(5, 9), slice(12, 13)):
        part = np.empty((rows.stop - rows.start, 3 * WIDTH), dtype)
        PK.wide_products_kernel(np.ascontiguousarray(A[rows]), tiles, part)
        np.testing.assert_array_equal(part, out[rows])
    plain = PK._products4 if dtype == np.float32 else PK._products2
    for kernel, marked, fused in (
        (PK.wide_products_kernel, True, True),
        (plain, False, False),
        (products_kernel, False, False),
    ):
        # compiled afresh, with the kernel's own fastmath flags: a kernel
        # loaded from numba's cache has no IR
        flags = {k: v for k, v in kernel.targetoptions.items() if k == "fastmath"}
        fresh = njit(nogil=True, boundscheck=False, **flags)(kernel.py_func)
        fresh(A, tiles, out)
        assert (_WIDE in fresh.inspect_llvm(fresh.signatures[0])) == marked
        asm = fresh.inspect_asm(fresh.signatures[0])
        if "+avx512f" in host and marked:
            assert "zmm" in asm
        if _x86() and _host_fuses():
            assert ("vfmadd" in asm) == fused


def test_wide_vectors_marks_only_its_kernel():
    # a kernel without the call keeps the target's default
    @njit
    def marked(x):
        wide_vectors()
        return x + 1

    @njit
    def plain(x):
        return x + 1

    assert marked(1) == plain(1) == 2
    assert _WIDE in marked.inspect_llvm(marked.signatures[0])
    assert _WIDE not in plain.inspect_llvm(plain.signatures[0])
