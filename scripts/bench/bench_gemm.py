# SPDX-License-Identifier: Apache-2.0
"""bench_gemm.py - integer GEMM kernels against OpenBLAS and ONNX Runtime.

Runs the C driver (tests/gemm/bench_gemm, built by meson) for each operation
and times ONNX Runtime's MatMulInteger (one-node graph, int8 x int8 -> int32,
weights as an initializer) with the same shape and thread count, then prints a
table: best and median milliseconds and speed-up ratios (baseline time / our
time, > 1 means faster than the baseline). The machine may be shared, so every
measurement is repeated in --rounds interleaved rounds (sgemm, ORT, ours, ...
then again) and the best over all rounds is kept; "median" is the median of
the per-round medians. Rows marked "[avx2]" force the AVX2 variant
(PQ_KERNELS=avx2) next to the automatically chosen one. The W4A8 rows run
int4 weights (per-channel, or groups of 128) with per-token int8 activations
on the int8 kernels, against the same int8 baselines.

usage: .venv/bin/python scripts/bench/bench_gemm.py --build build [--threads 1,2]
           [--shapes 1280x5120,5120x1280] [--m 512,1] [--quick]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def run_c(exe, op, m, n, k, threads, reps, variant=None):
    env = dict(os.environ)
    if variant:
        env["PQ_KERNELS"] = variant
    out = subprocess.run([exe, op, str(m), str(n), str(k), str(threads), str(reps)],
                         check=True, capture_output=True, text=True, env=env).stdout.split()
    return float(out[5]), float(out[6]), out[7]


def interleaved(jobs, rounds):
    """jobs: {key: callable -> (best, median, name)}; runs each once per round
    in turn and returns {key: (best of bests, median of medians, name)}."""
    acc = {key: [] for key in jobs}
    for _ in range(rounds):
        for key, fn in jobs.items():
            acc[key].append(fn())
    out = {}
    for key, rs in acc.items():
        if rs[0][0] is None:
            out[key] = rs[0]
        else:
            out[key] = (min(r[0] for r in rs), statistics.median(r[1] for r in rs), rs[0][2])
    return out


def run_ort(m, n, k, threads, reps, a_unsigned=False):
    try:
        import numpy as np
        import onnx
        from onnx import TensorProto, helper
        import onnxruntime as ort
    except ImportError as e:
        return None, None, "onnxruntime missing: %s" % e
    rng = np.random.default_rng(1)
    a = (rng.integers(0, 256, size=(m, k), dtype=np.uint8) if a_unsigned
         else rng.integers(-127, 128, size=(m, k), dtype=np.int8))
    b = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
    node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    graph = helper.make_graph(
        [node], "mmi",
        [helper.make_tensor_value_info("A", TensorProto.UINT8 if a_unsigned else TensorProto.INT8,
                                       [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
        [helper.make_tensor("B", TensorProto.INT8, [k, n], b.tobytes(), raw=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    times = []
    for r in range(reps + 2):
        t0 = time.perf_counter()
        sess.run(None, {"A": a})
        if r >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    return min(times), statistics.median(times), "ort " + ort.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per round at M=512 (GEMV: x20)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--shapes", default="1280x5120", help="KxN weight shapes, comma-separated")
    ap.add_argument("--m", default="512,1", help="activation rows, comma-separated (1 = GEMV)")
    ap.add_argument("--quick", action="store_true",
                    help="only sgemm/sgemv, ORT and the quantize + GEMM + epilogue rows")
    a = ap.parse_args()
    exe = os.path.join(a.build, "tests", "gemm", "bench_gemm")
    if not os.path.exists(exe):
        sys.exit("bench_gemm: %s not found (ninja -C %s)" % (exe, a.build))
    rows = []
    variant, ort_name = "?", "onnxruntime not available"
    shapes = [tuple(int(v) for v in sh.split("x")) for sh in a.shapes.split(",")]
    full = {
        "gemm": [("i8i8", None, "pq int8xint8 -> int32"),
                 ("i8i8", "avx2", "pq int8xint8 -> int32 [avx2]"),
                 ("i8i8_f32", None, "pq int8xint8 + epilogue"),
                 ("w8a8", None, "pq quant + int8 GEMM + epilogue"),
                 ("w8a8", "avx2", "pq quant + int8 GEMM + epi [avx2]"),
                 ("w4a8", None, "pq quant + W4A8 per-channel"),
                 ("w4a8g", None, "pq quant + W4A8 g128"),
                 ("wonly8", None, "pq weight-only int8"),
                 ("wonly4", None, "pq weight-only int4 g128")],
        "gemv": [("i8i8_f32", None, "pq int8xint8 + epilogue"),
                 ("w8a8", None, "pq quant + int8 GEMV + epilogue"),
                 ("w8a8", "avx2", "pq quant + int8 GEMV + epi [avx2]"),
                 ("w4a8", None, "pq quant + W4A8 per-channel"),
                 ("w4a8g", None, "pq quant + W4A8 g128"),
                 ("wonly8", None, "pq weight-only int8"),
                 ("wonly4", None, "pq weight-only int4 g128")]}
    quick = ("w8a8", "w4a8", "w4a8g")
    plan = []
    for k, n in shapes:
        for m in [int(x) for x in a.m.split(",")]:
            ours = full["gemv" if m == 1 else "gemm"]
            if a.quick:
                ours = [o for o in ours if o[0] in quick and o[1] is None]
            plan.append((k, n, m, a.reps * 20 if m == 1 else a.reps,
                         "openblas sgemv (fp32)" if m == 1 else "openblas sgemm (fp32)", ours))
    for t in [int(x) for x in a.threads.split(",")]:
        for k, n, m, reps, base_key, ours in plan:
            jobs = {}
            jobs[base_key] = (lambda m=m, reps=reps, op="sgemm" if m > 1 else "sgemv", n=n, k=k:
                              run_c(exe, op, m, n, k, t, reps))
            if m == 1 and not a.quick:
                jobs["openblas sgemm (fp32)"] = lambda reps=reps, n=n, k=k: run_c(exe, "sgemm", 1, n, k, t, reps)
            jobs["onnxruntime MatMulInteger s8s8"] = (lambda m=m, reps=reps, n=n, k=k:
                                                      run_ort(m, n, k, t, reps, False))
            jobs["onnxruntime MatMulInteger u8s8"] = (lambda m=m, reps=reps, n=n, k=k:
                                                      run_ort(m, n, k, t, reps, True))
            for op, var, label in ours:
                jobs[label] = (lambda m=m, reps=reps, op=op, var=var, n=n, k=k:
                               run_c(exe, op, m, n, k, t, reps, var))
            res = interleaved(jobs, a.rounds)
            base = res[base_key][0]
            ort = [res[key][0] for key in res if key.startswith("onnxruntime")
                   and res[key][0] is not None]
            ort_best = min(ort) if ort else None
            for key, (best, med, name) in res.items():
                if best is None:
                    ort_name = name
                    continue
                if key.startswith("onnxruntime"):
                    ort_name = name
                    rows.append((k, n, m, t, key, best, med, base / best, None))
                elif key.startswith("openblas"):
                    rows.append((k, n, m, t, key, best, med, base / best, None))
                else:
                    if not key.endswith("[avx2]"):
                        variant = name
                    rows.append((k, n, m, t, key, best, med, base / best,
                                 ort_best / best if ort_best else None))
    print("shape: A [M, K] x W [N, K]^T; kernels variant %s; %s; %d interleaved rounds x %d reps"
          % (variant, ort_name, a.rounds, a.reps))
    print("ratio = baseline best time / this best time (OpenBLAS sgemm, sgemv at M=1);"
          " vs ORT uses the faster of s8s8/u8s8")
    print("%5s %5s %5s %3s  %-36s %10s %10s %9s %9s" % ("K", "N", "M", "thr", "operation", "best ms",
                                                        "median ms", "vs BLAS", "vs ORT"))
    for k, n, m, t, label, best, med, rb, ro in rows:
        print("%5d %5d %5d %3d  %-36s %10.3f %10.3f %8.2fx %9s" % (
            k, n, m, t, label, best, med, rb, "%.2fx" % ro if ro is not None else "-"))


if __name__ == "__main__":
    main()
