# SPDX-License-Identifier: Apache-2.0
"""test_recipe_peer.py - a mixed-precision file (quantize --recipe) run by the
engine gives the logits of a float model built with the file's dequantized
weights, in the peer environment (torch 1.13, transformers 4.30, h5py):

- the weights are dequantized here with numpy from the file's own codes,
  scales and zero points (h5py; FORMAT.md's rule, int4 unpacked here), the
  float tensors taken as stored (fp16 ones widened), and put into
  transformers' EsmForMaskedLM;
- its logits equal the C engine's on the dequantized weights (dequant_logits)
  within 1e-4, and the engine's own quantized kernels (DEQUANT_LOGITS_MODE=
  auto: int4 and int8 weight kernels, fp16 and fp32 Linears side by side)
  within 0.2 (int8 activation rounding; logits span about +-40), with the same top prediction at
  nearly every position;
- the recipe matters: the logits differ from a uniform int8 file's.

usage: test_recipe_peer.py PROTEUS DEQUANT_LOGITS MODEL.safetensors EVAL.fasta"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
from transformers import EsmForMaskedLM, EsmTokenizer

PROTEUS, DRIVER, MODEL, FASTA = sys.argv[1:5]
RECIPE = {"rules": [
    {"layers": "0-1", "linears": ["q", "k", "v"], "precision": "fp16"},
    {"linears": "fc1", "precision": "int4", "group_size": 64},
    {"tensors": "esm.encoder.layer.5.*", "precision": "int8", "symmetric": False},
    {"linears": ["o"], "layers": "2-3", "precision": "int4", "per_channel": True, "symmetric": False},
    {"tensors": "esm.encoder.layer.4.attention.self.value.weight", "precision": "fp32"},
]}
failures = []


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


def run(args, env=None):
    p = subprocess.run([PROTEUS, *args], capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"FAIL: proteus {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p


def sequences(n=5, max_len=120):
    """The first n records of FASTA of at most max_len residues."""
    records = ("".join(r.splitlines()[1:]) for r in open(FASTA).read().split(">")[1:])
    return [s for s in records if len(s) <= max_len][:n]


def dequantized(path):
    """{name: float32 array} from the file, dequantized with numpy."""
    out = {}
    with h5py.File(path, "r") as f:
        for name, g in f["tensors"].items():
            if "data" in g:
                out[name] = g["data"][()].astype(np.float32)
                continue
            rows, cols = (int(x) for x in g.attrs["shape"])
            raw = g["qweight"][()]
            if int(g.attrs["bits"]) == 4:
                lo = (raw & 0xF).astype(np.int32) - 8
                hi = (raw >> 4).astype(np.int32) - 8
                q = np.empty((rows, raw.shape[1] * 2), np.int32)
                q[:, 0::2], q[:, 1::2] = lo, hi
                q = q[:, :cols]
            else:
                q = raw.astype(np.int32)
            scale = g["scale"][()]
            zp = g["zero_point"][()] if "zero_point" in g else np.zeros_like(scale, np.int32)
            gran = g.attrs["granularity"].decode()
            if gran == "tensor":
                s, z = np.full((rows, cols), scale[0], np.float32), np.full((rows, cols), zp[0], np.int32)
            elif gran == "channel":
                s, z = np.repeat(scale[:, None], cols, 1), np.repeat(zp[:, None], cols, 1)
            else:
                gs = int(g.attrs["group_size"])
                s, z = np.repeat(scale, gs, 1)[:, :cols], np.repeat(zp, gs, 1)[:, :cols]
            out[name] = (q - z).astype(np.float32) * s.astype(np.float32)
    return out


def hf_logits(folder, weights, seqs):
    model = EsmForMaskedLM.from_pretrained(folder)
    model.eval()
    sd = model.state_dict()
    missing = [n for n in weights if n not in sd]
    check(not missing, f"every tensor of the file is a parameter of EsmForMaskedLM (not: {missing[:3]})")
    with torch.no_grad():
        for n, w in weights.items():
            if n in sd:
                sd[n].copy_(torch.from_numpy(w).reshape(sd[n].shape))
        tok = EsmTokenizer.from_pretrained(folder)
        out = []
        for s in seqs:
            b = tok([s], return_tensors="pt")
            out.append(model(**b).logits[0].numpy())
    return out


def engine_logits(q, seqs, tmp, mode):
    out = os.path.join(tmp, "logits.f32")
    env = dict(os.environ, DEQUANT_LOGITS_MODE=mode)
    p = subprocess.run([DRIVER, q, out, *seqs], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    lens = [int(x) for x in p.stdout.split()]
    flat = np.fromfile(out, dtype=np.float32).reshape(-1, 33)
    offs = np.cumsum([0] + lens)
    return [flat[offs[i]:offs[i + 1]] for i in range(len(seqs))]


def main():
    tmp = tempfile.mkdtemp(prefix="pq_recipe_peer_")
    try:
        rf = os.path.join(tmp, "recipe.json")
        with open(rf, "w") as f:
            json.dump(RECIPE, f)
        mixed, uniform = os.path.join(tmp, "mixed.h5"), os.path.join(tmp, "uniform.h5")
        run(["quantize", "--model", MODEL, "--out", mixed, "--per-channel", "--recipe", rf, "-q"])
        run(["quantize", "--model", MODEL, "--out", uniform, "--per-channel", "-q"])
        with h5py.File(mixed, "r") as f:
            kinds = {f["recipe"].attrs[n].decode() for n in f["recipe"].attrs}
        check({"fp16", "fp32", "int4 group 64 symmetric rtn", "int4 channel asymmetric rtn",
               "int8 channel asymmetric rtn", "int8 channel symmetric rtn"} <= kinds,
              f"the file mixes six recipes ({sorted(kinds)})")
        # the architecture's config.json and tokenizer files (the weights come from numpy)
        folder = os.path.join(tmp, "hf")
        run(["export", mixed, "--format", "safetensors", "--out", folder])
        seqs = sequences()
        ref = hf_logits(folder, dequantized(mixed), seqs)
        deq = engine_logits(mixed, seqs, tmp, "dequant")
        worst = max(float(np.abs(a - b).max()) for a, b in zip(ref, deq))
        check(worst <= 1e-4, f"engine on dequantized weights vs torch on numpy's dequantization: worst {worst:.2e}")
        auto = engine_logits(mixed, seqs, tmp, "auto")
        worst = max(float(np.abs(a - b).max()) for a, b in zip(ref, auto))
        agree = np.mean(np.concatenate([a.argmax(1) == b.argmax(1) for a, b in zip(ref, auto)]))
        check(worst <= 0.2, f"engine's quantized kernels (int8 activations) vs torch: worst {worst:.3g} <= 0.2")
        check(agree >= 0.95, f"engine's quantized kernels: same top prediction at {agree:.1%} of positions")
        uni = engine_logits(uniform, seqs, tmp, "dequant")
        gap = max(float(np.abs(a - b).max()) for a, b in zip(uni, deq))
        check(gap > 1e-2, f"the mixed file's logits differ from the uniform int8 file's (max gap {gap:.3g})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
