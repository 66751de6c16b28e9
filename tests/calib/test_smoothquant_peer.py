# SPDX-License-Identifier: Apache-2.0
"""test_smoothquant_peer.py - Proteus's SmoothQuant against the authors'
smooth_ln_fcs (../shared/peers/smoothquant/smooth.py, imported, not copied):
on the bundled trained model, fed the same per-channel activation maxima
(the act_absmax Proteus records in /smoothquant), the smoothing factors and
the smoothed LayerNorm and Linear weights agree within 1e-6 relative.
Proteus runs with the smoothed Linears kept in float (--exclude) so that
their weights can be compared directly. SKIP (77) when the peers are absent.

usage: test_smoothquant_peer.py PROTEUS MODEL CALIB_FASTA"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import types

import h5py
import numpy as np

SKIP = 77
PROTEUS, MODEL, CALIB = sys.argv[1:4]
PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "peers")
SMOOTH_PY = os.path.join(PEERS, "smoothquant", "smooth.py")


def load_smooth():
    """Import smooth.py; stub the transformers model modules this
    transformers version lacks (only their class names are imported)."""
    import transformers  # noqa: F401
    needed = {
        "transformers.models.opt.modeling_opt": ["OPTDecoderLayer"],
        "transformers.models.bloom.modeling_bloom": ["BloomBlock"],
        "transformers.models.llama.modeling_llama": ["LlamaDecoderLayer", "LlamaRMSNorm"],
        "transformers.models.mistral.modeling_mistral": ["MistralDecoderLayer", "MistralRMSNorm"],
        "transformers.models.mixtral.modeling_mixtral": ["MixtralDecoderLayer", "MixtralRMSNorm"],
        "transformers.models.falcon.modeling_falcon": ["FalconDecoderLayer"],
    }
    for mod, names in needed.items():
        try:
            m = importlib.import_module(mod)
            if all(hasattr(m, n) for n in names):
                continue
        except Exception:
            pass
        stub = types.ModuleType(mod)
        for n in names:
            setattr(stub, n, type(n, (), {}))
        sys.modules[mod] = stub
    spec = importlib.util.spec_from_file_location("peer_smooth", SMOOTH_PY)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def st_tensors(path):
    """The checkpoint's tensors as float32, read by the tests' own reader."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
    import stref
    return {k: v.astype(np.float32) for k, v in stref.read_safetensors(path).items()}


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def main():
    if not os.path.isfile(SMOOTH_PY):
        print(f"SKIP: {SMOOTH_PY} is absent (a plain clone has no ../shared/peers); the SmoothQuant "
              "peer check did not run")
        return SKIP
    import torch
    smooth = load_smooth()
    tmp = tempfile.mkdtemp(prefix="pq_sqpeer_")
    try:
        out = os.path.join(tmp, "sq.h5")
        worst = {}
        for alpha in ("0.5", "0.85"):
            cmd = [PROTEUS, "quantize", "--model", MODEL, "--out", out, "-q", "--smoothquant", alpha,
                   "--calibration-data", CALIB, "--exclude", "*attention.self.*.weight",
                   "--exclude", "*intermediate.dense.weight"]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                print(p.stdout, p.stderr)
                return 1
            src = st_tensors(MODEL)
            with h5py.File(out, "r") as f:
                g = f["smoothquant"]
                L = int(g.attrs["num_layers"])
                for layer in range(L):
                    pre = f"esm.encoder.layer.{layer}."
                    for site, ln_name, lins in (
                            ("attn_in", "attention.LayerNorm",
                             ["attention.self.query", "attention.self.key", "attention.self.value"]),
                            ("ffn_in", "LayerNorm", ["intermediate.dense"])):
                        sg = g[f"layer.{layer}.{site}"]
                        act = torch.from_numpy(sg["act_absmax"][()].copy())
                        D = act.numel()
                        ln = torch.nn.LayerNorm(D)
                        with torch.no_grad():
                            ln.weight.copy_(torch.from_numpy(src[pre + ln_name + ".weight"]))
                            ln.bias.copy_(torch.from_numpy(src[pre + ln_name + ".bias"]))
                        fcs = []
                        for lin in lins:
                            w = src[pre + lin + ".weight"]
                            fc = torch.nn.Linear(w.shape[1], w.shape[0])
                            with torch.no_grad():
                                fc.weight.copy_(torch.from_numpy(w))
                            fcs.append(fc)
                        # capture the factors the peer divides the LayerNorm weight by
                        captured = []
                        orig_div = torch.Tensor.div_

                        def div_(self, other, *a, **k):
                            captured.append(other.detach().clone())
                            return orig_div(self, other, *a, **k)
                        torch.Tensor.div_ = div_
                        try:
                            smooth.smooth_ln_fcs(ln, fcs, act, float(alpha))
                        finally:
                            torch.Tensor.div_ = orig_div
                        checks = {
                            "factors": (sg["scale"][()], captured[0].numpy()),
                            "ln.weight": (f[f"tensors/{pre}{ln_name}.weight/data"][()], ln.weight.detach().numpy()),
                            "ln.bias": (f[f"tensors/{pre}{ln_name}.bias/data"][()], ln.bias.detach().numpy()),
                        }
                        for lin, fc in zip(lins, fcs):
                            checks[lin.split(".")[-1] + ".weight"] = (
                                f[f"tensors/{pre}{lin}.weight/data"][()], fc.weight.detach().numpy())
                        for what, (mine, ref) in checks.items():
                            e = rel_err(mine, ref)
                            key = f"alpha {alpha} {site} {what}"
                            worst[key] = max(worst.get(key, 0.0), e)
        bad = {k: v for k, v in worst.items() if v > 1e-6}
        for k, v in sorted(worst.items()):
            print(f"{k:40s} max rel err {v:.2e}")
        if bad:
            print("FAIL: above 1e-6 relative:", bad)
            return 1
        print("OK: factors and smoothed LayerNorm/Linear weights equal smooth_ln_fcs's within 1e-6 relative")
        return 0
    finally:
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    sys.exit(main())
