#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end forward throughput: the Proteus engine (fp32, W8A8 int8, int4
weight-only) against PyTorch fp32 and PyTorch dynamic int8 (fair-esm ESM2,
quantize_dynamic on nn.Linear), ONNX Runtime dynamic int8 when the export
works, and esm.cpp when pip can install it -- all in this one run, on the
same shapes and thread count.

usage: /work/main/.venv/bin/python scripts/bench/bench_e2e.py --proteus P
         --fp32 T33.safetensors --int8 T33_i8.h5 --int4 T33_i4.h5
         [--fasta dev_eval.fasta --max-seqs N] [--threads 2] [--reps 3]
         [--json out.json]
The PyTorch model is fair-esm's ESM2 of the same architecture, loaded with the
same synthetic weights (names mapped from the Hugging Face layout)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--proteus", required=True)
ap.add_argument("--fp32", required=True)
ap.add_argument("--int8", required=True)
ap.add_argument("--int4", required=True)
ap.add_argument("--fasta")
ap.add_argument("--max-seqs", type=int, default=16)
ap.add_argument("--max-length", type=int, default=500)
ap.add_argument("--batch-tokens", type=int, default=1024)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--length", type=int, default=256)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--skip-ort", action="store_true")
ap.add_argument("--json")
a = ap.parse_args()

import torch  # noqa: E402

torch.set_num_threads(a.threads)
ROWS = []


def row(name, tokens, secs, extra=""):
    ROWS.append({"engine": name, "tokens": tokens, "median_s": secs, "tokens_per_s": tokens / secs,
                 "note": extra})
    print(f"  {name:34s} {tokens / secs:10.1f} tokens/s  ({secs:.3f} s) {extra}", flush=True)


# ---- batches: uniform B x T, or real lengths from the FASTA
def read_fasta(path, n, maxlen):
    seqs, cur = [], None
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            if cur is not None:
                seqs.append(cur)
            if len(seqs) >= n:
                cur = None
                break
            cur = ""
        elif cur is not None:
            cur += line
    if cur is not None and len(seqs) < n:
        seqs.append(cur)
    return [s[:maxlen] for s in seqs[:n]]


ALPHA = "LAGVSERTIDPKQNFYMHWC"
if a.fasta:
    seqs = read_fasta(a.fasta, a.max_seqs, a.max_length)
    batches, cur, ntok = [], [], 0
    for s in seqs:  # the same greedy token-budget packing as proteus
        if cur and ntok + len(s) + 2 > a.batch_tokens:
            batches.append(cur)
            cur, ntok = [], 0
        cur.append(s)
        ntok += len(s) + 2
    if cur:
        batches.append(cur)
    shape = f"{len(seqs)} dev_eval sequences (<= {a.max_length} residues), {len(batches)} batches of <= {a.batch_tokens} tokens"
else:
    seqs = ["".join(ALPHA[(t + s) % 20] for t in range(a.length - 2)) for s in range(a.batch)]
    batches = [seqs]
    shape = f"uniform {a.batch} x {a.length} tokens"
n_tokens = sum(len(s) + 2 for s in seqs)
print(f"shape: {shape}; threads {a.threads}; {n_tokens} tokens per pass", flush=True)


# ---- proteus
def proteus(model, extra=()):
    with tempfile.NamedTemporaryFile(suffix=".json") as jf:
        cmd = [a.proteus, "bench", "--model", model, "--threads", str(a.threads), "--reps", str(a.reps),
               "--json", jf.name, *extra]
        if a.fasta:
            cmd += ["--fasta", a.fasta, "--max-seqs", str(a.max_seqs), "--max-length", str(a.max_length),
                    "--batch-tokens", str(a.batch_tokens)]
        else:
            cmd += ["--batch", str(a.batch), "--length", str(a.length)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"proteus bench failed: {p.stderr}")
        return json.load(open(jf.name))


res = {}
for name, model, extra in [("proteus fp32", a.fp32, ()), ("proteus W8A8 int8 (dynamic)", a.int8, ()),
                           ("proteus W8A8 int8, no fusion", a.int8, ("--no-fusion",)),
                           ("proteus weight-only int8", a.int8, ("--mode", "weight-only")),
                           ("proteus weight-only int4 g128", a.int4, ())]:
    r = proteus(model, extra)
    res[name] = r
    row(name, r["n_tokens"], r["median_s"], f"weights {r['weight_bytes'] / 2**20:.0f} MiB")

# ---- PyTorch (fair-esm ESM2 with the same weights)
import esm  # noqa: E402
from esm.model.esm2 import ESM2  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

sd = load_file(a.fp32)
L = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("esm.encoder.layer."))
D = sd["esm.embeddings.word_embeddings.weight"].shape[1]
H = {320: 20, 480: 20, 640: 20, 1280: 20, 2560: 40, 5120: 40}[D]
alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
model = ESM2(num_layers=L, embed_dim=D, attention_heads=H, alphabet=alphabet, token_dropout=True)
m = {}
for i in range(L):
    p, q = f"esm.encoder.layer.{i}.", f"layers.{i}."
    for hf, fe in [("attention.self.query", "self_attn.q_proj"), ("attention.self.key", "self_attn.k_proj"),
                   ("attention.self.value", "self_attn.v_proj"), ("attention.output.dense", "self_attn.out_proj"),
                   ("intermediate.dense", "fc1"), ("output.dense", "fc2"),
                   ("attention.LayerNorm", "self_attn_layer_norm"), ("LayerNorm", "final_layer_norm")]:
        for t in ("weight", "bias"):
            m[q + fe + "." + t] = sd[p + hf + "." + t]
m["embed_tokens.weight"] = sd["esm.embeddings.word_embeddings.weight"]
m["emb_layer_norm_after.weight"] = sd["esm.encoder.emb_layer_norm_after.weight"]
m["emb_layer_norm_after.bias"] = sd["esm.encoder.emb_layer_norm_after.bias"]
missing, unexpected = model.load_state_dict(m, strict=False)
model.eval()
del sd, m
conv = alphabet.get_batch_converter()
toks = [conv([(str(i), s) for i, s in enumerate(b)])[2] for b in batches]


def torch_time(mod):
    with torch.no_grad():
        for t in toks:  # warm-up
            mod(t, repr_layers=[L])
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            for t in toks:
                mod(t, repr_layers=[L])
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


row("PyTorch fp32 (fair-esm)", n_tokens, torch_time(model), f"torch {torch.__version__}")
qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
row("PyTorch dynamic int8 (quantize_dynamic)", n_tokens, torch_time(qmodel))
del qmodel

# ---- ONNX Runtime dynamic int8
ort_note = ""
if not a.skip_ort:
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, t):
                return self.m(t, repr_layers=[L])["representations"][L]

        d = tempfile.mkdtemp()
        f32, i8 = os.path.join(d, "m.onnx"), os.path.join(d, "m_i8.onnx")
        torch.onnx.export(Wrap(model), toks[0], f32, input_names=["tokens"], output_names=["repr"],
                          dynamic_axes={"tokens": {0: "b", 1: "t"}}, opset_version=14)
        quantize_dynamic(f32, i8, weight_type=QuantType.QInt8)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(i8, so, providers=["CPUExecutionProvider"])
        feeds = [{"tokens": t.numpy()} for t in toks]
        for f in feeds:
            sess.run(None, f)
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            for f in feeds:
                sess.run(None, f)
            times.append(time.perf_counter() - t0)
        row("ONNX Runtime dynamic int8", n_tokens, statistics.median(times), f"ort {ort.__version__}")
    except Exception as e:  # report, do not hide
        ort_note = f"ONNX Runtime: export/quantization failed: {type(e).__name__}: {str(e)[:300]}"
        print("  " + ort_note, flush=True)

# ---- esm.cpp
pip = os.path.join(os.path.dirname(sys.executable), "pip")
p = subprocess.run([pip, "download", "--no-deps", "-d", tempfile.mkdtemp(), "esm-cpp"], capture_output=True, text=True)
esmcpp_note = "esm-cpp: pip download rc %d: %s" % (p.returncode, (p.stderr.strip().splitlines() or [""])[-1][:300])
print("  " + esmcpp_note, flush=True)

# ---- ratios
by = {r["engine"]: r["tokens_per_s"] for r in ROWS}
pt, ptq = by["PyTorch fp32 (fair-esm)"], by["PyTorch dynamic int8 (quantize_dynamic)"]
print("ratios (tokens/s over tokens/s):")
for r in ROWS:
    print(f"  {r['engine']:34s} x{r['tokens_per_s'] / pt:5.2f} vs PyTorch fp32, x{r['tokens_per_s'] / ptq:5.2f} "
          f"vs PyTorch int8, x{r['tokens_per_s'] / by['proteus fp32']:5.2f} vs proteus fp32")
fb, qb = res["proteus fp32"]["weight_bytes"], res["proteus W8A8 int8 (dynamic)"]["weight_bytes"]
print(f"weights in memory: fp32 {fb} B, int8 {qb} B ({fb / qb:.2f}x smaller), int4 "
      f"{res['proteus weight-only int4 g128']['weight_bytes']} B "
      f"({fb / res['proteus weight-only int4 g128']['weight_bytes']:.2f}x)")
if a.json:
    json.dump({"shape": shape, "threads": a.threads, "rows": ROWS, "proteus": res, "ort_note": ort_note,
               "esm_cpp_note": esmcpp_note}, open(a.json, "w"), indent=1)
