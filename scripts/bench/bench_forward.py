#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench_forward.py - tokens/s of the C fp32 ESM-2 forward against fair-esm
on PyTorch fp32 with the same thread count, for synthetic t12/t33-shaped
models (or a given checkpoint), on a batch of B sequences of T tokens.

usage: .venv/bin/python scripts/bench/bench_forward.py --build build
           [--arch esm2_t12_35M_UR50D ...] [--model FILE] [--threads 2]
           [--batch 4] [--tokens 256] [--reps 3] [--workdir /tmp/pq_bench]
The fair-esm batch has no padding (all rows the same length), so both sides
do the same arithmetic."""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "model"))
import fairesm_ref  # noqa: E402

AA = "LAGVSERTIDPKQNFYMHWC"


def sequences(n, length, seed=0):
    rnd = random.Random(seed)
    return ["".join(rnd.choice(AA) for _ in range(length)) for _ in range(n)]


def bench_torch(model_path, seqs, threads, reps):
    torch.set_num_threads(threads)
    model, _, _ = fairesm_ref.build_fairesm(model_path)
    bc = model.alphabet.get_batch_converter()
    _, _, tokens = bc([(str(i), s) for i, s in enumerate(seqs)])
    best = float("inf")
    with torch.no_grad():
        logits = model(tokens)["logits"]  # warm-up, and the reference for the accuracy check
        for _ in range(reps):
            t0 = time.perf_counter()
            model(tokens)
            best = min(best, time.perf_counter() - t0)
    del model
    return tokens.numel() / best, logits


def max_logit_diff(build, model_path, seqs, ref_logits, threads):
    """Largest |C - fair-esm| logit over the batch (no padding: equal lengths)."""
    drv = os.path.join(build, "tests", "model", "forward_dump")
    d = tempfile.mkdtemp(prefix="pq_bench_fwd_")
    subprocess.run([drv, model_path, d, "--threads", str(threads), *seqs], capture_output=True, check=True)
    c = fairesm_ref.read_f32(os.path.join(d, "logits.f32"), 33).reshape(ref_logits.shape)
    shutil.rmtree(d)
    return float((c - ref_logits).abs().max())


def bench_c(build, model_path, seqs, threads, reps):
    drv = os.path.join(build, "tests", "model", "forward_dump")
    p = subprocess.run([drv, model_path, "/tmp", "--threads", str(threads), "--bench", str(reps), *seqs],
                       capture_output=True, text=True, check=True)
    vals = dict(line.split() for line in p.stdout.splitlines())
    return float(vals["tokens_per_s"]), vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--arch", action="append")
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/pq_bench")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    seqs = sequences(a.batch, a.tokens - 2)
    models = []
    if a.model:
        models.append((os.path.basename(a.model), a.model))
    for arch in a.arch or ([] if a.model else ["esm2_t12_35M_UR50D", "esm2_t33_650M_UR50D"]):
        path = os.path.join(a.workdir, arch + ".safetensors")
        if not os.path.exists(path):
            subprocess.run([os.path.join(a.build, "cli", "proteus"), "synth", "--arch", arch,
                            "--seed", "1", "--out", path], check=True)
        models.append((arch, path))
    print(f"batch {a.batch} x {a.tokens} tokens, {a.threads} threads, best of {a.reps}")
    for name, path in models:
        c, v = bench_c(a.build, path, seqs, a.threads, a.reps)
        t, ref_logits = bench_torch(path, seqs, a.threads, a.reps)
        diff = max_logit_diff(a.build, path, seqs, ref_logits, a.threads)
        print(f"{name:24s} C {c:9.1f} tok/s   fair-esm/PyTorch {t:9.1f} tok/s   ratio {c / t:5.2f}x   "
              f"C peak RSS {float(v['peak_rss_mb']):.0f} MiB (weights {float(v['weights_mb']):.0f} MiB, "
              f"weights + 2 layers of activations {float(v['bound_mb']):.0f} MiB)   "
              f"max |logit diff| vs fair-esm {diff:.1e}")


if __name__ == "__main__":
    main()
