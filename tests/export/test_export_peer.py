# SPDX-License-Identifier: Apache-2.0
"""test_export_peer.py - `proteus export` read by the tools it is for, in the
peer environment (transformers 4.30, compressed-tensors 0.4.0, torch 1.13):

safetensors: EsmForMaskedLM.from_pretrained(DIR) reports no missing,
unexpected or mismatched key, the file holds exactly the model's state_dict
keys (the decoder tied), EsmTokenizer.from_pretrained(DIR) encodes as
Proteus does, and the logits of real sequences (a padded batch, with a
<mask>) match the C engine run on the same file's dequantized weights
(dequant_logits) within 1e-4. --dtype fp16: every tensor is torch's fp16
rounding of the fp32 export, bit for bit.

compressed-tensors: ModelCompressor.from_compression_config accepts
config.json's quantization_config (as transformers hands it over), and its
decompression gives exactly the config's targets, every quantized Linear's weight bit for bit equal to Proteus's dequantized
weight (the fp32 safetensors export), for int8 per-tensor, int8 per-channel
asymmetric, int4 groups of 64 (symmetric and asymmetric) and int4
per-channel.

Bad inputs: an unknown format, a group size that does not divide the
columns, an existing non-empty folder, a path that is not a Proteus model:
each its status and message, nothing written.

usage: test_export_peer.py PROTEUS DEQUANT_LOGITS MODEL.safetensors EVAL.fasta"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import EsmForMaskedLM, EsmTokenizer

PROTEUS, DRIVER, MODEL, FASTA = sys.argv[1:5]
TOL = 1e-4
SPECS = {
    "int8_tensor": [],
    "int8_channel_asym": ["--per-channel", "--asymmetric"],
    "int4_g64": ["--precision", "int4", "--group-size", "64"],
    "int4_g64_asym": ["--precision", "int4", "--group-size", "64", "--asymmetric"],
    "int4_channel": ["--precision", "int4", "--per-channel"],
}
failures = []


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


def run(args, want=0):
    p = subprocess.run([PROTEUS, *args], capture_output=True, text=True)
    if p.returncode != want:
        raise SystemExit(f"FAIL: proteus {' '.join(args)}: exit {p.returncode}, expected {want}\n{p.stderr}")
    return p


def sequences(n=6, max_len=120):
    seqs, cur = [], None
    for line in open(FASTA):
        line = line.strip()
        if line.startswith(">"):
            if cur and len(cur) <= max_len:
                seqs.append(cur)
            cur = ""
        elif cur is not None:
            cur += line
    if cur and len(cur) <= max_len:
        seqs.append(cur)
    seqs = seqs[:n]
    seqs[0] = seqs[0][:5] + "<mask>" + seqs[0][6:]
    return seqs


def engine_logits(q, seqs, tmp):
    out = os.path.join(tmp, "logits.f32")
    p = subprocess.run([DRIVER, q, out, *seqs], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lens = [int(x) for x in p.stdout.split()]
    flat = np.fromfile(out, dtype=np.float32).reshape(-1, 33)
    offs = np.cumsum([0] + lens)
    return [torch.from_numpy(flat[offs[i]:offs[i + 1]]) for i in range(len(seqs))]


def check_safetensors(label, q, hf, seqs, tmp):
    model, info = EsmForMaskedLM.from_pretrained(hf, output_loading_info=True)
    model.eval()
    check(not any(info.values()), f"{label}: from_pretrained loads every key ({info})")
    sd = load_file(os.path.join(hf, "model.safetensors"))
    want = set(model.state_dict()) - {"lm_head.decoder.weight"}
    check(set(sd) == want, f"{label}: the file holds exactly the model's keys, the decoder tied "
          f"(missing {sorted(want - set(sd))[:3]}, extra {sorted(set(sd) - want)[:3]})")
    check(model.lm_head.decoder.weight.data_ptr() == model.esm.embeddings.word_embeddings.weight.data_ptr(),
          f"{label}: the decoder is the word embeddings")
    tok = EsmTokenizer.from_pretrained(hf)
    batch = tok(seqs, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    ref = engine_logits(q, seqs, tmp)
    worst = 0.0
    for b, r in enumerate(ref):
        T = int(batch["attention_mask"][b].sum())
        check(T == r.shape[0], f"{label}: seq {b}: EsmTokenizer gives Proteus's {r.shape[0]} tokens")
        if T == r.shape[0]:
            worst = max(worst, float((logits[b, :T] - r).abs().max()))
    check(worst <= TOL, f"{label}: HF logits vs the C engine on dequantized weights: worst {worst:.2e} <= {TOL}")
    return sd, logits


def check_compressed(label, ct, dense):
    from compressed_tensors import ModelCompressor
    cfg = json.load(open(os.path.join(ct, "config.json")))["quantization_config"]
    bits = {g["weights"]["num_bits"] for g in cfg["config_groups"].values()}
    fmt = "pack-quantized" if 4 in bits else "int-quantized"
    check(cfg["format"] == fmt, f"{label}: format {cfg['format']}")
    # as transformers and vLLM take it: config.json's quantization_config
    comp = ModelCompressor.from_compression_config(cfg)
    check(comp is not None and comp.quantization_compressor is not None,
          f"{label}: ModelCompressor accepts the quantization_config")
    # the package's own decoding of the folder (0.4.0 cannot apply a
    # "compressed" status to a live model on torch 1.13: it turns the
    # Linears' weights into int8 parameters first)
    dec = dict(comp.quantization_compressor.decompress(ct))
    targets = sorted(t for g in cfg["config_groups"].values() for t in g["targets"])
    check(sorted(k[:-len(".weight")] for k in dec) == targets,
          f"{label}: the decompressed weights are the config's {len(targets)} targets")
    raw = load_file(os.path.join(ct, "model.safetensors"))
    bad = []
    for t in targets:
        got, want = dec.get(t + ".weight"), dense[t + ".weight"]
        zp = raw.get(t + ".weight_zero_point")
        if got is None or got.dtype != torch.float32:
            bad.append(t)
        elif cfg["format"] == "int-quantized" and zp is not None:
            # 0.4.0 subtracts the zero point in int8 (later releases in the
            # scale's dtype): where q - zp leaves int8 it wraps. There the
            # codes and qparams it read are checked as later releases use them.
            q, sc = raw[t + ".weight"], raw[t + ".weight_scale"]
            diff = q.int() - zp.int()
            fits = (diff >= -128) & (diff <= 127)
            if not (torch.equal(got[fits], want[fits]) and torch.equal((q.float() - zp.float()) * sc, want)):
                bad.append(t)
        elif not torch.equal(got, want):
            bad.append(t)
    check(len(targets) == 36 and not bad,
          f"{label}: compressed-tensors decompresses {len(targets)} Linears bit for bit as Proteus "
          f"dequantizes them (differing: {bad[:3]})")
    plain = {k for k in load_file(os.path.join(ct, "model.safetensors"))
             if not any(k.endswith(s) for s in ("weight_packed", "weight_shape", "weight_scale", "weight_zero_point"))
             and k[:-len(".weight")] not in targets}
    check(plain == set(dense) - set(dec), f"{label}: every other tensor as in the safetensors export")


def main():
    tmp = tempfile.mkdtemp(prefix="pq_export_")
    try:
        seqs = sequences()
        logits = {}
        for label, extra in SPECS.items():
            q = os.path.join(tmp, label + ".h5")
            run(["quantize", "--model", MODEL, "--out", q, "-q", *extra])
            hf = os.path.join(tmp, label + "_hf")
            run(["export", q, "--format", "safetensors", "--out", hf, "-q"])
            dense, logits[label] = check_safetensors(label, q, hf, seqs, tmp)
            ct = os.path.join(tmp, label + "_ct")
            run(["export", q, "--format", "compressed-tensors", "--out", ct, "-q"])
            check_compressed(label, ct, dense)
            if label == "int4_g64":
                h16 = os.path.join(tmp, label + "_hf16")
                run(["export", q, "--format", "safetensors", "--out", h16, "--dtype", "fp16", "-q"])
                sd16 = load_file(os.path.join(h16, "model.safetensors"))
                bad = [k for k, v in dense.items()
                       if not torch.equal(sd16[k], v.half() if v.is_floating_point() else v)]
                check(set(sd16) == set(dense) and not bad, f"{label}: --dtype fp16 is torch's rounding of fp32 ({bad[:3]})")
                cfg16 = json.load(open(os.path.join(h16, "config.json")))
                check(cfg16["torch_dtype"] == "float16", "fp16: config.json says torch_dtype float16")

        # the comparisons see the weights: int4 and int8 logits differ
        gap = float((logits["int4_g64"] - logits["int8_tensor"]).abs().max())
        check(gap > 1e-2, f"int4 and int8 exports give different logits (max gap {gap:.3g})")
        q = os.path.join(tmp, "int8_tensor.h5")
        p = run(["export", q, "--format", "onnx", "--out", os.path.join(tmp, "x")], want=2)
        check("supported: hdf5, safetensors, compressed-tensors" in p.stderr, "an unknown format: status 2 listing them")
        q128 = os.path.join(tmp, "int4_g128.h5")
        run(["quantize", "--model", MODEL, "--out", q128, "-q", "--precision", "int4", "--group-size", "128"])
        out = os.path.join(tmp, "g128_ct")
        p = run(["export", q128, "--format", "compressed-tensors", "--out", out], want=2)
        check("not a multiple of its group size 128" in p.stderr and not os.path.exists(out)
              and not os.path.exists(out + ".partial"),
              "groups of 128 over 320 columns: status 2 naming the tensor, nothing written")
        busy = os.path.join(tmp, "busy")
        os.mkdir(busy)
        open(os.path.join(busy, "keep"), "w").close()
        p = run(["export", q, "--format", "safetensors", "--out", busy], want=3)
        check("not empty" in p.stderr and os.listdir(busy) == ["keep"], "a non-empty --out: status 3, left alone")
        p = run(["export", MODEL, "--format", "safetensors", "--out", os.path.join(tmp, "y")], want=4)
        check("not an HDF5 file" in p.stderr and not os.path.exists(os.path.join(tmp, "y")),
              "a safetensors input: status 4, nothing written")
        copy = os.path.join(tmp, "copy.h5")
        run(["export", q, "--format", "hdf5", "--out", copy, "-q"])
        check(os.path.isfile(copy), "hdf5: a fresh copy")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
