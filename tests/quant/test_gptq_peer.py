# SPDX-License-Identifier: Apache-2.0
"""test_gptq_peer.py - Proteus's GPTQ against the paper's reference code
(../shared/peers/gptq: gptq.GPTQ with quant.Quantizer), fed the same inputs.

For Linears of the bundled trained model, the real inputs (calib_dump on
sequences of the calibration sample) and the real weights go to Proteus
(gptq_driver) and to the reference. The reference's Quantizer is given
Proteus's grid: signed codes [qmin, qmax] become the reference's unsigned
[0, maxq] with maxq = qmax - qmin and zero = zp - qmin, the scale as
Proteus's qparams contract computes it (find_params is replaced by that
formula; everything else, the solve included, is the reference's own).
The reference is fed the rows as n_tokens batches of one token, so that its
nsamples counts tokens as Proteus's 2/n does.

Checks, per Linear and configuration (int4 per channel, int4 group 128,
int8 per channel; with and without act-order, the reference's static
groups):
1. End to end (each side builds its own H from X): H agrees to fp32
   rounding; the codes are equal for >= 99 % of the weights; the output
   error ||(W - Q) X^T||^2 is at most 1.005 x the reference's over all cases
   (geometric mean of the ratios; measured 1.0013) and at most 1.05 x in
   every case.
2. The solve: Proteus's solve fed the reference's own (fp32) H, against
   the reference's algorithm run on the same H with its factor
   (torch.linalg.cholesky / cholesky_inverse) computed in fp64, the
   precision of Proteus's factor: output error at most 1.001 x over all
   cases (geometric mean) and 1.01 x in each, the spread that 1-ulp changes
   of H cause with the fp64 factor (below). The fp32 updates of the two
   sides still sum in their libraries' orders, which depend on the CPU: on
   the AMD build VM every case was within 1.001 x, on the Xeon VM one int8
   case with an error of 0.009 (a few codes decide it) is 1.0032 x. Why
   1.001 holds only at the same precision: the
   factor's precision alone moves the reference by up to 3 % (layer 4 fc2,
   int4 group 128: its fp64-factor error is 1.020 x its fp32-factor error,
   1.030 x asymmetric; Proteus fed its H matches those fp64 figures to 4-5
   digits), and 1-ulp changes of H move it by 1-2 % either way (sd of the
   log error over 10 random 1-ulp perturbations of H on those cases: 1.0 /
   2.0 % with the fp32 factor, 0.6 / 0.5 % with fp64; Proteus's own, 0.6 /
   0.8 %, around the fp64 reference's mean): the greedy column order makes the error
   chaotic at the percent level, so end to end Proteus and the reference
   agree only to the spread that 1-ulp and factor-precision differences
   cause. The fp32/fp64 ratio of the reference is printed for each case.

usage: test_gptq_peer.py CALIB_DUMP GPTQ_DRIVER MODEL FASTA"""
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "peers", "gptq"))
if not os.path.isdir(PEERS):
    PEERS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "peers", "gptq"))
N_SEQS = 24
SEQ_ROWS = 128  # rows per Hessian "sequence" of the driver

# (site, Linear) pairs: the q/k/v input, the fc1 input, the fc2 input (1280)
LINEARS = [
    ("layer.1.attn_in", "esm.encoder.layer.1.attention.self.query.weight"),
    ("layer.3.attn_out", "esm.encoder.layer.3.attention.output.dense.weight"),
    ("layer.2.ffn_in", "esm.encoder.layer.2.intermediate.dense.weight"),
    ("layer.4.ffn_mid", "esm.encoder.layer.4.output.dense.weight"),
]
CONFIGS = [  # name, bits, group (0: per channel), symmetric
    ("int4-channel", 4, 0, True),
    ("int4-g128", 4, 128, True),
    ("int8-channel", 8, 0, True),
    ("int4-g128-asym", 4, 128, False),
]


def load_tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        t = hdr[name]
        assert t["dtype"] == "F16"
        f.seek(8 + n + t["data_offsets"][0])
        raw = f.read(t["data_offsets"][1] - t["data_offsets"][0])
    return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(t["shape"])


def proteus_qparams(x, bits, sym):
    """Proteus's qparams contract (qspec.h pq_qparams) in fp32, per row of x,
    mapped onto the reference's unsigned grid."""
    qmin, qmax = (-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1) if sym else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    x = x.float()
    zero_t = torch.zeros(x.shape[0])
    min_neg = torch.minimum(x.min(1)[0], zero_t)
    max_pos = torch.maximum(x.max(1)[0], zero_t)
    eps = torch.tensor(torch.finfo(torch.float32).eps)
    if sym:
        scale = torch.maximum(torch.maximum(-min_neg, max_pos) / torch.tensor((qmax - qmin) / 2.0), eps)
        zp = torch.zeros_like(scale)
    else:
        scale = torch.maximum((max_pos - min_neg) / torch.tensor(float(qmax - qmin)), eps)
        zp = torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax)
    return scale, zp - qmin, qmax - qmin


def make_quantizer(quant, bits, sym):
    class ProteusGrid(quant.Quantizer):
        """The reference's Quantizer with Proteus's qparams (a method, so that
        the copies fasterquant makes for static groups keep their own)."""

        def find_params(self, x, weight=False):
            scale, zero, maxq = proteus_qparams(x.flatten(1), bits, sym)
            self.scale = scale.reshape(-1, 1)
            self.zero = zero.reshape(-1, 1)
            self.maxq = torch.tensor(maxq)

    q = ProteusGrid()
    q.configure(bits, perchannel=True, sym=sym, mse=False)
    return q


@contextlib.contextmanager
def factor_in_fp64():
    """The reference's cholesky and cholesky_inverse computed in fp64 and
    rounded to fp32: its algorithm with a factor at Proteus's precision."""
    chol, cinv = torch.linalg.cholesky, torch.cholesky_inverse
    torch.linalg.cholesky = lambda A, upper=False: chol(A.double(), upper=upper).to(A.dtype)
    torch.cholesky_inverse = lambda L: cinv(L.double()).to(L.dtype)
    try:
        yield
    finally:
        torch.linalg.cholesky, torch.cholesky_inverse = chol, cinv


def run_reference(gptq, quant, W, X, bits, group, sym, act_order, fp64_factor=False):
    layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data = torch.from_numpy(W.copy())
    g = gptq.GPTQ(layer)
    g.quantizer = make_quantizer(quant, bits, sym)
    # n_tokens batches of one token each: nsamples counts tokens
    g.add_batch(torch.from_numpy(X).unsqueeze(1), None)
    H = g.H.clone().double().numpy()
    with factor_in_fp64() if fp64_factor else contextlib.nullcontext():
        g.fasterquant(blocksize=128, percdamp=0.01, groupsize=group if group else -1, actorder=act_order,
                      static_groups=bool(act_order and group))
    return H, layer.weight.data.numpy().copy()


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    dump_exe, driver, model, fasta = sys.argv[1:]
    if not os.path.isdir(PEERS):
        print(f"SKIP test_gptq_peer.py: the GPTQ reference ({PEERS}) is absent (a plain clone); "
              "it lives in ../shared/peers/gptq")
        return SKIP
    sys.path.insert(0, PEERS)
    torch.cuda.synchronize = lambda: None
    torch.cuda.empty_cache = lambda: None
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with contextlib.redirect_stdout(io.StringIO()):
        import gptq  # noqa: E402
        import quant  # noqa: E402

    failures = []
    log_ratios = []
    solve_ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        sites = sorted({s for s, _ in LINEARS})
        subprocess.run([dump_exe, model, fasta, str(N_SEQS), tmp, *sites], check=True,
                       stdout=subprocess.DEVNULL)
        for site, wname in LINEARS:
            W = load_tensor(model, wname)
            d = W.shape[1]
            X = np.fromfile(os.path.join(tmp, site + ".f32"), dtype=np.float32).reshape(-1, d)
            wpath = os.path.join(tmp, "W.f32")
            W.tofile(wpath)
            Xd = X.astype(np.float64)
            for cname, bits, group, sym in CONFIGS:
                for act in (False, True):
                    out = os.path.join(tmp, "out")
                    os.makedirs(out, exist_ok=True)
                    subprocess.run([driver, os.path.join(tmp, site + ".f32"), str(d), str(SEQ_ROWS), wpath,
                                    str(W.shape[0]), str(bits), str(group), "1" if sym else "0",
                                    "1" if act else "0", out], check=True)
                    Hp = np.fromfile(os.path.join(out, "H.f64")).reshape(d, d)
                    codes = np.fromfile(os.path.join(out, "codes.i8"), dtype=np.int8).reshape(W.shape)
                    Qp = np.fromfile(os.path.join(out, "Q.f32"), dtype=np.float32).reshape(W.shape)
                    with contextlib.redirect_stdout(io.StringIO()):
                        Hr, Qr = run_reference(gptq, quant, W, X, bits, group, sym, act)
                    # H to fp32 rounding (the reference sums in fp32)
                    h_err = np.abs(Hp - Hr).max() / np.abs(Hp).max()
                    # the reference's codes: its dequantized values on Proteus's grid
                    G = 1 if group == 0 else -(-d // group)
                    scales = np.fromfile(os.path.join(out, "scales.f32"), dtype=np.float32).reshape(-1, G)
                    zps = np.fromfile(os.path.join(out, "zp.i32"), dtype=np.int32).reshape(-1, G)
                    col_g = np.arange(d) // (group if group else d)
                    sc = scales[:, col_g].astype(np.float64)
                    codes_r = np.rint(Qr.astype(np.float64) / sc) + (0 if sym else zps[:, col_g])
                    same = float(np.mean(codes_r == codes))
                    err_p = float(np.sum(((W.astype(np.float64) - Qp) @ Xd.T) ** 2))
                    err_r = float(np.sum(((W.astype(np.float64) - Qr) @ Xd.T) ** 2))
                    ratio = err_p / err_r
                    tag = f"{wname.replace('esm.encoder.', '')} {cname}{' act-order' if act else ''}"
                    print(f"{tag}: H rel err {h_err:.2e}, codes equal {100 * same:.2f} %, "
                          f"output error {err_p:.6g} vs reference {err_r:.6g} (x{ratio:.5f})")
                    if h_err > 1e-5:
                        failures.append(f"{tag}: H differs by {h_err:.2e} (relative to max |H|)")
                    if same < 0.99:
                        failures.append(f"{tag}: only {100 * same:.2f} % of the codes equal")
                    log_ratios.append(np.log(ratio))
                    if ratio > 1.05:
                        failures.append(f"{tag}: output error x{ratio:.5f} of the reference's")
                    # 2. the solve alone: both on the reference's H, both factors in fp64
                    hpath = os.path.join(tmp, "Href.f64")
                    Hr.tofile(hpath)
                    subprocess.run([driver, os.path.join(tmp, site + ".f32"), str(d), str(SEQ_ROWS), wpath,
                                    str(W.shape[0]), str(bits), str(group), "1" if sym else "0",
                                    "1" if act else "0", out, hpath], check=True)
                    Qs = np.fromfile(os.path.join(out, "Q.f32"), dtype=np.float32).reshape(W.shape)
                    with contextlib.redirect_stdout(io.StringIO()):
                        _, Q64 = run_reference(gptq, quant, W, X, bits, group, sym, act, fp64_factor=True)
                    err_s = float(np.sum(((W.astype(np.float64) - Qs) @ Xd.T) ** 2))
                    err_64 = float(np.sum(((W.astype(np.float64) - Q64) @ Xd.T) ** 2))
                    print(f"    same H, fp64 factors: output error {err_s:.6g} vs reference {err_64:.6g} "
                          f"(x{err_s / err_64:.5f}); the reference's fp64/fp32 factor ratio x{err_64 / err_r:.5f}")
                    solve_ratios.append(err_s / err_64)
                    if err_s > 1.01 * err_64:
                        failures.append(f"{tag}: on the reference's H, output error x{err_s / err_64:.5f} of the "
                                        "reference's with an fp64 factor")
    gmean = float(np.exp(np.mean(log_ratios)))
    smean = float(np.exp(np.mean(np.log(solve_ratios))))
    print(f"output error over {len(log_ratios)} cases: geometric mean x{gmean:.5f} of the reference's, "
          f"{sum(r > np.log(1.001) for r in log_ratios)} cases above x1.001; on the reference's H with fp64 "
          f"factors, geometric mean x{smean:.5f}, the largest ratio x{max(solve_ratios):.5f}")
    if gmean > 1.005:
        failures.append(f"output error: geometric mean x{gmean:.5f} of the reference's")
    if smean > 1.001:
        failures.append(f"on the reference's H: geometric mean x{smean:.5f} of the reference's with an fp64 factor")
    for f in failures:
        print("FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
