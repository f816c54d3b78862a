#!/usr/bin/env python3
"""Writes the PyTorch checkpoint fixtures in this directory with a real torch.

Needs torch >= 1.6 and numpy (Debian: apt-get install python3-torch; written
with torch 1.13). Run from this directory: python3 make_fixtures.py

Files:
  dtypes.bin            one tensor per dtype, a 0-dim and an empty tensor,
                        an nn.Parameter (torch._utils._rebuild_parameter)
  dtypes_p4.bin         the same with pickle_protocol=4 (FRAME, MEMOIZE,
                        SHORT_BINUNICODE)
  views.bin             views saved as-is: transposed, sliced with an offset,
                        strided, expanded (stride 0), sharing storages
  tiny-llama/pytorch_model.bin
                        OrderedDict state dict of a 2-layer Llama-like model
                        named like transformers, lm_head tied to embed_tokens
  sharded/              the same model in two shards plus
                        pytorch_model.bin.index.json
  legacy.bin            torch.save(..., _use_new_zipfile_serialization=False);
                        its storage keys are object ids, so it differs per run
  malicious_os.bin      a torch-shaped zip whose data.pkl is hand-written
                        opcodes calling os.system("touch MARKER")
  malicious_reduce.bin  same, pickled from a class whose __reduce__ returns
                        (os.system, ("touch MARKER",)): global posix.system
  golden.json           file -> tensor -> dtype, shape, stride, offset and
                        sha256 of t.contiguous() bytes as numpy gives them
                        (little-endian on the machines torch runs on)
"""
import collections
import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile

import torch

assert sys.byteorder == "little", "golden bytes must be little-endian"
torch.manual_seed(0)

DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: same bits as int16
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def golden_of(sd):
    out = {}
    for name, t in sd.items():
        out[name] = {
            "dtype": DTYPE[t.dtype],
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "storage_offset": t.storage_offset(),
            "sha256": hashlib.sha256(tensor_bytes(t)).hexdigest(),
        }
    return out


golden = {}


def save(path, sd, **kw):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save(sd, path, **kw)
    back = torch.load(path)
    for name, t in sd.items():  # torch reads back what we saved
        assert torch.equal(back[name], t), name
    golden[path] = golden_of(sd)


# dtypes.bin
dtypes = collections.OrderedDict()
dtypes["f32"] = torch.randn(2, 3)
dtypes["f16"] = torch.randn(4).half()
dtypes["bf16"] = torch.randn(3, 2).bfloat16()
dtypes["f64"] = torch.randn(2).double()
dtypes["i64"] = torch.tensor([-(2**62), -1, 0, 2**40], dtype=torch.int64)
dtypes["i32"] = torch.tensor([[-(2**31), 7], [2**31 - 1, 0]], dtype=torch.int32)
dtypes["i16"] = torch.tensor([-32768, 1, 32767], dtype=torch.int16)
dtypes["i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
dtypes["u8"] = torch.tensor([0, 1, 255], dtype=torch.uint8)
dtypes["bool"] = torch.tensor([True, False, True])
dtypes["scalar"] = torch.tensor(2.5)
dtypes["empty"] = torch.zeros(0, 3)
dtypes["param"] = torch.nn.Parameter(torch.randn(2, 2))
save("dtypes.bin", dtypes)
save("dtypes_p4.bin", dtypes, pickle_protocol=4)

# views.bin: tensors saved as views keep the whole storage; torch records
# the view's offset, size and stride.
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
half = torch.randn(3, 5).half()
views = collections.OrderedDict()
views["base"] = base
views["transposed"] = base.t()                 # stride (1, 6)
views["sliced"] = base[1:3, 2:5]               # offset 8, stride (6, 1)
views["row"] = base[2]                         # offset 12, contiguous
views["strided"] = base[:, 1::2]               # offset 1, stride (6, 2)
views["element"] = base[3, 4]                  # 0-dim, offset 22
views["half_t"] = half.t()[1:4]                # f16, offset 1, stride (1, 5)
views["expanded"] = torch.arange(3).expand(2, 3)  # i64, stride (0, 1)
views["permuted"] = torch.randn(2, 3, 4).permute(2, 0, 1)
save("views.bin", views)


# tiny-llama: an nn.Module named like transformers' LlamaForCausalLM
class Attn(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.q_proj = torch.nn.Linear(h, h, bias=False)
        self.k_proj = torch.nn.Linear(h, h // 2, bias=False)
        self.v_proj = torch.nn.Linear(h, h // 2, bias=False)
        self.o_proj = torch.nn.Linear(h, h, bias=False)


class MLP(torch.nn.Module):
    def __init__(self, h, i):
        super().__init__()
        self.gate_proj = torch.nn.Linear(h, i, bias=False)
        self.up_proj = torch.nn.Linear(h, i, bias=False)
        self.down_proj = torch.nn.Linear(i, h, bias=False)


class Layer(torch.nn.Module):
    def __init__(self, h, i):
        super().__init__()
        self.self_attn = Attn(h)
        self.mlp = MLP(h, i)
        self.input_layernorm = Norm(h)
        self.post_attention_layernorm = Norm(h)


class Norm(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(h))


class Inner(torch.nn.Module):
    def __init__(self, v, h, i, n):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(v, h)
        self.layers = torch.nn.ModuleList([Layer(h, i) for _ in range(n)])
        self.norm = Norm(h)


class TinyLlama(torch.nn.Module):
    def __init__(self, v=32, h=16, i=32, n=2):
        super().__init__()
        self.model = Inner(v, h, i, n)
        self.lm_head = torch.nn.Linear(h, v, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight  # tied


llama = TinyLlama().to(torch.float16)
sd = llama.state_dict()
assert type(sd) is collections.OrderedDict
assert sd["lm_head.weight"].data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
save("tiny-llama/pytorch_model.bin", sd)

# sharded: layer 1 and the head in shard 2, as transformers' shard_checkpoint
# splits by size; the index names every tensor's shard.
shards = [collections.OrderedDict(), collections.OrderedDict()]
for name, t in sd.items():
    shards[1 if name.startswith(("model.layers.1.", "model.norm", "lm_head")) else 0][name] = t
index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
         "weight_map": {}}
for k, shard in enumerate(shards):
    fname = "pytorch_model-%05d-of-%05d.bin" % (k + 1, len(shards))
    save(os.path.join("sharded", fname), shard)
    for name in shard:
        index["weight_map"][name] = fname
with open("sharded/pytorch_model.bin.index.json", "w") as f:
    json.dump(index, f, indent=2, sort_keys=True)
    f.write("\n")

# legacy.bin
torch.save(collections.OrderedDict(w=torch.ones(2)), "legacy.bin",
           _use_new_zipfile_serialization=False)


# malicious files: a real torch zip with data.pkl replaced.
def torch_zip_with_pickle(path, pkl):
    tmp = path + ".tmp"
    torch.save(collections.OrderedDict(w=torch.ones(2)), tmp)
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        prefix = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            data = src.read(info)
            if info.filename == prefix + "/data.pkl":
                data = pkl
            name = info.filename.replace(prefix, os.path.splitext(os.path.basename(path))[0], 1)
            dst.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    os.remove(tmp)


def proves_malicious(pkl):
    """Unpickles pkl with Python in a fresh temporary directory, which runs
    its "touch MARKER": the marker must appear there, so the fixture does
    what the Go test says our reader refuses to do."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"],
                       input=pkl, cwd=d, check=True)
        return os.path.exists(os.path.join(d, "MARKER"))


cmd = b"touch MARKER"
hand = (b"\x80\x02"                                   # PROTO 2
        b"cos\nsystem\n"                              # GLOBAL os.system
        b"X" + struct.pack("<I", len(cmd)) + cmd +    # BINUNICODE
        b"\x85"                                       # TUPLE1
        b"R"                                          # REDUCE: os.system(cmd)
        b".")                                         # STOP
assert proves_malicious(hand)
torch_zip_with_pickle("malicious_os.bin", hand)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch MARKER",))


reduced = pickle.dumps(collections.OrderedDict(w=Evil()), protocol=2)
assert proves_malicious(reduced)
torch_zip_with_pickle("malicious_reduce.bin", reduced)

with open("golden.json", "w") as f:
    json.dump(golden, f, indent=1, sort_keys=True)
    f.write("\n")
print("torch", torch.__version__, "wrote", ", ".join(sorted(golden)))
