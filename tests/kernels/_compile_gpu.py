"""Compile every Triton kernel for an sm_90 GPU without one (Triton's compiler and ptxas run on the
CPU) and print, as JSON, the float operations of the fused kernel's PTX.

Run in a process without TRITON_INTERPRET (``python -m tests.kernels._compile_gpu``): it catches what
Triton's interpreter lets through but the compiler rejects, and checks that ``x * m + r`` is not
contracted into a fused multiply-add.
"""

from __future__ import annotations

import json
import re

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from dropkit.kernels import gpu as G

TARGET = GPUTarget("cuda", 90, 32)
# storage type of each dtype (bfloat16 travels as int16) and of its multiplier's bits
DTYPES = {
    "fp32": ("*fp32", "i32"),
    "fp64": ("*fp64", "i64"),
    "fp16": ("*fp16", "i32"),
    "bf16": ("*i16", "i32"),
}


def _compile(kernel, types: dict[str, str], constexprs: dict[str, object], **options) -> str:
    names = kernel.arg_names
    signature = {name: types.get(name, "constexpr") for name in names}
    consts = {(names.index(k),): v for k, v in constexprs.items()}
    src = ASTSource(fn=kernel, signature=signature, constexprs=consts)
    return triton.compile(src, target=TARGET, options=options).asm["ptx"]


def main() -> None:
    fused_ops = {}
    for name, (ptr, sbits) in DTYPES.items():
        flags = {"BF16": name == "bf16", "F64": name == "fp64"}
        scalars = {"bits_ptr": "*u8", "seed_ptr": "*i64", "n": "i32", "t": "u32", "s_bits": sbits}
        io = {k: ptr for k in ("x_ptr", "out_ptr", "bias_ptr", "res_ptr", "g_ptr", "gin_ptr")}
        types = {**io, **scalars, "h": "i32"}
        _compile(G._dropout_fwd, types, {"SAVE_BITS": True, **flags})
        _compile(G._dropout_bwd_bits, types, flags)
        ptx = _compile(
            G._residual_fwd,
            types,
            {"SAVE_BITS": True, "HAS_BIAS": True, "HALF": name == "fp16", **flags},
            enable_fp_fusion=False,
        )
        fused_ops[name] = sorted(
            set(re.findall(r"\b((?:fma|mad)\.[\w.]*f(?:16|32|64)x?\d*)\b", ptx))
        )
    _compile(G._keep_mask, {"keep_ptr": "*u8", "seed_ptr": "*i64", "n": "i32", "t": "u32"}, {})
    for tl_philox in (False, True):
        types = {"ctr_ptr": "*i64", "key_ptr": "*i64", "out_ptr": "*i64", "m": "i32"}
        _compile(G._philox_many, types, {"BLOCK_M": 64, "TL_PHILOX": tl_philox})
    print(json.dumps({"fused_multiply_adds": fused_ops}))


if __name__ == "__main__":
    main()
