"""yarn_freqs.py writes yarn_freqs.json, the YaRN inverse-frequency tables
TestRoPEFreqsYarn checks runtime.RoPEFreqs against.

Written from the YaRN paper (arXiv 2309.00071, section 3.2 "NTK-by-parts"
with the ramp between the correction dimensions) and transformers'
_compute_yarn_parameters as its docstring and config keys describe it,
in plain Python floats (float64), each entry rounded to float32 once.
No numpy or torch: run `python3 yarn_freqs.py > yarn_freqs.json`.
"""
import json
import math
import struct

CASES = [
    # name, head_dim, rope_theta, factor, original_max_position_embeddings,
    # beta_fast, beta_slow, truncate
    ("qwen2.5-7b", 128, 1e6, 4.0, 32768, 32.0, 1.0, True),
    ("gpt-oss", 64, 150000.0, 32.0, 4096, 32.0, 1.0, False),
    ("deepseek-v2-rope", 64, 10000.0, 40.0, 4096, 32.0, 1.0, True),
    ("tiny", 8, 10000.0, 8.0, 64, 2.0, 1.0, True),
]


def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def table(head_dim, theta, factor, orig, beta_fast, beta_slow, truncate):
    # The dimension index (of head_dim) whose frequency turns `rot` times
    # over the original context: theta^(-d/head_dim)·orig = 2π·rot.
    def dim_of(rot):
        return head_dim * math.log(orig / (2 * math.pi * rot)) / (2 * math.log(theta))

    lo, hi = dim_of(beta_fast), dim_of(beta_slow)
    if truncate:
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, head_dim - 1)
    if lo == hi:
        hi += 0.001
    out = []
    for j in range(head_dim // 2):
        extrap = theta ** (-2.0 * j / head_dim)
        interp = extrap / factor
        ramp = min(max((j - lo) / (hi - lo), 0.0), 1.0)  # 0: extrapolate, 1: interpolate
        out.append(f32bits(interp * ramp + extrap * (1 - ramp)))
    return {"low": lo, "high": hi, "bits": out}


doc = []
for name, hd, theta, factor, orig, bf, bs, trunc in CASES:
    t = table(hd, theta, factor, orig, bf, bs, trunc)
    t.update(name=name, head_dim=hd, rope_theta=theta, factor=factor,
             original_max_position_embeddings=orig, beta_fast=bf, beta_slow=bs, truncate=trunc)
    doc.append(t)
print(json.dumps(doc, indent=1))
