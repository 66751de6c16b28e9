# SPDX-License-Identifier: Apache-2.0
"""test_fq_peer.py - fake quantization and learned step sizes against
PyTorch, on layer 0's fc1 weight of the bundled model with steps from RTN:

- the fake-quantized weight equals torch.fake_quantize_per_channel_affine on
  the same scales and zero points (groups as channels of the weight reshaped
  to [rows * groups, group size]), bit for bit;
- the gradients of an upstream gradient with respect to the weight and the
  steps equal PyTorch autograd through LSQ written from the paper (Esser et
  al. 2020, "Learned Step Size Quantization": grad_scale and round_pass,
  g = 1 / sqrt(N_W Q_P) with N_W the weights sharing a step), norm-wise
  relative error <= 1e-5;
- int8 per-token activation fake quantization equals
  torch.fake_quantize_per_channel_affine with scale max(max|x|, 1e-5) / 127;
- static int8 activations (one learned step per Linear input): the forward
  equals torch.fake_quantize_per_tensor_affine (codes -127..127, no zero
  point), and the gradients with respect to the input and the step equal
  autograd through the paper's LSQ for activations (Q_N = Q_P = 127,
  g = 1 / sqrt(N Q_P), N the features of a token: the input width).

usage: python test_fq_peer.py FQ_DUMP [MODEL.safetensors]"""
import array
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import fairesm_ref  # noqa: E402

DRIVER = sys.argv[1]
MODEL = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "..", "data", "models",
                                                            "esm2_t6_8M_proteus_mlm.f16.safetensors")
TOL = 1e-5
TMP = tempfile.mkdtemp(prefix="pq_fq_")
atexit.register(shutil.rmtree, TMP, True)


def read_i32(path):
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.int32).clone()


class GradScale(torch.autograd.Function):
    """The paper's grad_scale (value x, gradient times scale). Its listing
    writes (x - x*scale).detach() + x*scale, which is not exactly x in fp32;
    this form keeps the value exact."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


def grad_scale(x, scale):
    return GradScale.apply(x, scale)


def round_pass(x):
    return (x.round() - x).detach() + x


def lsq(w, s, z, qmin, qmax, gs):
    """LSQ as in the paper's listing, with the zero point folded into the
    clamp bounds: w_hat = round(clamp(w / s, qmin - z, qmax - z)) * s."""
    g = 1.0 / (gs * qmax) ** 0.5
    s_ = grad_scale(s, g)[:, None]
    v = w * (1.0 / s_)
    lo, hi = (qmin - z)[:, None].float(), (qmax - z)[:, None].float()
    v = torch.clamp(v, min=lo, max=hi)
    return round_pass(v) * s_


def rel(a, b):
    return float((a.double() - b.double()).norm()) / max(float(b.double().norm()), 1e-30)


def check(bits, gs, sym):
    label = f"int{bits} {'group ' + str(gs) if gs else 'per-channel'} {'sym' if sym else 'asym'}"
    d = os.path.join(TMP, label.replace(" ", "_"))
    os.makedirs(d)
    rows, cols = 1280, 320  # fc1 of t6; the driver reports the real shape
    gen = torch.Generator().manual_seed(bits * 1000 + gs + sym)
    dwhat = torch.randn(rows * cols, generator=gen, dtype=torch.float32)
    with open(os.path.join(d, "dwhat.f32"), "wb") as f:
        f.write(array.array("f", dwhat.tolist()).tobytes())
    p = subprocess.run([DRIVER, MODEL, d, str(bits), str(gs), "1" if sym else "0"], capture_output=True, text=True)
    if p.returncode != 0:
        return [f"{label}: fq_dump failed: {p.stderr.strip()}"]
    r, c, ng, qmin, qmax = (int(x) for x in open(os.path.join(d, "shape.txt")).read().split())
    assert (r, c) == (rows, cols)
    g = c // ng
    w = fairesm_ref.read_f32(os.path.join(d, "w.f32")).reshape(r * ng, g)
    scale = fairesm_ref.read_f32(os.path.join(d, "scale.f32"))
    zp = torch.zeros(r * ng, dtype=torch.int32) if sym else read_i32(os.path.join(d, "zp.i32"))
    what = fairesm_ref.read_f32(os.path.join(d, "what.f32")).reshape(r * ng, g)
    dw = fairesm_ref.read_f32(os.path.join(d, "dw.f32")).reshape(r * ng, g)
    ds = fairesm_ref.read_f32(os.path.join(d, "ds.f32"))
    failures = []
    ref = torch.fake_quantize_per_channel_affine(w, scale, zp, 0, qmin, qmax)
    n_diff = int((ref != what).sum())
    if n_diff:
        failures.append(f"{label}: {n_diff} fake-quantized weights differ from torch.fake_quantize_per_channel_affine")
    wp = w.clone().requires_grad_()
    sp = scale.clone().requires_grad_()
    out = lsq(wp, sp, zp, qmin, qmax, g)
    if int((out.detach() != ref).sum()):
        failures.append(f"{label}: the LSQ listing's forward differs from fake_quantize (test bug)")
    (out * dwhat.reshape(r * ng, g)).sum().backward()
    e_w, e_s = rel(dw, wp.grad), rel(ds, sp.grad)
    if e_w > TOL:
        failures.append(f"{label}: weight gradient relative error {e_w:.3g}")
    if e_s > TOL:
        failures.append(f"{label}: step gradient relative error {e_s:.3g}")
    clipped = int((wp.grad == 0).sum())
    # activations: per row of the weight as a token
    x = w.reshape(r, c)
    s_act = torch.clamp(x.abs().amax(1), min=1e-5) / 127.0
    aref = torch.fake_quantize_per_channel_affine(x, s_act, torch.zeros(r, dtype=torch.int32), 0, -127, 127)
    act = fairesm_ref.read_f32(os.path.join(d, "act.f32")).reshape(r, c)
    n_act = int((aref != act).sum())
    if n_act:
        failures.append(f"{label}: {n_act} int8 per-token activations differ from torch")
    f_static = check_static(d, x, dwhat, c, label) if (bits, gs, sym) == (8, 0, True) else []
    print(f"{label}: weights exact={n_diff == 0}, dW rel {e_w:.1e}, d(step) rel {e_s:.1e}, clipped {clipped}, "
          f"activations exact={n_act == 0}")
    return failures + f_static


def check_static(d, x, dwhat, width, label):
    """Static activations: x's first tokens with the driver's step."""
    failures = []
    s = fairesm_ref.read_f32(os.path.join(d, "sact.f32"))
    xhat = fairesm_ref.read_f32(os.path.join(d, "xhat.f32"))
    n = xhat.numel()
    xs = x.reshape(-1)[:n]
    ref = torch.fake_quantize_per_tensor_affine(xs, float(s[0]), 0, -127, 127)
    n_diff = int((ref != xhat).sum())
    if n_diff:
        failures.append(f"{label}: {n_diff} static activations differ from torch.fake_quantize_per_tensor_affine")
    # LSQ for activations in fp64, rounding where the fp32 forward rounds:
    # v carries the fp32 value x * (1/s) and the gradient of x / s
    x64 = xs.double().requires_grad_()
    s64 = s.double().requires_grad_()
    v32 = (xs * (1.0 / s)).double()
    s_ = grad_scale(s64, 1.0 / (width * 127) ** 0.5)
    v = x64 / s_
    v = v + (v32 - v).detach()
    out = round_pass(torch.clamp(v, -127.0, 127.0)) * s_
    (out * dwhat[:n].double()).sum().backward()
    dx = fairesm_ref.read_f32(os.path.join(d, "dx.f32"))
    ds = fairesm_ref.read_f32(os.path.join(d, "dsact.f32"))
    e_x, e_s = rel(dx, x64.grad), rel(ds, s64.grad)
    if e_x > TOL:
        failures.append(f"{label}: static input gradient relative error {e_x:.3g}")
    if e_s > TOL:
        failures.append(f"{label}: static step gradient relative error {e_s:.3g} ({float(ds[0]):.6g} vs "
                        f"{float(s64.grad[0]):.6g})")
    clipped = int((x64.grad == 0).sum())
    print(f"{label}: static activations exact={n_diff == 0}, dx rel {e_x:.1e}, d(step) rel {e_s:.1e}, "
          f"clipped {clipped} of {n}")
    return failures


def main():
    failures = []
    for bits, gs, sym in [(8, 0, True), (4, 0, True), (4, 0, False), (4, 64, True), (4, 32, False), (8, 64, False)]:
        failures += check(bits, gs, sym)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
