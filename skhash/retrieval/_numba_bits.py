"""Bit intrinsics of the compiled search kernels (numba): popcount, trailing
zeros and a prefetch hint, each one LLVM instruction."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = []


@intrinsic
def _popcount(typingctx, x):
    """Number of set bits of an unsigned integer (``llvm.ctpop``).

    Returns a signed integer of the same width, so sums stay integers (an
    ``int64 + uint64`` is a float in numba). LLVM vectorises it, with
    ``vpopcntq`` where the CPU has AVX-512 VPOPCNTDQ.
    """
    if not isinstance(x, types.Integer):
        return None
    ret = types.int64 if x.bitwidth == 64 else types.int32

    def codegen(context, builder, signature, args):
        val = builder.ctpop(args[0])
        if x.bitwidth < ret.bitwidth:
            val = builder.zext(val, context.get_value_type(ret))
        return val

    return ret(x), codegen


@intrinsic
def _trailing_zeros(typingctx, x):
    """Index of the lowest set bit of a non-zero uint64 (``llvm.cttz``)."""
    if not (isinstance(x, types.Integer) and x.bitwidth == 64):
        return None

    def codegen(context, builder, signature, args):
        flag = context.get_constant(types.boolean, True)
        return builder.cttz(args[0], flag)

    return types.int64(x), codegen


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch ``arr.flat[idx]`` into the cache (``llvm.prefetch``)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(
            context, builder, signature.args[0], ary, [args[1]], wraparound=False
        )
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, high temporal locality, data cache
        flags = [ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)]
        builder.call(fn, [builder.bitcast(ptr, i8p)] + flags)
        return context.get_dummy_value()

    return types.none(arr, idx), codegen
