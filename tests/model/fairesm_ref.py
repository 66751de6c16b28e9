# SPDX-License-Identifier: Apache-2.0
# fairesm_ref.py - helpers for the peer tests: read a safetensors file into
# torch tensors and build Meta's fair-esm ESM2 module with those weights.
# No numpy here: the venv's numpy may be a version torch 1.13 cannot bridge.
import json
import struct

import torch

_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def read_safetensors(path):
    """Return {name: torch tensor} (8-byte header length, JSON header, raw
    little-endian data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = bytearray(raw[base + a:base + b])
        t = torch.frombuffer(buf, dtype=_DT[info["dtype"]]) if buf else torch.empty(0, dtype=_DT[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def read_f32(path, cols=None):
    """A raw little-endian float32 file as a torch tensor ([-1, cols] if given)."""
    with open(path, "rb") as f:
        t = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).clone()
    return t.reshape(-1, cols) if cols else t


def hf_to_fairesm(hf):
    """Map Hugging Face ESM names to fair-esm ESM2 state-dict names (esm2.md 4.2)."""
    sd = {}
    per_layer = {
        "attention.LayerNorm": "self_attn_layer_norm",
        "attention.self.query": "self_attn.q_proj",
        "attention.self.key": "self_attn.k_proj",
        "attention.self.value": "self_attn.v_proj",
        "attention.output.dense": "self_attn.out_proj",
        "LayerNorm": "final_layer_norm",
        "intermediate.dense": "fc1",
        "output.dense": "fc2",
    }
    for name, arr in hf.items():
        if name.startswith("esm.encoder.layer."):
            rest = name[len("esm.encoder.layer."):]
            idx, sub = rest.split(".", 1)
            if sub == "attention.self.rotary_embeddings.inv_freq":
                sd[f"layers.{idx}.self_attn.rot_emb.inv_freq"] = arr
                continue
            mod, kind = sub.rsplit(".", 1)
            sd[f"layers.{idx}.{per_layer[mod]}.{kind}"] = arr
        elif name == "esm.embeddings.word_embeddings.weight":
            sd["embed_tokens.weight"] = arr
            sd.setdefault("lm_head.weight", arr)
        elif name.startswith("esm.encoder.emb_layer_norm_after."):
            sd["emb_layer_norm_after." + name.rsplit(".", 1)[1]] = arr
        elif name == "lm_head.decoder.weight":
            sd["lm_head.weight"] = arr
        elif name in ("lm_head.bias",) or name.startswith("lm_head.dense.") or name.startswith("lm_head.layer_norm."):
            sd[name] = arr
        elif name.startswith("esm.contact_head.regression."):
            sd["contact_head.regression." + name.rsplit(".", 1)[1]] = arr
    return sd


def build_fairesm(path):
    """fair-esm ESM2 with the checkpoint's weights, eval mode, fp32."""
    import esm
    import torch

    hf = read_safetensors(path)
    sd = hf_to_fairesm(hf)
    L = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("layers."))
    D = sd["embed_tokens.weight"].shape[1]
    hd = 2 * sd["layers.0.self_attn.rot_emb.inv_freq"].shape[0]
    model = esm.model.esm2.ESM2(num_layers=L, embed_dim=D, attention_heads=D // hd,
                                alphabet=esm.data.Alphabet.from_architecture("ESM-1b"),
                                token_dropout=True)
    tsd = {k: v.float() for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(tsd, strict=False)
    missing = [k for k in missing if not k.startswith("contact_head")]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model, L, D


M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def mask_positions(seed, index, n_res, frac=0.15):
    """The masking rule of `proteus score --help`, written independently:
    the residues (0-based) of record `index` that are masked."""
    us = [(splitmix64(splitmix64(splitmix64(seed) ^ index) ^ i) >> 11) / float(1 << 53) for i in range(n_res)]
    pos = [i for i, u in enumerate(us) if u < frac]
    return pos or [min(range(n_res), key=lambda i: us[i])]
