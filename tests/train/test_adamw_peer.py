# SPDX-License-Identifier: Apache-2.0
"""test_adamw_peer.py - one AdamW step of the C optimizer against
torch.optim.AdamW from the same parameters, gradient and moments, at the
first step and at a later one (bias corrections), with and without weight
decay: parameters and both moments within 1e-6 relative (norm-wise).

usage: python test_adamw_peer.py ADAMW_DUMP"""
import array
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import torch

DRIVER = sys.argv[1]
TOL = 1e-6
TMP = tempfile.mkdtemp(prefix="pq_adamw_")
atexit.register(shutil.rmtree, TMP, True)


def put(d, name, t):
    with open(os.path.join(d, name), "wb") as f:
        f.write(array.array("f", t.tolist()).tobytes())


def get(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return torch.tensor(array.array("f", f.read()), dtype=torch.float32)


def rel(a, b):
    return float((a.double() - b.double()).norm()) / max(float(b.double().norm()), 1e-30)


def check(step, lr, wd, b1, b2, eps, seed):
    d = os.path.join(TMP, f"s{step}_{wd}")
    os.makedirs(d)
    gen = torch.Generator().manual_seed(seed)
    n = 50000
    p = torch.randn(n, generator=gen) * 0.05
    g = torch.randn(n, generator=gen) * 1e-3
    m = torch.randn(n, generator=gen) * 1e-3 if step > 1 else torch.zeros(n)
    v = torch.rand(n, generator=gen) * 1e-6 if step > 1 else torch.zeros(n)
    for name, t in (("p.f32", p), ("g.f32", g), ("m.f32", m), ("v.f32", v)):
        put(d, name, t)
    r = subprocess.run([DRIVER, d, str(step), repr(lr), repr(wd), repr(b1), repr(b2), repr(eps)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return [f"adamw_dump failed: {r.stderr.strip()}"]
    param = torch.nn.Parameter(p.clone())
    opt = torch.optim.AdamW([param], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    if step > 1:
        opt.state[param] = {"step": torch.tensor(float(step - 1)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    param.grad = g.clone()
    opt.step()
    st = opt.state[param]
    errs = {"p": rel(get(d, "p1.f32"), param.detach()), "m": rel(get(d, "m1.f32"), st["exp_avg"]),
            "v": rel(get(d, "v1.f32"), st["exp_avg_sq"]),
            "update": rel(get(d, "p1.f32") - p, param.detach() - p)}
    print(f"step {step} lr {lr} wd {wd}: " + ", ".join(f"{k} {e:.1e}" for k, e in errs.items()))
    return [f"step {step} wd {wd}: {k} relative error {e:.3g}" for k, e in errs.items() if e > TOL]


def main():
    failures = []
    failures += check(1, 1e-3, 0.0, 0.9, 0.999, 1e-8, 1)
    failures += check(1, 1e-3, 0.01, 0.9, 0.999, 1e-8, 2)
    failures += check(37, 3e-4, 0.05, 0.9, 0.98, 1e-6, 3)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
