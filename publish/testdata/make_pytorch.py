#!/usr/bin/python3
"""Writes the PyTorch checkpoints the convert tests read, with a real torch
(Debian's python3-torch 1.13: `apt-get install python3-torch`, then run
`/usr/bin/python3 publish/testdata/make_pytorch.py` from the repository root;
CI does not need torch, the files are committed).

- stories-bin/: stories260K (../shared/fixtures/models/stories260K-hf-mistral)
  as transformers' save_pretrained(safe_serialization=False) lays it out:
  config.json, pytorch_model.bin (torch >= 1.6 zip format), the tokenizer files.
- stories-sharded/: the same in two shards with pytorch_model.bin.index.json.
- tied/: a small random Llama with tie_word_embeddings true whose lm_head.weight
  shares the embedding's storage, as torch.save writes tied weights.
"""
import collections, json, os, shutil, struct
import numpy as np
import torch

SRC = "../shared/fixtures/models/stories260K-hf-mistral"
OUT = "publish/testdata"


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = collections.OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        a = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


def copy_files(dst, names):
    os.makedirs(dst, exist_ok=True)
    for n in names:
        shutil.copy(os.path.join(SRC, n), os.path.join(dst, n))


sd = read_safetensors(os.path.join(SRC, "model.safetensors"))
files = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]

d = os.path.join(OUT, "stories-bin")
copy_files(d, files)
torch.save(sd, os.path.join(d, "pytorch_model.bin"))

d = os.path.join(OUT, "stories-sharded")
copy_files(d, files)
names = list(sd)
half = len(names) // 2
weight_map, total = {}, 0
for i, part in enumerate([names[:half], names[half:]]):
    fname = "pytorch_model-%05d-of-00002.bin" % (i + 1)
    torch.save(collections.OrderedDict((n, sd[n]) for n in part), os.path.join(d, fname))
    for n in part:
        weight_map[n] = fname
        total += sd[n].numel() * 4
with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

# A tied model: lm_head.weight is the embedding's storage.
torch.manual_seed(0)
cfg = json.load(open(os.path.join(SRC, "config.json")))
cfg.update({"num_hidden_layers": 1, "tie_word_embeddings": True, "torch_dtype": "float16"})
d = os.path.join(OUT, "tied")
os.makedirs(d, exist_ok=True)
json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
emb = (torch.randn(v, h) * 0.02).half()
tied = collections.OrderedDict()
tied["model.embed_tokens.weight"] = emb
p = "model.layers.0."
for name, shape in [("input_layernorm.weight", (h,)), ("self_attn.q_proj.weight", (q, h)), ("self_attn.k_proj.weight", (kv, h)),
                    ("self_attn.v_proj.weight", (kv, h)), ("self_attn.o_proj.weight", (h, q)), ("post_attention_layernorm.weight", (h,)),
                    ("mlp.gate_proj.weight", (i, h)), ("mlp.up_proj.weight", (i, h)), ("mlp.down_proj.weight", (h, i))]:
    tied[p + name] = (torch.randn(*shape) * 0.05).half() if len(shape) == 2 else torch.ones(shape, dtype=torch.float16)
tied["model.norm.weight"] = torch.ones(h, dtype=torch.float16)
tied["lm_head.weight"] = emb  # the same storage, as tied parameters are saved
torch.save(tied, os.path.join(d, "pytorch_model.bin"))
back = torch.load(os.path.join(d, "pytorch_model.bin"))
assert back["lm_head.weight"].data_ptr() == back["model.embed_tokens.weight"].data_ptr()
print("wrote", OUT)
