# SPDX-License-Identifier: Apache-2.0
"""`proteus evaluate` end to end on the trained t6 model: JSON consistent with
itself (KL >= 0, cosines <= 1, accuracy in [0, 1], sizes smaller), int4
files run W4A8 or weight-only as their scheme says, an fp32
model against itself gives KL 0, cosine 1 and SQNR inf everywhere, the
--max-drop accuracy gate fails (status 13) below the measured loss and passes
above it, and bad inputs (architecture mismatch, missing file) fail with a
clear message.
usage: test_evaluate_cli.py PROTEUS MODEL FASTA"""
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import expect, finish, scratch  # noqa: E402

PROTEUS, MODEL, FASTA = sys.argv[1:4]
TMP = scratch("pq_eval_")


def run(*args):
    return subprocess.run([PROTEUS, *args], capture_output=True, text=True)


q8 = os.path.join(TMP, "q8.h5")
p = run("quantize", "--model", MODEL, "--out", q8, "--per-channel", "-q")
expect(p.returncode == 0, f"quantize failed: {p.stderr}")

common = ["--fasta", FASTA, "--max-seqs", "24", "--max-length", "200", "--threads", "2"]
js = os.path.join(TMP, "e.json")
p = run("evaluate", "--model", q8, "--reference", MODEL, "--json", js, *common)
expect(p.returncode == 0, f"evaluate failed: {p.stderr}")
if p.returncode == 0:
    r = json.load(open(js))
    expect("per-Linear output SQNR" in p.stdout and "masked-LM accuracy" in p.stdout, "table missing")
    expect(r["n_sequences"] == 24, f"n_sequences {r['n_sequences']}")
    expect(0 <= r["logits_kl_mean"] <= r["logits_kl_max"], f"KL {r['logits_kl_mean']} {r['logits_kl_max']}")
    expect(r["logits_kl_mean"] > 0, "int8 model has KL 0: not quantized?")
    for k in ("logits_cosine_mean", "embedding_cosine_mean"):
        expect(0.99 < r[k] <= 1.0, f"{k} {r[k]}")
    for k in ("accuracy_reference", "accuracy_quantized"):
        expect(0.0 <= r[k] <= 1.0, f"{k} {r[k]}")
    expect(r["perplexity_reference"] > 1 and r["perplexity_quantized"] > 1, "perplexity <= 1")
    expect(r["weight_bytes_reduction"] > 3.5, f"weight bytes reduction {r['weight_bytes_reduction']}")
    expect(r["file_bytes_quantized"] < r["file_bytes_reference"], "quantized file not smaller")
    u = r["utilization"]
    expect(u["kernel"].endswith("int8 (W8A8)") and u["peak_gops"] > 0 and 0 < u["fraction"] < 1.5
           and u["threads"] == 2 and u["threads_busy"] > 0 and u["memory_gbps"] > 0, f"utilization {u}")
    expect(abs(u["fraction"] - u["achieved_gops"] / u["peak_gops"]) < 1e-12, "utilization fraction")
    expect(0 <= r["top1_disagreement"] < 0.05 and r["n_disagree"] <= r["n_positions"],
           f"int8 top-1 disagreement {r['top1_disagreement']}")
    expect(abs(r["top1_error_reference"] - (1 - r["accuracy_reference"])) < 1e-15, "top-1 error is not 1 - accuracy")
    for k in ("confidence_reference", "confidence_quantized", "ece_reference", "ece_quantized"):
        expect(0 < r[k] < 1, f"{k} {r[k]}")
    expect("confidence (masked)" in p.stdout and "calibration error (ECE)" in p.stdout, "confidence rows missing")
    expect(r["n_positions"] == r["n_tokens"] - 2 * r["n_sequences"], "KL positions are not the residues")
    layers = r["linear_sqnr_db"]
    expect(len(layers) == 7 and layers[-1]["layer"] == "head", "layer list")
    for row in layers[:-1]:
        for k in ("q", "k", "v", "out", "fc1", "fc2"):
            expect(isinstance(row[k], float) and 20 < row[k] < 80, f"layer {row['layer']} {k} SQNR {row[k]}")
    # the LM dense stays fp32 in a default quantization: identical outputs
    expect(layers[-1]["lm_dense"] == "inf", f"lm_dense SQNR {layers[-1]['lm_dense']}")

# enable_fusion in a --config file sets the default; --no-fusion overrides a
# config that enables it; fused and unfused runs give the same numbers
small = ["--fasta", FASTA, "--max-seqs", "4", "--max-length", "100", "--threads", "2"]
cfg_off, cfg_on = os.path.join(TMP, "nofusion.json"), os.path.join(TMP, "fusion.json")
json.dump({"enable_fusion": False}, open(cfg_off, "w"))
json.dump({"enable_fusion": True}, open(cfg_on, "w"))
fused = {}
for name, extra, want in (("default", [], True), ("config off", ["--config", cfg_off], False),
                          ("config on", ["--config", cfg_on], True),
                          ("config on, --no-fusion", ["--config", cfg_on, "--no-fusion"], False)):
    jf = os.path.join(TMP, "fusion_%d.json" % len(fused))
    p = run("evaluate", "--model", q8, "--reference", MODEL, "--json", jf, *small, *extra)
    expect(p.returncode == 0, f"evaluate ({name}) failed: {p.stderr}")
    if p.returncode == 0:
        rf = json.load(open(jf))
        expect(rf["fusion"] is want, f"evaluate ({name}): fusion {rf['fusion']}, expected {want}")
        fused[name] = rf
if len(fused) == 4:
    a, b = fused["default"], fused["config off"]
    expect(all(a[k] == b[k] for k in ("logits_kl_mean", "accuracy_quantized", "perplexity_quantized")),
           "fused and unfused runs differ")
jb = os.path.join(TMP, "bench.json")
p = run("bench", "--model", q8, "--batch", "2", "--length", "40", "--reps", "1", "--warmup", "0",
        "--config", cfg_off, "--json", jb)
expect(p.returncode == 0 and json.load(open(jb))["fusion"] is False, f"bench --config fusion off: {p.stderr}")
# bench --profile: every part of the forward once, shares adding up to 100 %
p = run("bench", "--model", q8, "--batch", "2", "--length", "40", "--reps", "2", "--warmup", "0", "--logits",
        "--profile")
expect(p.returncode == 0, f"bench --profile failed: {p.stderr}")
parts = {}
for ln in p.stdout.splitlines():
    f = ln.rsplit(None, 2)
    if ln.startswith("  ") and not ln.startswith("    ") and len(f) == 3 and f[2].endswith("%"):
        parts[f[0].strip()] = float(f[2][:-1])
expect(set(parts) == {"embedding", "layernorm", "q/k/v GEMM", "attention", "out GEMM", "fc1 GEMM", "gelu",
                      "fc2 GEMM", "LM head"}, f"profile parts: {sorted(parts)}")
expect(abs(sum(parts.values()) - 100.0) < 0.5, f"profile shares {parts}")
expect("2 forwards of the timed reps" in p.stdout and "softmax" in p.stdout, f"profile header: {p.stdout}")
json.dump({"enable_fusion": "sometimes"}, open(cfg_off, "w"))
p = run("evaluate", "--model", q8, "--reference", MODEL, "--config", cfg_off, *small)
expect(p.returncode == 2 and "enable_fusion" in p.stderr, f"bad enable_fusion: {p.returncode} {p.stderr}")

# int4: the default scheme (dynamic) runs W4A8, --scheme weight-only runs on
# fp32 activations. The weight-only file under auto gives the numbers of the
# W4A8 file under --mode weight-only (same codes, same kernel), and W4A8 gives
# other numbers (activations quantized), still close to the reference.
q4, q4w = os.path.join(TMP, "q4.h5"), os.path.join(TMP, "q4w.h5")
p = run("quantize", "--model", MODEL, "--out", q4, "--precision", "int4", "--group-size", "64", "-q")
expect(p.returncode == 0, f"quantize int4 failed: {p.stderr}")
p = run("quantize", "--model", MODEL, "--out", q4w, "--precision", "int4", "--group-size", "64",
        "--scheme", "weight-only", "-q")
expect(p.returncode == 0, f"quantize int4 weight-only failed: {p.stderr}")
r4 = {}
for name, model, extra in (("w4a8", q4, []), ("forced", q4, ["--mode", "weight-only"]), ("scheme", q4w, [])):
    jf = os.path.join(TMP, "int4_%s.json" % name)
    p = run("evaluate", "--model", model, "--reference", MODEL, "--json", jf, *small, *extra)
    expect(p.returncode == 0, f"evaluate int4 ({name}) failed: {p.stderr}")
    if p.returncode == 0:
        r4[name] = json.load(open(jf))
if len(r4) == 3:
    keys = ("logits_kl_mean", "accuracy_quantized", "perplexity_quantized", "logits_cosine_mean")
    expect(all(r4["forced"][k] == r4["scheme"][k] for k in keys),
           f"--scheme weight-only does not run weight-only: {[(r4['forced'][k], r4['scheme'][k]) for k in keys]}")
    expect(r4["w4a8"]["logits_kl_mean"] != r4["forced"]["logits_kl_mean"], "int4 default does not run W4A8")
    expect(r4["w4a8"]["logits_cosine_mean"] > 0.999, f"W4A8 cosine {r4['w4a8']['logits_cosine_mean']}")
p = run("quantize", "--model", MODEL, "--out", os.path.join(TMP, "bad4.h5"), "--precision", "int4",
        "--scheme", "weight-only", "--smoothquant", "0.5", "-q")
expect(p.returncode == 2 and "weight-only" in p.stderr, f"weight-only + smoothquant: {p.returncode} {p.stderr}")

# fp32 against itself: zero divergence
js0 = os.path.join(TMP, "e0.json")
p = run("evaluate", "--model", MODEL, "--reference", MODEL, "--json", js0, *common)
expect(p.returncode == 0, f"self evaluate failed: {p.stderr}")
if p.returncode == 0:
    r0 = json.load(open(js0))
    expect(r0["logits_kl_mean"] == 0.0 and r0["logits_kl_max"] == 0.0, f"self KL {r0['logits_kl_mean']}")
    expect(abs(r0["logits_cosine_mean"] - 1) < 1e-12, f"self cosine {r0['logits_cosine_mean']}")
    expect(r0["accuracy_reference"] == r0["accuracy_quantized"], "self accuracy differs")
    expect(r0["top1_disagreement"] == 0.0 and r0["n_disagree"] == 0, f"self disagreement {r0['top1_disagreement']}")
    expect(r0["confidence_reference"] == r0["confidence_quantized"] and r0["ece_reference"] == r0["ece_quantized"],
           "self confidence or ECE differs")
    expect(r0["top1_error_reference"] == r0["top1_error_quantized"], "self top-1 error differs")
    expect(r0["utilization"]["kernel"] == "sgemm fp32", f"fp32 kernel {r0['utilization']['kernel']}")
    expect(all(v == "inf" for row in r0["linear_sqnr_db"] for k, v in row.items() if k != "layer"),
           "self SQNR not inf")

# architecture mismatch: a synthetic 12-layer model
t12 = os.path.join(TMP, "t12.safetensors")
p = run("synth", "--arch", "esm2_t12_35M_UR50D", "--seed", "3", "--out", t12)
expect(p.returncode == 0, f"synth failed: {p.stderr}")
p = run("evaluate", "--model", q8, "--reference", t12, *common)
expect(p.returncode != 0 and "architecture mismatch" in p.stderr, f"mismatch not reported: {p.stderr}")

# the accuracy gate: an untrained (synthetic) t6 scored against the trained one
# loses several points; --max-drop below the loss fails with status 13 after
# the report, above it passes
t6 = os.path.join(TMP, "t6_random.safetensors")
p = run("synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "5", "--out", t6)
expect(p.returncode == 0, f"synth t6 failed: {p.stderr}")
jg = os.path.join(TMP, "gate.json")
p = run("evaluate", "--model", t6, "--reference", MODEL, "--json", jg, "--max-drop", "1", *common)
expect(p.returncode == 13, f"gate: status {p.returncode}: {p.stderr}")
lines = [ln for ln in p.stderr.splitlines() if ln.startswith("proteus:")]
expect(len(lines) == 1 and lines[0].startswith("proteus: accuracy error: ") and "--max-drop 1" in lines[0],
       f"gate message: {p.stderr}")
expect("accuracy gate:" in p.stdout and "FAIL" in p.stdout, "gate line missing from the report")
if os.path.exists(jg):
    g = json.load(open(jg))
    drop = 100 * (g["accuracy_reference"] - g["accuracy_quantized"])
    expect(drop > 1 and abs(g["accuracy_drop_points"] - drop) < 1e-9, f"drop {g['accuracy_drop_points']} vs {drop}")
    expect(g["accuracy_gate"] == "fail" and g["max_drop_points"] == 1, f"gate JSON {g.get('accuracy_gate')}")
    p = run("evaluate", "--model", t6, "--reference", MODEL, "--max-drop", f"{drop + 0.01:.4f}", *common)
    expect(p.returncode == 0 and "pass" in p.stdout, f"gate above the loss: {p.returncode} {p.stderr}")
else:
    expect(False, "gate JSON not written")
p = run("evaluate", "--model", q8, "--reference", MODEL, "--max-drop", "-1", *common)
expect(p.returncode == 2 and "--max-drop" in p.stderr, f"bad --max-drop: {p.returncode} {p.stderr}")

missing = os.path.join(TMP, "nope.h5")
p = run("evaluate", "--model", missing, "--reference", MODEL, *common)
expect(p.returncode != 0 and "nope.h5" in p.stderr, f"missing file not reported: {p.stderr}")
p = run("evaluate", "--model", q8, *common)
expect(p.returncode == 2 and "--reference" in p.stderr, f"missing --reference: {p.returncode} {p.stderr}")

# --json checked before the evaluation: a missing folder (I/O, 3) or an input (config, 2)
p = run("evaluate", "--model", q8, "--reference", MODEL, "--json", os.path.join(TMP, "no_dir", "e.json"), *common)
expect(p.returncode == 3 and "cannot create files in" in p.stderr, f"--json folder: {p.returncode} {p.stderr}")
before = open(q8, "rb").read()
p = run("evaluate", "--model", q8, "--reference", MODEL, "--json", q8, *common)
expect(p.returncode == 2 and "is the input file" in p.stderr and open(q8, "rb").read() == before,
       f"--json onto the model: {p.returncode} {p.stderr}")

finish()
