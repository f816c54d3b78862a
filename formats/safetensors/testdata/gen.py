#!/usr/bin/env python3
"""Writes the hand-made safetensors test vectors in this directory.

Independent of the Go code: bytes come from Python's struct module, the
layout from the safetensors format description (u64 LE header length, JSON
header padded with spaces to a multiple of 8, data offsets relative to the
data section). Run from this directory: python3 gen.py
"""
import json, os, struct

def write(path, entries, meta, order=None):
    """entries: list of (name, dtype, shape, bytes) in data order."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, b in entries:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(b)]}
        data += b  # packed: no gap, nothing after the last (the format)
    if order:  # JSON key order differs from data order
        header = {k: header[k] for k in order}
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + data)

tiny = [
    ("scalar", "F32", [], struct.pack("<f", 42.0)),
    ("a.f32", "F32", [2, 3], struct.pack("<6f", 1, -2, 0.5, 3.25, -0.0, 1e-3)),
    ("b.f16", "F16", [4], struct.pack("<4e", 1, -2, 0.1, 65504)),
    ("c.bf16", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC049)),
    ("d.i32", "I32", [3], struct.pack("<3i", 1, -1, 2147483647)),
    ("e.i8", "I8", [2], struct.pack("<2b", -128, 127)),
    ("empty", "F32", [0, 4], b""),
    ("f.u8", "U8", [2, 2], bytes([0, 1, 254, 255])),
    ("g.fp8", "F8_E4M3", [3], bytes([0x38, 0xB8, 0x00])),
]
order = sorted(e[0] for e in tiny)
order.insert(3, "__metadata__")
write("tiny.safetensors", tiny, {"format": "pt", "note": "hand-made"}, order=order)

os.makedirs("sharded", exist_ok=True)
s1 = [("model.embed_tokens.weight", "F16", [3, 2], struct.pack("<6e", 1, 2, 3, 4, 5, 6)),
      ("model.norm.weight", "F16", [2], struct.pack("<2e", 0.5, -0.5))]
s2 = [("lm_head.weight", "BF16", [3, 2], struct.pack("<6H", 0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0))]
write("sharded/model-00001-of-00002.safetensors", s1, {"format": "pt"})
write("sharded/model-00002-of-00002.safetensors", s2, {"format": "pt"})
wm = {n: "model-00001-of-00002.safetensors" for n, *_ in s1}
wm.update({n: "model-00002-of-00002.safetensors" for n, *_ in s2})
total = sum(len(e[3]) for e in s1 + s2)
with open("sharded/model.safetensors.index.json", "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
