#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench_gptq.py - the GPTQ numerics against the paper's reference, in one
run on the same CPU and thread count:

1. the Hessian build: Proteus's exact accumulator (pq_hessian_add per
   sequence: fp64 dsyrk + 128-bit fixed-point sum, one BLAS thread) against
   BLAS dsyrk on the same rows in one call (fp64, one thread): the rate ratio;
2. the solve of a ROWS x D Linear (default 5120 x 1280, t33's fc1): Proteus
   (pq_gptq_prepare + pq_gptq_quantize_rows) against the reference's
   GPTQ.fasterquant (../shared/peers/gptq) on the same H and W, int4 per
   channel, block 128, with and without act-order, in interleaved rounds
   (Proteus, reference, Proteus, ...): the median of the rounds' ratios, by
   wall time and by CPU time (on a loaded machine the CPU time counts the
   work, not the waits for a core).

usage: .venv/bin/python scripts/bench/bench_gptq.py --build build
           [--threads 1] [--rows 5120] [--cols 1280] [--tokens 4096]
           [--hessian-shapes 1280x8x512,320x32x300] [--reps 5]
           [--kernels cpu]"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_peers():
    for p in (os.path.join(ROOT, "..", "shared", "peers", "gptq"), os.path.join(ROOT, "shared", "peers", "gptq")):
        if os.path.isdir(p):
            return os.path.normpath(p)
    return None


def run_reference(gptq, quant, W, H, threads, act_order):
    """One fasterquant on fresh copies: (wall s, CPU s)."""
    torch.set_num_threads(threads)
    layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data = torch.from_numpy(W.copy())
    g = gptq.GPTQ(layer)
    g.quantizer = quant.Quantizer()
    g.quantizer.configure(4, perchannel=True, sym=True, mse=False)
    g.H = torch.from_numpy(H.astype(np.float32))
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        g.fasterquant(blocksize=128, percdamp=0.01, groupsize=-1, actorder=act_order)
    return time.perf_counter() - t0, time.process_time() - c0


def run_proteus(exe, hp, wp, a, act_order):
    """One pq_gptq_prepare + pq_gptq_quantize_rows: (wall s, CPU s)."""
    out = subprocess.run([exe, "solve", hp, wp, str(a.rows), str(a.cols), str(a.threads), "4", "0",
                          "1" if act_order else "0", a.kernels], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout)
    return r["total_s"], r["total_cpu_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=5120)
    ap.add_argument("--cols", type=int, default=1280)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--hessian-shapes", default="1280x8x512,320x32x300")
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds (Hessian: repetitions)")
    ap.add_argument("--kernels", default="cpu", help="Proteus's kernel context (ref, avx2, avx512, cpu)")
    a = ap.parse_args()
    exe = os.path.join(a.build, "tests", "quant", "bench_gptq")
    report = {"threads": a.threads, "kernels": a.kernels, "hessian": [], "solve": []}

    for shape in filter(None, a.hessian_shapes.split(",")):  # "": the solve only
        d, ns, ln = shape.split("x")
        out = subprocess.run([exe, "hessian", d, ns, ln, str(a.reps)], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        report["hessian"].append(r)
        print(f"Hessian d={d}, {ns} sequences of {ln} tokens: dsyrk {r['dsyrk_gflops']:.2f} GFLOP/s, "
              f"Proteus {r['hessian_gflops']:.2f} GFLOP/s = {100 * r['ratio']:.1f} % of dsyrk")

    peers = find_peers()
    if not peers:
        print("the GPTQ reference (../shared/peers/gptq) is absent: solve comparison skipped")
        return 0
    sys.path.insert(0, peers)
    torch.cuda.synchronize = lambda: None
    with contextlib.redirect_stdout(io.StringIO()):
        import gptq
        import quant
    rng = np.random.default_rng(0)
    # correlated inputs: a random mixing of a few strong directions plus noise
    X = (rng.standard_normal((a.tokens, 64)) @ rng.standard_normal((64, a.cols)) * 0.3
         + rng.standard_normal((a.tokens, a.cols))).astype(np.float32)
    H = 2.0 / a.tokens * (X.astype(np.float64).T @ X.astype(np.float64))
    W = (rng.standard_normal((a.rows, a.cols)) * 0.02).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        hp, wp = os.path.join(tmp, "H.f64"), os.path.join(tmp, "W.f32")
        H.tofile(hp)
        W.tofile(wp)
        for act in (False, True):
            # interleaved rounds: each round runs Proteus, then the reference,
            # so both see the same load; a round's ratio compares neighbours
            rounds = []
            for _ in range(a.reps):
                pw, pc = run_proteus(exe, hp, wp, a, act)
                rw, rc = run_reference(gptq, quant, W, H, a.threads, act)
                rounds.append({"proteus_s": pw, "proteus_cpu_s": pc, "reference_s": rw, "reference_cpu_s": rc,
                               "speedup": rw / pw, "speedup_cpu": rc / pc})
            med = lambda k: float(np.median([r[k] for r in rounds]))  # noqa: E731
            best = min(r["reference_s"] for r in rounds) / min(r["proteus_s"] for r in rounds)
            report["solve"].append({"act_order": act, "rounds": rounds, "speedup_median": med("speedup"),
                                    "speedup_cpu_median": med("speedup_cpu"), "speedup_best": best})
            per_round = ", ".join(f"{r['speedup']:.2f}" for r in rounds)
            print(f"solve {a.rows} x {a.cols} int4 per channel{' act-order' if act else ''}, {a.threads} thread(s), "
                  f"{a.reps} interleaved rounds: Proteus {med('proteus_s'):.3f} s (CPU {med('proteus_cpu_s'):.3f} s), "
                  f"reference fasterquant {med('reference_s'):.3f} s (CPU {med('reference_cpu_s'):.3f} s): "
                  f"median ratio {med('speedup'):.2f}x wall, {med('speedup_cpu'):.2f}x CPU time, "
                  f"{best:.2f}x best against best (wall ratio by round: {per_round})")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
