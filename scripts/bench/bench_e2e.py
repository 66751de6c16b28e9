#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end forward throughput: the Proteus engine (fp32, W8A8 int8, W4A8
int4 and int4 weight-only, the same file) against esm.cpp (fp32 and SmoothQuant W8A8 int8), PyTorch fp32
and PyTorch dynamic int8 (fair-esm ESM2, quantize_dynamic on nn.Linear), and
ONNX Runtime dynamic int8 -- all in this one run, on the same batches and
thread count.

usage: .venv/bin/python scripts/bench/bench_e2e.py --proteus P
         --fp32 T33.safetensors --int8 T33_i8.h5 --int4 T33_i4.h5
         [--batch 8 --length 256] [--fasta dev_eval.fasta --max-seqs 8
         --max-length 1022 --batch-tokens 4096] [--calib calib.fasta (default: the bundled data/proteins/calib_sample.fasta)]
         [--threads 2] [--rounds 2] [--skip-ort] [--json out.json]

Two workloads: a uniform B x T batch, and (with --fasta) the file's first
sequences cropped and packed greedily into batches of at most --batch-tokens
tokens (the packing `proteus bench --fasta` does; the peers get the same
batches, PyTorch padded to the longest sequence, esm.cpp and Proteus packed).
Throughput counts real tokens (<cls> + residues + <eos>), never padding.
The machine may be shared: every round runs each engine once on each
workload, engines interleaved, and the best round is reported (best-of-N),
with the load average seen around the rounds.
The PyTorch model is fair-esm's ESM2 of the same architecture, loaded with the
same synthetic weights (names mapped from the Hugging Face layout); esm.cpp
loads the Hugging Face safetensors file itself and is quantized in memory
(calibration with its ActivationObserver, SmoothQuant alpha 0.5, then
quantize_weights) -- the same steps as its own quantize.py, which only differs
in resolving a hub id to a path."""
import argparse
import atexit
import json
import os
import shutil
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
ap.add_argument("--max-seqs", type=int, default=8)
ap.add_argument("--max-length", type=int, default=1022)
ap.add_argument("--batch-tokens", type=int, default=4096)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--length", type=int, default=256)
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ap.add_argument("--calib", default=os.path.join(REPO, "data", "proteins", "calib_sample.fasta"))
ap.add_argument("--calib-seqs", type=int, default=8)
ap.add_argument("--calib-length", type=int, default=256)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--skip-ort", action="store_true")
ap.add_argument("--skip-esmcpp", action="store_true")
ap.add_argument("--esmcpp-isa", default="",
                help="ESM_FORCE_ISA for esm.cpp ('' = its own pick, avx512vnni here)")
ap.add_argument("--esmcpp-stats",
                help="SmoothQuant activation stats JSON ({site: value}) to use instead of observing: "
                     "esm-cpp 0.2.1's avx512 fp32 forward returns NaN on this host, so its observer "
                     "stats are NaN; take them from a run with --esmcpp-isa avx2 --esmcpp-dump-stats")
ap.add_argument("--esmcpp-dump-stats", help="only observe esm.cpp calibration stats, write them here, exit")
ap.add_argument("--ort-batch", type=int, default=4)
ap.add_argument("--ort-length", type=int, default=256)
ap.add_argument("--json")
a = ap.parse_args()

# esm.cpp sizes its process-global pool from this at first model load
os.environ["ESM_NUM_THREADS"] = str(a.threads)
if a.esmcpp_isa:
    os.environ["ESM_FORCE_ISA"] = a.esmcpp_isa
# The peers' OpenBLAS (numpy, PyTorch's fp32 Linears) runs the kernels the
# proteus binary asks for (OPENBLAS_CORETYPE: engine/model/blas.c), not the
# SSE3 fallback of an OpenBLAS release that does not know the CPU.
sys.path.insert(0, os.path.join(REPO, "python"))
from proteus._blas import choose_core  # noqa: E402

choose_core()
print("OPENBLAS_CORETYPE:", os.environ.get("OPENBLAS_CORETYPE", "(unset: OpenBLAS's own pick)"))
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(a.threads)
ALPHA = "LAGVSERTIDPKQNFYMHWC"
LOADS = []


def load():
    la = os.getloadavg()[0]
    LOADS.append(la)
    return la


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


# ---- workloads: name -> (batches of residue strings, proteus bench args)
def uniform(B, T):
    seqs = ["".join(ALPHA[(t + s) % 20] for t in range(1, T - 1)) for s in range(B)]
    return [seqs], ["--batch", str(B), "--length", str(T)]


WL = {}
WL[f"uniform {a.batch} x {a.length}"] = uniform(a.batch, a.length)
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
    name = (f"dev_eval first {len(seqs)} seqs (<= {a.max_length} res., lengths "
            f"{min(map(len, seqs))}-{max(map(len, seqs))}), {len(batches)} batch(es)")
    WL[name] = (batches, ["--fasta", a.fasta, "--max-seqs", str(a.max_seqs), "--max-length", str(a.max_length),
                          "--batch-tokens", str(a.batch_tokens)])
for name, (b, _) in WL.items():
    nt = sum(len(s) + 2 for bb in b for s in bb)
    padded = sum(len(bb) * (2 + max(map(len, bb))) for bb in b)
    print(f"workload {name}: {nt} tokens ({padded} when padded); threads {a.threads}", flush=True)


# ---- engines: each a function(workload) -> seconds for one pass over its batches
def proteus_engine(model, extra=()):
    def run(wl):
        with tempfile.NamedTemporaryFile(suffix=".json") as jf:
            cmd = [a.proteus, "bench", "--model", model, "--threads", str(a.threads), "--reps", "1",
                   "--warmup", "1", "--logits", "--json", jf.name, *extra, *WL[wl][1]]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"proteus bench failed: {p.stderr}")
            r = json.load(open(jf.name))
            run.weight_bytes = r["weight_bytes"]
            run.rss = r["peak_rss_mib"]
            return r["min_s"]
    return run


ENG = {}
ENG["proteus fp32"] = proteus_engine(a.fp32)
ENG["proteus W8A8 int8 (dynamic, per-channel)"] = proteus_engine(a.int8)
# an int4 file quantized with the default scheme runs W4A8; --mode weight-only
# runs the same file on fp32 activations
ENG["proteus W4A8 int4 g128 (dynamic)"] = proteus_engine(a.int4)
ENG["proteus weight-only int4 g128"] = proteus_engine(a.int4, ("--mode", "weight-only"))

# PyTorch (fair-esm ESM2 with the same weights)
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
for k in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"):
    m["lm_head." + k] = sd["lm_head." + k]
missing, unexpected = model.load_state_dict(m, strict=False)
model.eval()
del sd, m
conv = alphabet.get_batch_converter()
TOKS = {wl: [conv([(str(i), s) for i, s in enumerate(bb)])[2] for bb in b] for wl, (b, _) in WL.items()}


def torch_engine(mod):
    def run(wl):
        with torch.no_grad():
            t0 = time.perf_counter()
            for t in TOKS[wl]:
                mod(t, repr_layers=[L])
            return time.perf_counter() - t0
    return run


ENG["PyTorch fp32 (fair-esm, padded)"] = torch_engine(model)
qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
ENG["PyTorch dynamic int8 (quantize_dynamic)"] = torch_engine(qmodel)

# esm.cpp: fp32 straight from the HF safetensors; int8 = its SmoothQuant W8A8
CHECKS = {}
esmcpp_note = ""
if not a.skip_esmcpp:
    try:
        import esm_cpp
        tk = esm_cpp.Tokenizer()
        IDS = {wl: [[np.asarray(tk.encode(s), dtype=np.int32) for s in bb] for bb in b] for wl, (b, _) in WL.items()}
        e32 = esm_cpp.Model.load_from_safetensors(a.fp32) if not a.esmcpp_dump_stats else None
        e8 = esm_cpp.Model.load_from_safetensors(a.fp32)
        t0 = time.perf_counter()
        if a.esmcpp_stats:
            stats = json.load(open(a.esmcpp_stats))
        else:
            obs = esm_cpp.ActivationObserver()
            for s in read_fasta(a.calib, a.calib_seqs, a.calib_length):
                ids = np.asarray(tk.encode(s), dtype=np.int32)
                e8.forward_with_observer(ids, np.ones_like(ids), obs)
            stats = obs.percentile(99.9)
        if a.esmcpp_dump_stats:
            json.dump(stats, open(a.esmcpp_dump_stats, "w"), indent=1)
            raise SystemExit(f"wrote {len(stats)} esm.cpp stats ({esm_cpp.current_isa()}, NaN: "
                             f"{sum(v != v for v in stats.values())}) to {a.esmcpp_dump_stats}")
        e8.apply_smoothquant(stats, 0.5)
        e8.quantize_weights()
        esmcpp_note = (f"esm-cpp {esm_cpp.__version__}, ISA {esm_cpp.current_isa()}, pool {e8.num_threads} threads, "
                       f"SmoothQuant alpha 0.5, stats {a.esmcpp_stats or f'{a.calib_seqs} calib seqs'}, "
                       f"calibrate+quantize {time.perf_counter() - t0:.1f} s, weights_quantized "
                       f"{e8.config.weights_quantized}")
        print("  " + esmcpp_note, flush=True)

        def esmcpp_engine(mod):
            def run(wl):
                t0 = time.perf_counter()
                for b in IDS[wl]:
                    mod.forward_scheduled(b)
                return time.perf_counter() - t0
            return run

        ENG["esm.cpp fp32"] = esmcpp_engine(e32)
        ENG["esm.cpp W8A8 int8 (SmoothQuant)"] = esmcpp_engine(e8)
        # same weights everywhere: logits of sequence 0 of the uniform batch, esm.cpp vs fair-esm
        wl0 = next(iter(WL))
        with torch.no_grad():
            ref = model(TOKS[wl0][0][:1])["logits"][0].numpy()
        for nm, mod in (("esm.cpp fp32", e32), ("esm.cpp int8", e8)):
            got = mod.forward(IDS[wl0][0][0])
            CHECKS[nm + " vs fair-esm fp32 logits"] = {
                "max_abs": float(np.abs(got - ref).max()),
                "corr": float(np.corrcoef(got.ravel(), ref.ravel())[0, 1])}
        print(f"  check: {CHECKS}", flush=True)
    except SystemExit:
        raise
    except Exception as e:  # report, do not hide
        esmcpp_note = f"esm.cpp failed: {type(e).__name__}: {str(e)[:300]}"
        print("  " + esmcpp_note, flush=True)

# ---- rounds: engines interleaved, best of N
BEST = {(e, wl): float("inf") for e in ENG for wl in WL}
for r in range(a.rounds):
    for wl in WL:
        for e, fn in ENG.items():
            if r == 0 and wl == next(iter(WL)) and e.startswith(("PyTorch", "esm.cpp")):
                fn(wl)  # warm-up once per process (proteus bench warms itself)
            la = load()
            s = fn(wl)
            BEST[(e, wl)] = min(BEST[(e, wl)], s)
            print(f"  round {r} {wl[:24]:24s} {e:42s} {s:8.3f} s  (load {la:.2f})", flush=True)
load()

ROWS = []
for wl, (b, _) in WL.items():
    nt = sum(len(s) + 2 for bb in b for s in bb)
    print(f"\n{wl}: best of {a.rounds}, tokens/s and ratios")
    tps = {e: nt / BEST[(e, wl)] for e in ENG}
    ref_names = [n for n in ("esm.cpp W8A8 int8 (SmoothQuant)", "PyTorch fp32 (fair-esm, padded)",
                             "PyTorch dynamic int8 (quantize_dynamic)") if n in tps]
    for e, v in tps.items():
        ratios = {n: v / tps[n] for n in ref_names}
        ROWS.append({"workload": wl, "engine": e, "tokens": nt, "best_s": BEST[(e, wl)], "tokens_per_s": v,
                     "ratios": ratios})
        print(f"  {e:42s} {v:8.1f} tok/s  " + "  ".join(f"x{x:5.2f} vs {n.split(' (')[0]}" for n, x in ratios.items()))
WB = {e: getattr(fn, "weight_bytes", None) for e, fn in ENG.items()}
print(f"proteus weights in memory: {WB}")

# ---- ONNX Runtime dynamic int8 (own workload: the export is slow for t33)
ort_note, ORT = "", {}
if not a.skip_ort:
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, t):
                return self.m(t, repr_layers=[L])["logits"]

        wl = f"uniform {a.ort_batch} x {a.ort_length}"
        WL[wl] = uniform(a.ort_batch, a.ort_length)
        TOKS[wl] = [conv([(str(i), s) for i, s in enumerate(WL[wl][0][0])])[2]]
        d = tempfile.mkdtemp(prefix="pq_bench_ort_")
        atexit.register(shutil.rmtree, d, True)  # the exported ONNX models
        f32, i8 = os.path.join(d, "m.onnx"), os.path.join(d, "m_i8.onnx")
        t0 = time.perf_counter()
        torch.onnx.export(Wrap(model), TOKS[wl][0], f32, input_names=["tokens"], output_names=["logits"],
                          dynamic_axes={"tokens": {0: "b", 1: "t"}}, opset_version=14)
        t_exp = time.perf_counter() - t0
        print(f"  ORT: export {t_exp:.1f} s", flush=True)
        t0 = time.perf_counter()
        quantize_dynamic(f32, i8, weight_type=QuantType.QInt8, use_external_data_format=True)
        t_q = time.perf_counter() - t0
        print(f"  ORT: quantize_dynamic {t_q:.1f} s", flush=True)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(i8, so, providers=["CPUExecutionProvider"])
        feed = {"tokens": TOKS[wl][0].numpy()}

        def ort_run(_):
            t0 = time.perf_counter()
            sess.run(None, feed)
            return time.perf_counter() - t0

        eng = {"ONNX Runtime dynamic int8": ort_run,
               "proteus W8A8 int8 (dynamic, per-channel)": ENG["proteus W8A8 int8 (dynamic, per-channel)"],
               "PyTorch dynamic int8 (quantize_dynamic)": ENG["PyTorch dynamic int8 (quantize_dynamic)"]}
        if "esm.cpp W8A8 int8 (SmoothQuant)" in ENG:
            IDS[wl] = [[np.asarray(tk.encode(s), dtype=np.int32) for s in WL[wl][0][0]]]
            eng["esm.cpp W8A8 int8 (SmoothQuant)"] = ENG["esm.cpp W8A8 int8 (SmoothQuant)"]
        ort_run(wl)
        best = {e: float("inf") for e in eng}
        for r in range(a.rounds):
            for e, fn in eng.items():
                la = load()
                s = fn(wl)
                best[e] = min(best[e], s)
                print(f"  round {r} {wl:24s} {e:42s} {s:8.3f} s  (load {la:.2f})", flush=True)
        nt = a.ort_batch * a.ort_length
        print(f"\n{wl}: best of {a.rounds}")
        for e, s in best.items():
            ORT[e] = nt / s
            ROWS.append({"workload": wl, "engine": e, "tokens": nt, "best_s": s, "tokens_per_s": nt / s,
                         "ratios": {"ONNX Runtime dynamic int8": (nt / s) / (nt / best["ONNX Runtime dynamic int8"])}})
            print(f"  {e:42s} {nt / s:8.1f} tok/s  x{best['ONNX Runtime dynamic int8'] / s:5.2f} vs ORT int8")
        ort_note = (f"ort {ort.__version__}: export {t_exp:.0f} s, quantize_dynamic {t_q:.0f} s, quantized model "
                    f"{sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if 'i8' in f) / 2**20:.0f} MiB")
        print("  " + ort_note, flush=True)
        subprocess.run(["rm", "-rf", d])
    except Exception as e:  # report, do not hide
        ort_note = f"ONNX Runtime: failed: {type(e).__name__}: {str(e)[:300]}"
        print("  " + ort_note, flush=True)

print(f"load average (1 min) during the rounds: min {min(LOADS):.2f}, max {max(LOADS):.2f}")
if a.json:
    json.dump({"threads": a.threads, "rounds": a.rounds, "rows": ROWS, "proteus_weight_bytes": WB,
               "ort_note": ort_note, "esm_cpp_note": esmcpp_note, "checks": CHECKS,
               "load_avg_min": min(LOADS), "load_avg_max": max(LOADS)}, open(a.json, "w"), indent=1)
