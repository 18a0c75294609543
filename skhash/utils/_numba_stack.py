"""Code-generation helpers for numba kernels: a stack buffer (accumulators
the compiler can keep in registers) and the vector width of a kernel's
loops. Imported only by compiled kernels (it imports numba)."""

from __future__ import annotations

from numba import types
from numba.core import cgutils, errors
from numba.extending import intrinsic

__all__ = []  # private helper of the compiled kernels


@intrinsic
def stack_buffer(typingctx, like, n):
    """A pointer to ``n`` elements of ``like``'s dtype on the kernel's stack;
    ``n`` must be a compile-time constant (a literal or a module constant).
    View it with ``numba.carray(stack_buffer(like, n), (n,))``.

    Why: the compiler knows that a stack buffer aliases none of the arrays
    a loop reads, so it can keep a small accumulator in vector registers
    across the loop and store it once, where it must load and store a heap
    array's entries at every iteration (measured on the 2,048 x 64 float32
    query-codeword products: 5.2-7.0 against 9.5-15 us per query, one
    thread, the same bits)."""
    if not isinstance(n, types.IntegerLiteral):
        raise errors.TypingError(
            f"stack_buffer needs a compile-time constant size; got {n}."
        )
    size = n.literal_value
    dtype = like.dtype

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(dtype), size=size)

    return types.CPointer(dtype)(like, n), codegen


#: The function attribute of :func:`wide_vectors` (LLVM's per-function
#: override of the target's preferred vector width).
_WIDE = '"prefer-vector-width"="512"'


@intrinsic
def wide_vectors(typingctx):
    """Let the calling kernel's loops use 512-bit vectors where the CPU has
    them; call it first in the kernel (``wide_vectors()``). No effect on a
    CPU without AVX-512, and none on the results of loops compiled without
    ``fastmath``: they do the same operations on the same lanes, only more
    lanes per instruction (a reassociated sum may add in another order).

    Why: LLVM tunes for 256-bit vectors on Intel cores that have AVX-512
    (a 512-bit instruction used to lower the clock), so numba's loops there
    use half the width of the vector registers and units. On an Intel Xeon
    with AVX-512 (2026) the encoder's products kernel made 33-37 GMAC/s with
    256-bit vectors and 53 with 512 (OpenBLAS's sgemm, which picks 512-bit
    kernels itself: 53-58), the same bits. The attribute is set on the
    kernel's own LLVM function (numba offers no option for it), so other
    numba code in the process keeps its defaults; a kernel that the caller
    inlines takes the caller's attribute, so callers that inline a marked
    kernel are marked too.
    """

    def codegen(context, builder, signature, args):
        # llvmlite checks function attributes against a list of flags; a
        # key="value" attribute is written into the IR as it stands
        set.add(builder.function.attributes, _WIDE)
        return context.get_dummy_value()

    return types.none(), codegen
