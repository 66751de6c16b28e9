# SPDX-License-Identifier: Apache-2.0
"""bench_gemm.py - integer GEMM kernels against OpenBLAS and ONNX Runtime.

Runs the C driver (tests/gemm/bench_gemm, built by meson) for each operation
and times ONNX Runtime's MatMulInteger (one-node graph, int8 x int8 -> int32,
weights as an initializer) with the same shape and thread count, then prints a
table: best and median milliseconds and speed-up ratios (baseline time / our
time, > 1 means faster than the baseline).

usage: .venv/bin/python scripts/bench/bench_gemm.py --build build-gemm [--threads 1,2]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def run_c(exe, op, m, n, k, threads, reps):
    out = subprocess.run([exe, op, str(m), str(n), str(k), str(threads), str(reps)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[5]), float(out[6]), out[7]


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


def ort_rows(rows, m, n, k, t, reps, base):
    """Times MatMulInteger with s8 and with u8 activations (its fast path
    without VNNI); 'vs ORT' compares against the faster of the two."""
    best, name = None, "onnxruntime not available"
    for uns, label in [(False, "onnxruntime MatMulInteger s8s8"),
                       (True, "onnxruntime MatMulInteger u8s8")]:
        b, med, name = run_ort(m, n, k, t, reps, uns)
        if b is None:
            return None, name
        rows.append((m, t, label, b, med, base / b, None))
        best = b if best is None else min(best, b)
    return best, name


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build-gemm")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=7, help="timed runs at M=512 (GEMV: x20)")
    a = ap.parse_args()
    exe = os.path.join(a.build, "tests", "gemm", "bench_gemm")
    if not os.path.exists(exe):
        sys.exit("bench_gemm: %s not found (ninja -C %s)" % (exe, a.build))
    k, n = 1280, 5120
    rows = []
    for t in [int(x) for x in a.threads.split(",")]:
        # GEMM at M=512
        m, reps = 512, a.reps
        base = run_c(exe, "sgemm", m, n, k, t, reps)
        rows.append((m, t, "openblas sgemm (fp32)", base[0], base[1], 1.0, None))
        ort_best, ort_name = ort_rows(rows, m, n, k, t, reps, base[0])
        for op, label in [("i8i8", "pq int8xint8 -> int32"),
                          ("i8i8_f32", "pq int8xint8 + epilogue"),
                          ("w8a8", "pq quant + int8 GEMM + epilogue"),
                          ("wonly8", "pq weight-only int8"),
                          ("wonly4", "pq weight-only int4 g128")]:
            r = run_c(exe, op, m, n, k, t, reps)
            rows.append((m, t, label, r[0], r[1], base[0] / r[0],
                         ort_best / r[0] if ort_best else None))
        # GEMV at M=1
        m, reps = 1, a.reps * 20
        gv = run_c(exe, "sgemv", m, n, k, t, reps)
        gm = run_c(exe, "sgemm", m, n, k, t, reps)
        rows.append((m, t, "openblas sgemv (fp32)", gv[0], gv[1], 1.0, None))
        rows.append((m, t, "openblas sgemm (fp32)", gm[0], gm[1], gv[0] / gm[0], None))
        ort_best, _ = ort_rows(rows, m, n, k, t, reps, gv[0])
        for op, label in [("i8i8_f32", "pq int8xint8 + epilogue"),
                          ("w8a8", "pq quant + int8 GEMV + epilogue"),
                          ("wonly8", "pq weight-only int8"),
                          ("wonly4", "pq weight-only int4 g128")]:
            r = run_c(exe, op, m, n, k, t, reps)
            rows.append((m, t, label, r[0], r[1], gv[0] / r[0],
                         ort_best / r[0] if ort_best else None))
    print("shape: A [M, K=%d] x W [N=%d, K]^T; kernels variant %s; %s" % (k, n, r[2], ort_name))
    print("ratio = baseline best time / this best time (OpenBLAS sgemm at M=512, sgemv at M=1)")
    print("%5s %3s  %-34s %10s %10s %9s %9s" % ("M", "thr", "operation", "best ms", "median ms",
                                                  "vs BLAS", "vs ORT"))
    for m, t, label, best, med, rb, ro in rows:
        print("%5d %3d  %-34s %10.3f %10.3f %8.2fx %9s" % (
            m, t, label, best, med, rb, "%.2fx" % ro if ro is not None else "-"))


if __name__ == "__main__":
    main()
