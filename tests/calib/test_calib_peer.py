# SPDX-License-Identifier: Apache-2.0
"""Calibration methods against peers, on activations our observer saw on real
proteins (calib_dump): ONNX Runtime's HistogramCollector (entropy, percentile)
and MinMaxCalibrater, PyTorch's MinMaxObserver, and numpy references of the
NVIDIA entropy/percentile/mse searches written from NVIDIA pytorch-quantization's
calibrators as docs/CALIBRATION.md (Methods) states them.

Our histogram methods see activations rounded toward zero to MBITS = 8
mantissa bits (the fixed IEEE grid); peers are fed exactly those values (trunc), so the
expected agreement is bit-exact where the algorithm is the same:
  * derived histograms == np.histogram(trunc(x)) on our edges, bin for bin
  * ORT entropy/percentile (asymmetric, 2048 bins, 128 quantized bins): equal
    thresholds (entropy: or, on a float32 KL tie, ORT's KL at both within 1e-6)
  * ORT MinMax, torch MinMaxObserver on the raw values: equal min/max
  * NVIDIA entropy/percentile/mse (numpy reference): equal threshold
usage: test_calib_peer.py CALIB_DUMP MODEL FASTA"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime
from onnxruntime.quantization.calibrate import HistogramCollector

SITES = ["layer.0.attn_in", "layer.2.ffn_mid", "layer.5.attn_out"]
FAIL = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        FAIL.append(msg)


MBITS = 8  # the grid of docs/CALIBRATION.md


def trunc(x):
    u = x.view(np.uint32)
    fin = (u & 0x7F800000) != 0x7F800000
    out = u.copy()
    out[fin] &= np.uint32(~((1 << (23 - MBITS)) - 1) & 0xFFFFFFFF)
    return out.view(np.float32)


# ---- numpy references of the NVIDIA searches (not from the C code) ----
def nv_entropy(hist, nq=128, start=128):
    bins = hist.astype(np.float64).copy()
    bins[0] = bins[1]
    n = len(bins)
    div = []
    for i in range(start, n + 1):
        p = bins[:i].copy()
        p[i - 1] += bins[i:].sum()
        space = np.linspace(0, i, num=nq + 1)
        qidx = np.digitize(np.arange(i), space) - 1
        qidx[bins[:i] == 0] = -1
        cnt = np.zeros(nq)
        num = np.zeros(nq)
        for j in range(i):
            if qidx[j] != -1:
                cnt[qidx[j]] += bins[j]
                num[qidx[j]] += 1
        cnt[num > 0] /= num[num > 0]
        q = np.where(qidx >= 0, cnt[np.maximum(qidx, 0)], 0.0)
        if q.sum() == 0:
            div.append(np.inf)
            continue
        pn, qn = p / p.sum(), q / q.sum()
        m = pn > 0
        if np.any(qn[m] == 0):
            div.append(np.inf)
            continue
        div.append(float(np.sum(pn[m] * np.log(pn[m] / qn[m]))))
    div = np.array(div)
    last = len(div) - 1 - np.argmin(div[::-1])
    return start + last, div


def nv_percentile(hist, edges, p):
    cdf = np.cumsum(hist / hist.sum())
    return edges[np.searchsorted(cdf, p / 100.0)]


def nv_mse(hist, edges, start=128):
    c = ((edges[1:] + edges[:-1]) / np.float32(2)).astype(np.float32)
    best, best_i = np.inf, -1
    nz = hist > 0
    for i in range(start, len(c)):
        scale = np.float32(127) / c[i]
        q = np.clip(np.rint(c[nz] * scale), -127, 127).astype(np.float32)
        err = float(np.sum(((q / scale).astype(np.float64) - c[nz]) ** 2 * hist[nz])) / len(c)
        if err < best:
            best, best_i = err, i
    return c[best_i]


def ort_minmax(x):
    """ONNX Runtime's MinMaxCalibrater on a one-node Identity model."""
    import onnx
    from onnx import TensorProto, helper
    from onnxruntime.quantization.calibrate import CalibrationDataReader, MinMaxCalibrater

    d = x.shape[1]
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, d])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, True)  # leave no test files behind
    path = os.path.join(tmp, "id.onnx")
    onnx.save(model, path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": x[i:i + 512]} for i in range(0, len(x), 512)])

        def get_next(self):
            return next(self.it, None)

    cal = MinMaxCalibrater(path, op_types_to_calibrate=["Identity"],
                           augmented_model_path=os.path.join(tmp, "aug.onnx"))
    cal.augment_graph()
    cal.create_inference_session()
    cal.collect_data(Reader())
    r = cal.compute_data()
    lo, hi = r["y"].range_value
    return float(lo), float(hi)


def main():
    dump, model, fasta = sys.argv[1:4]
    out = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, out, True)  # leave no test files behind
    subprocess.run([dump, model, fasta, "12", out] + SITES, check=True)
    res = json.load(open(os.path.join(out, "results.json")))
    import torch
    for site in SITES:
        r = res[site]
        n_feat = len(r["chan_absmax"])
        x = np.fromfile(os.path.join(out, site + ".f32"), dtype=np.float32).reshape(-1, n_feat)
        xt = trunc(x.ravel())
        print(f"-- {site}: {x.shape[0]} tokens x {n_feat}")
        # raw statistics
        check(np.float32(r["min"]) == x.min() and np.float32(r["max"]) == x.max(), f"{site} min/max exact")
        check(np.array_equal(np.array(r["chan_absmax"], dtype=np.float32), np.abs(x).max(axis=0)),
              f"{site} per-channel absmax exact")
        obs = torch.ao.quantization.MinMaxObserver()
        for i in range(0, len(x), 300):  # several batches, as an observer sees them
            obs(torch.from_numpy(x[i:i + 300]))
        check(obs.min_val.item() == r["min"] and obs.max_val.item() == r["max"],
              f"{site} torch MinMaxObserver min/max equal")
        lo, hi = ort_minmax(x)
        check(np.float32(lo) == np.float32(r["minmax_asym"]["lo"]) and
              np.float32(hi) == np.float32(r["minmax_asym"]["hi"]), f"{site} ORT MinMaxCalibrater equal")
        # derived histograms are np.histogram of the truncated values
        ae = np.array(r["abs_edges"], dtype=np.float32)
        ah = np.array(r["abs_hist"], dtype=np.int64)
        h, e = np.histogram(np.abs(xt), 2048, range=(np.float32(0), ae[-1]))
        check(np.array_equal(e.astype(np.float32), ae) and np.array_equal(h, ah), f"{site} |x| histogram == np.histogram")
        se = np.array(r["signed_edges"], dtype=np.float32)
        sh = np.array(r["signed_hist"], dtype=np.int64)
        T = np.float32(max(abs(xt.min()), abs(xt.max())))
        h, e = np.histogram(xt, 2048, range=(-T, T))
        check(np.array_equal(e.astype(np.float32), se) and np.array_equal(h, sh), f"{site} signed histogram == np.histogram")
        # ONNX Runtime: entropy and percentile, asymmetric, same bins
        for method, key in (("entropy", "entropy_asym"), ("percentile", "percentile_asym")):
            hc = HistogramCollector(method=method, symmetric=False, num_bins=2048, num_quantized_bins=128,
                                    percentile=99.99, scenario="same")
            hc.collect({"t": [xt]})
            got = hc.compute_collection_result()["t"]
            olo, ohi = float(got[0]), float(got[1])
            ours = (np.float32(r[key]["lo"]), np.float32(r[key]["hi"]))
            same = ours == (np.float32(olo), np.float32(ohi))
            check(same, f"{site} ORT {method}: ours [{ours[0]:.6g}, {ours[1]:.6g}] vs ORT [{olo:.6g}, {ohi:.6g}]")
        # NVIDIA-style symmetric searches, numpy reference on the same |x| histogram
        i, div = nv_entropy(ah)
        check(np.float32(r["entropy_sym"]["amax"]) == ae[i],
              f"{site} NVIDIA entropy amax ours {r['entropy_sym']['amax']:.6g} vs ref {ae[i]:.6g}")
        check(abs(r["entropy_sym"]["kl"] - div[i - 128]) <= 1e-9 * max(1.0, abs(div[i - 128])), f"{site} KL at choice")
        check(np.float32(r["percentile_sym"]["amax"]) == nv_percentile(ah, ae, 99.99), f"{site} NVIDIA percentile")
        check(np.float32(r["mse_sym"]["amax"]) == nv_mse(ah, ae), f"{site} NVIDIA mse")
    if FAIL:
        print(f"{len(FAIL)} check(s) failed")
        sys.exit(1)
    print("all checks passed (onnxruntime", onnxruntime.__version__, ", torch", torch.__version__, ")")


if __name__ == "__main__":
    main()
