# SPDX-License-Identifier: Apache-2.0
"""write_pt_seeds.py - write fuzz_pt's seeds (tests/fuzz/corpus/pt) with
torch.save: small checkpoints of a one-layer ESM-2 of embedding width 8, in
the forms the PyTorch reader takes.

  fairesm_zip.pt      fair-esm's layout {"model": ..., "args": Namespace,
                      "cfg": {...}} with encoder.sentence_encoder. names, the
                      LM head's weight tied to the embedding (one storage),
                      float32, zip format
  hf_legacy.pt        a Hugging Face state dict in float16, torch.save's
                      legacy (non-zip) format
  hf_bf16_views.pt    a Hugging Face state dict in bfloat16 whose tensors are
                      views at offsets of two shared storages, a 0-d tensor
                      and int64 position_ids, zip format

usage: .venv/bin/python tests/fuzz/write_pt_seeds.py tests/fuzz/corpus/pt"""
import argparse
import os
import sys

import torch

D, FFN, VOCAB = 8, 16, 33


def fair_esm_layer(g):
    sd = {}
    for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
        sd[f"layers.0.self_attn.{p}.weight"] = torch.randn(D, D, generator=g)
        sd[f"layers.0.self_attn.{p}.bias"] = torch.randn(D, generator=g)
    for ln in ("self_attn_layer_norm", "final_layer_norm"):
        sd[f"layers.0.{ln}.weight"] = torch.ones(D)
        sd[f"layers.0.{ln}.bias"] = torch.zeros(D)
    sd["layers.0.fc1.weight"] = torch.randn(FFN, D, generator=g)
    sd["layers.0.fc1.bias"] = torch.randn(FFN, generator=g)
    sd["layers.0.fc2.weight"] = torch.randn(D, FFN, generator=g)
    sd["layers.0.fc2.bias"] = torch.randn(D, generator=g)
    sd["layers.0.self_attn.rot_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, D // 2, 2).float() / (D // 2)))
    return sd


def fair_esm(g):
    emb = torch.randn(VOCAB, D, generator=g)
    sd = {"embed_tokens.weight": emb, **fair_esm_layer(g),
          "emb_layer_norm_after.weight": torch.ones(D), "emb_layer_norm_after.bias": torch.zeros(D),
          "lm_head.dense.weight": torch.randn(D, D, generator=g), "lm_head.dense.bias": torch.zeros(D),
          "lm_head.layer_norm.weight": torch.ones(D), "lm_head.layer_norm.bias": torch.zeros(D),
          "lm_head.weight": emb, "lm_head.bias": torch.zeros(VOCAB),
          "contact_head.regression.weight": torch.randn(1, 2, generator=g),
          "contact_head.regression.bias": torch.zeros(1)}
    return {"encoder.sentence_encoder." + k if not k.startswith("lm_head") and not k.startswith("contact")
            else "encoder." + k: v for k, v in sd.items()}


def hf(g, dtype):
    p = "esm.encoder.layer.0."
    sd = {"esm.embeddings.word_embeddings.weight": torch.randn(VOCAB, D, generator=g)}
    for n in ("query", "key", "value"):
        sd[p + f"attention.self.{n}.weight"] = torch.randn(D, D, generator=g)
        sd[p + f"attention.self.{n}.bias"] = torch.randn(D, generator=g)
    sd[p + "attention.output.dense.weight"] = torch.randn(D, D, generator=g)
    sd[p + "attention.output.dense.bias"] = torch.randn(D, generator=g)
    sd[p + "attention.LayerNorm.weight"] = torch.ones(D)
    sd[p + "attention.LayerNorm.bias"] = torch.zeros(D)
    sd[p + "intermediate.dense.weight"] = torch.randn(FFN, D, generator=g)
    sd[p + "intermediate.dense.bias"] = torch.randn(FFN, generator=g)
    sd[p + "output.dense.weight"] = torch.randn(D, FFN, generator=g)
    sd[p + "output.dense.bias"] = torch.randn(D, generator=g)
    sd[p + "LayerNorm.weight"] = torch.ones(D)
    sd[p + "LayerNorm.bias"] = torch.zeros(D)
    sd[p + "attention.self.rotary_embeddings.inv_freq"] = torch.ones(D // 4)
    sd["esm.encoder.emb_layer_norm_after.weight"] = torch.ones(D)
    sd["esm.encoder.emb_layer_norm_after.bias"] = torch.zeros(D)
    sd["lm_head.dense.weight"] = torch.randn(D, D, generator=g)
    sd["lm_head.dense.bias"] = torch.zeros(D)
    sd["lm_head.layer_norm.weight"] = torch.ones(D)
    sd["lm_head.layer_norm.bias"] = torch.zeros(D)
    sd["lm_head.bias"] = torch.zeros(VOCAB)
    return {k: v.to(dtype) for k, v in sd.items()}


def views(sd):
    """The same tensors as views of two storages (float ones, in order), at
    growing storage offsets."""
    out, flat = {}, []
    names = sorted(sd)
    half = len(names) // 2
    for part in (names[:half], names[half:]):
        big = torch.cat([sd[k].reshape(-1) for k in part])
        off = 0
        for k in part:
            n = sd[k].numel()
            out[k] = big[off:off + n].view(sd[k].shape)
            off += n
        flat.append(big)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    ckpt = {"model": fair_esm(g), "args": argparse.Namespace(arch="roberta_large", layers=1, embed_dim=D),
            "cfg": {"model": {"encoder_embed_dim": D}}}
    torch.save(ckpt, os.path.join(a.out, "fairesm_zip.pt"))
    torch.save(hf(g, torch.float16), os.path.join(a.out, "hf_legacy.pt"), _use_new_zipfile_serialization=False)
    sd = views(hf(g, torch.bfloat16))
    sd["esm.embeddings.position_ids"] = torch.arange(4, dtype=torch.int64).unsqueeze(0)
    sd["scalar"] = torch.tensor(1.5, dtype=torch.bfloat16)
    torch.save(sd, os.path.join(a.out, "hf_bf16_views.pt"))
    for f in sorted(os.listdir(a.out)):
        print(f, os.path.getsize(os.path.join(a.out, f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
