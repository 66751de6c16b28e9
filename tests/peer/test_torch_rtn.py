#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_torch_rtn.py - peer test: Proteus RTN against PyTorch 1.13.

For int8 per-tensor and per-channel, symmetric ([-127,127]) and asymmetric
([-128,127]), the qparams of torch.ao MinMaxObserver / PerChannelMinMaxObserver
(custom quant_min/quant_max) and the codes of torch.quantize_per_tensor /
quantize_per_channel must equal ours bit for bit. Group-wise int8 is checked
as per-channel on the [rows*groups, gs] view; int4 as per-channel with the int4
range, torch's codes clamped to that range (torch has no 4-bit dtype and
clamps to the int8 storage range). NaN: torch's observer refuses the tensor,
and so do we (policy error). Metrics: against numpy in double.

usage: test_torch_rtn.py RTN_DUMP"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

RTN = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="pq_peer_rtn_")
atexit.register(shutil.rmtree, TMP, True)  # leave no test files behind
failures = []


def run_ours(w, bits, gran, gs, sym, policy="error"):
    rows, cols = w.shape
    src = os.path.join(TMP, "w.f32")
    np.ascontiguousarray(w, dtype=np.float32).tofile(src)
    prefix = os.path.join(TMP, "out")
    for ext in ("codes", "scale", "zp"):
        if os.path.exists(prefix + "." + ext):
            os.remove(prefix + "." + ext)
    p = subprocess.run([RTN, src, str(rows), str(cols), str(bits), gran, str(gs),
                        "sym" if sym else "asym", policy, "1", prefix],
                       capture_output=True, text=True)
    if p.returncode:
        return p.returncode, p.stderr, None
    codes = np.fromfile(prefix + ".codes", dtype=np.int8 if bits == 8 else np.uint8)
    scale = np.fromfile(prefix + ".scale", dtype=np.float32)
    zp = None if sym else np.fromfile(prefix + ".zp", dtype=np.int32)
    metrics = [float(v) for v in p.stdout.split()]
    return 0, (codes, scale, zp), metrics


def torch_ref(w, per_channel, sym, qmin, qmax):
    x = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    if per_channel:
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, quant_min=qmin, quant_max=qmax,
                                       qscheme=torch.per_channel_symmetric if sym else torch.per_channel_affine)
    else:
        obs = MinMaxObserver(dtype=torch.qint8, quant_min=qmin, quant_max=qmax,
                             qscheme=torch.per_tensor_symmetric if sym else torch.per_tensor_affine)
    obs(x)
    scale, zp = obs.calculate_qparams()
    if per_channel:
        q = torch.quantize_per_channel(x, scale.to(torch.float64), zp.to(torch.int64), 0, torch.qint8)
    else:
        q = torch.quantize_per_tensor(x, float(scale), int(zp), torch.qint8)
    return (q.int_repr().numpy(), scale.to(torch.float32).numpy().reshape(-1),
            zp.to(torch.int64).numpy().reshape(-1))


def unpack4(packed, rows, cols):
    b = packed.reshape(rows, -1).astype(np.int16)
    q = np.empty((rows, b.shape[1] * 2), dtype=np.int16)
    q[:, 0::2] = (b & 15) - 8
    q[:, 1::2] = (b >> 4) - 8
    return q[:, :cols]


def compare(name, w, bits=8, gran="channel", gs=0, sym=True):
    rows, cols = w.shape
    hi = 127 if bits == 8 else 7
    qmin, qmax = (-hi, hi) if sym else (-hi - 1, hi)
    rc, ours, metrics = run_ours(w, bits, gran, gs, sym)
    tag = f"{name} int{bits} {gran}{gs if gran == 'group' else ''} {'sym' if sym else 'asym'}"
    if rc:
        failures.append(f"{tag}: rtn_dump failed: {ours}")
        return
    codes, scale, zp = ours
    tw = w.reshape(rows * cols // gs, gs) if gran == "group" else w
    tq, ts, tz = torch_ref(tw, gran != "tensor", sym, qmin, qmax)
    tq = np.clip(tq.reshape(rows, cols), qmin, qmax)
    oq = codes.reshape(rows, cols) if bits == 8 else unpack4(codes, rows, cols)
    if not np.array_equal(scale.view(np.uint32), ts.view(np.uint32)):
        i = int(np.flatnonzero(scale.view(np.uint32) != ts.view(np.uint32))[0])
        failures.append(f"{tag}: scale[{i}] {scale[i]!r} != torch {ts[i]!r}")
        return
    if zp is not None and not np.array_equal(zp, tz):
        i = int(np.flatnonzero(zp != tz)[0])
        failures.append(f"{tag}: zero_point[{i}] {zp[i]} != torch {tz[i]}")
        return
    if sym and np.any(tz != 0):
        failures.append(f"{tag}: torch symmetric zero point not 0")
    if not np.array_equal(oq.astype(np.int16), tq.astype(np.int16)):
        r, c = np.argwhere(oq.astype(np.int16) != tq.astype(np.int16))[0]
        failures.append(f"{tag}: code[{r},{c}] {oq[r, c]} != torch {tq[r, c]} (w={w[r, c]!r})")
        return
    # metrics against numpy (double) from torch's dequantized values
    srow = np.repeat(ts.reshape(rows, -1), gs if gran == "group" else cols, axis=1)[:, :cols] \
        if gran != "tensor" else np.full((rows, cols), ts[0], np.float32)
    zrow = np.repeat(tz.reshape(rows, -1), gs if gran == "group" else cols, axis=1)[:, :cols] \
        if gran != "tensor" else np.full((rows, cols), tz[0])
    wh = ((tq - zrow).astype(np.float32) * srow).astype(np.float64)
    wd = w.astype(np.float64)
    ss, es, me = float(np.sum(wd * wd)), float(np.sum((wd - wh) ** 2)), float(np.max(np.abs(wd - wh)))
    if not (abs(metrics[0] - ss) <= 1e-9 * ss and abs(metrics[1] - es) <= 1e-9 * max(es, 1e-300)
            and metrics[2] == float(np.float32(me))):
        failures.append(f"{tag}: metrics {metrics[:3]} != numpy {[ss, es, me]}")


def matrices():
    rng = np.random.default_rng(1234)
    m = {}
    m["normal 48x300"] = rng.standard_normal((48, 300)).astype(np.float32) * 0.05
    m["normal odd 33x301"] = rng.standard_normal((33, 301)).astype(np.float32)
    m["heavy-tailed t(1.5) 40x257"] = rng.standard_t(1.5, (40, 257)).astype(np.float32)
    special = np.zeros((10, 37), np.float32)
    special[1] = 2.5                                   # constant
    special[2] = -np.abs(rng.standard_normal(37))     # negative only
    special[3] = 1e-30 * rng.standard_normal(37)       # tiny
    special[4] = rng.integers(-127, 127, 37) + 0.5     # ties at scale 1
    special[4, 0] = 127
    special[5] = (rng.integers(-127, 127, 37) + 0.5) * 0.5   # ties at scale 0.5
    special[5, 0] = 63.5
    special[6] = rng.integers(-51, 204, 37) + 0.5      # asym ties: [-51, 204] -> scale 1
    special[6, 0], special[6, 1] = -51, 204
    special[7] = 1e-40 * np.arange(37)                 # denormals
    special[8] = -3.0                                  # negative constant
    special[9] = rng.standard_normal(37) * 1e4
    m["special rows 10x37"] = special
    m["one column 5x1"] = rng.standard_normal((5, 1)).astype(np.float32)
    m["ties 4x17"] = np.tile(np.float32([127, -127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5,
                                         -126.5, 3.5, 4.5, 5.5, -5.5, 64.5, -64.5, 0]), (4, 1))
    return m


def main():
    mats = matrices()
    n = 0
    for name, w in mats.items():
        for gran in ("tensor", "channel"):
            for sym in (True, False):
                compare(name, w, 8, gran, 0, sym)
                n += 1
        compare(name, w, 4, "channel", 0, True)
        compare(name, w, 4, "channel", 0, False)
        n += 2
    g = np.random.default_rng(7).standard_normal((12, 256)).astype(np.float32)
    g[3, 64:128] = 0.0
    for gs in (32, 64, 128):
        for sym in (True, False):
            compare("group 12x256", g, 8, "group", gs, sym)
            compare("group 12x256", g, 4, "group", gs, sym)
            n += 2
    # NaN: torch's observer refuses (assert min <= max fails); so do we.
    w = mats["normal 48x300"].copy()
    w[7, 11] = np.nan
    torch_refused = False
    try:
        torch_ref(w, True, True, -127, 127)
    except (AssertionError, RuntimeError):
        torch_refused = True
    rc, err, _ = run_ours(w, 8, "channel", 0, True)
    if not torch_refused:
        failures.append("torch accepted a NaN weight (expected an assertion)")
    if rc != 3 or "tensor 'input': row 7 (column 11) holds NaN" not in err:
        failures.append(f"NaN weight: rtn_dump rc={rc} stderr={err!r}")
    n += 1
    for f in failures:
        print("FAIL:", f)
    print(f"{n - len(failures)}/{n} comparisons agree with torch {torch.__version__}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
