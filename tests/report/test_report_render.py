# SPDX-License-Identifier: Apache-2.0
"""test_report_render.py - `proteus report` drawn by headless Chromium.

Quantizes the bundled trained t6 model (int4, groups of 64), adds a
fallback trail to its /provenance with h5py, writes `evaluate --json` and
`optimize --json` fixtures whose numbers follow formulas, and renders the
page. Checks, each against an expectation made here:
  - the command's refusals (exit statuses 2, 3, 4; nothing written);
  - the page fetches nothing and runs nothing (no script, src, link, import);
  - Chromium's DOM holds a weight-SQNR, output-SQNR and recipe cell for
    every layer x Linear and two sensitivity cells each, the tables, the
    eight points of the front with one chosen, the four trail rows with one
    accepted; the weight SQNR of each cell is the one numpy computes from
    the safetensors weights and the file's codes dequantized by h5py; the
    output SQNR and sensitivity the fixtures' formulas; the escaped trail
    text shown as text;
  - the screenshot is not blank: many colours, and the ends of the SQNR
    scale (viridis #440154, #fde725) and the int4 colour painted.
SKIP (77) when chromium is not installed.
usage: test_report_render.py PROTEUS MODEL.safetensors"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pngread  # noqa: E402

SKIP = 77
LAYERS = 6
LIN = ["q", "k", "v", "o", "fc1", "fc2"]
HF = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
      "o": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense"}
FAILS = []


def check(ok, what):
    if not ok:
        FAILS.append(what)
        print("FAIL:", what)


def run(*args):
    return subprocess.run([PROTEUS, *args], capture_output=True, text=True, timeout=300)


def out_sqnr(l, i):
    return 20.0 + l + 0.5 * i


def d_loss(l, i, c):
    return (0.001 if c == 0 else 0.0001) * (l * 6 + i + 1)


def fixtures(tmp):
    ev = {"model": "q.h5", "reference": "M.safetensors", "fasta": "eval.fasta", "n_sequences": 20,
          "n_tokens": 4000, "n_masked": 600, "accuracy_reference": 0.41, "accuracy_quantized": 0.395,
          "perplexity_reference": 9.1, "perplexity_quantized": 9.8, "logits_kl_mean": 0.021,
          "logits_kl_max": 0.3, "logits_cosine_mean": 0.995, "embedding_cosine_mean": 0.999,
          "file_bytes_reference": 15000000, "file_bytes_quantized": 4867019, "tokens_per_s_reference": 5000,
          "tokens_per_s_quantized": 7000, "speedup": 1.4, "confidence_reference": 0.5,
          "confidence_quantized": 0.48, "ece_reference": 0.03, "ece_quantized": 0.035,
          "top1_error_reference": 0.59, "top1_error_quantized": 0.605, "top1_disagreement": 0.12,
          "utilization": {"kernel": "int8_avx2", "achieved_gops": 120.5, "peak_gops": 400, "fraction": 0.3,
                          "threads_busy": 1.8, "memory_gbps": 5.5},
          "linear_sqnr_db": [dict({"layer": l}, **{("out" if n == "o" else n): out_sqnr(l, i)
                                                   for i, n in enumerate(LIN)}) for l in range(LAYERS)]
          + [{"layer": "head", "lm_dense": 30.5}]}
    recipes = [{"precision": "int4", "group_size": 64, "symmetric": True, "per_channel": False},
               {"precision": "int8", "group_size": 0, "symmetric": True, "per_channel": True}]
    sens = [{"tensor": f"esm.encoder.layer.{l}.{HF[n]}.weight", "layer": l, "linear": n,
             "candidates": [{"recipe": r, "bytes": 1000 * (c + 1), "d_loss": d_loss(l, i, c), "kl": 0.01,
                             "estimate": 0.5} for c, r in enumerate(recipes)]}
            for l in range(LAYERS) for i, n in enumerate(LIN)]
    front = [{"label": f"cand{i}", "bytes": 3e6 + i * 1e6, "accuracy": 0.36 + 0.01 * i - 0.002 * i * i,
              "kl": 0.1 / (i + 1), "tokens_per_s": 6000 - 100 * i, "chosen": i == 3} for i in range(8)]
    op = {"model": "M.safetensors", "constraints": {"max_size_bytes": 8000000, "max_drop_points": None,
                                                    "min_speedup": None},
          "sensitivity": sens, "estimate_rank_correlation": 0.83, "front": front,
          "chosen": {"recipe_file": "recipe.json", "bytes": 6e6, "accuracy": 0.382, "reference_accuracy": 0.41,
                     "drop_points": 2.8, "kl": 0.025, "met": True}, "unmet": []}
    rec = lambda p: {"precision": p, "group_size": 0, "symmetric": True, "per_channel": p == "int8"}  # noqa: E731
    trail = [{"attempt": k + 1, "what": what, "recipe": rec(p), "kept_float": kept, "accuracy": acc,
              "reference_accuracy": 0.41, "drop": 0.41 - acc, "kl": 0.1, "bytes": 4e6, "accepted": k == 3}
             for k, (what, p, kept, acc) in enumerate([
                 ("requested", "int4", [], 0.30), ("fallback scheme dynamic", "int4", [], 0.31),
                 ("int4 -> int8", "int8", [], 0.40),
                 ("keep esm.encoder.layer.3.intermediate.dense.weight fp32 <script>x()</script>", "int8",
                  ["esm.encoder.layer.3.intermediate.dense.weight"], 0.409)])]
    paths = {k: os.path.join(tmp, k + ".json") for k in ("E", "O")}
    json.dump(ev, open(paths["E"], "w"), indent=1)
    json.dump(op, open(paths["O"], "w"), indent=1)
    return paths, trail, front


def safetensors_f32(path, names):
    """The named tensors of a safetensors file as float32 (fp16 or fp32 stored)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    out = {}
    for name in names:
        h = head[name]
        a, b = h["data_offsets"]
        dt = {"F16": np.float16, "F32": np.float32}[h["dtype"]]
        out[name] = np.frombuffer(raw, dt, (b - a) // np.dtype(dt).itemsize, 8 + n + a).reshape(h["shape"])
    return {k: v.astype(np.float32) for k, v in out.items()}


def dequant(g):
    """docs/FORMAT.md: w = (q - zp) * scale, 4-bit codes offset-binary, two a byte."""
    rows, cols = (int(x) for x in g.attrs["shape"])
    q = g["qweight"][()]
    if int(g.attrs["bits"]) == 4:
        lo = (q & 0xF).astype(np.int32) - 8
        hi = (q >> 4).astype(np.int32) - 8
        q = np.stack([lo, hi], axis=2).reshape(rows, -1)[:, :cols]
    q = q.astype(np.int32)
    scale = g["scale"][()]
    zp = g["zero_point"][()] if "zero_point" in g else np.zeros_like(scale, np.int32)
    gran = g.attrs["granularity"].decode()
    if gran == "group":
        gs = int(g.attrs["group_size"])
        idx = np.arange(cols) // gs
        s, z = scale[:, idx], zp[:, idx]
    elif gran == "channel":
        s, z = scale[:, None], zp[:, None]
    else:
        s, z = scale.reshape(1, 1), zp.reshape(1, 1)
    return ((q - z).astype(np.float32) * s).astype(np.float32)


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.el = []          # (tag, attrs)
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.el.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.el.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, tag, cls):
        return [a for t, a in self.el if t == tag and cls in (a.get("class") or "").split()]


def chromium_cmd(tmp):
    exe = os.environ.get("PQ_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        return None
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", "--disable-dev-shm-usage", "--user-data-dir=" + os.path.join(tmp, "chrome")]


def refusals(tmp, q):
    out = os.path.join(tmp, "never.html")
    r = run("report", os.path.join(tmp, "absent.h5"), "--out", out)
    check(r.returncode == 3 and "absent.h5" in r.stderr,
          f"missing model: exit 3 naming it ({r.returncode} {r.stderr!r})")
    txt = os.path.join(tmp, "notes.h5")
    open(txt, "w").write("not a model\n")
    r = run("report", txt, "--out", out)
    check(r.returncode == 4 and "notes.h5" in r.stderr, f"not a Proteus model: exit 4 ({r.returncode} {r.stderr!r})")
    bad = os.path.join(tmp, "bad.json")
    open(bad, "w").write('{"front": [{"bytes": 1, "accuracy": "high"}]}')
    r = run("report", q, "--optimize", bad, "--out", out)
    check(r.returncode == 4 and "bad.json: front[0].accuracy" in r.stderr,
          f"bad optimize JSON: exit 4 naming file and key ({r.returncode} {r.stderr!r})")
    open(bad, "w").write('{"accuracy_reference": 0.4,')
    r = run("report", q, "--evaluate", bad, "--out", out)
    check(r.returncode == 4 and "bad.json" in r.stderr and "line" in r.stderr,
          f"evaluate JSON that does not parse: exit 4 ({r.returncode} {r.stderr!r})")
    r = run("report", q)
    check(r.returncode == 2 and "--out" in r.stderr, f"no --out: exit 2 ({r.returncode} {r.stderr!r})")
    r = run("report", q, "--out", q)
    check(r.returncode == 2, f"--out naming the model: exit 2 ({r.returncode} {r.stderr!r})")
    check(not os.path.exists(out) and not os.path.exists(out + ".partial"), "a refused run writes nothing")
    r = run("report", "--help")
    check(r.returncode == 0 and "--evaluate" in r.stdout and "--optimize" in r.stdout, "report --help")


def main():
    global PROTEUS
    PROTEUS, model = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="pq_report_")
    try:
        q = os.path.join(tmp, "q.h5")
        r = run("quantize", "--model", model, "--out", q, "--precision", "int4", "--group-size", "64", "-q")
        if r.returncode:
            print(r.stdout, r.stderr)
            return 1
        refusals(tmp, q)
        chrome = chromium_cmd(tmp)
        if chrome is None:
            print("SKIP test_report_render.py: chromium is not installed (Debian package chromium; "
                  "scripts/deps.sh --peers installs it)" + (" after FAILURES" if FAILS else ""))
            return 1 if FAILS else SKIP
        paths, trail, front = fixtures(tmp)
        qt = os.path.join(tmp, "qt.h5")
        shutil.copy(q, qt)
        with h5py.File(qt, "r+") as f:
            f["provenance"].attrs["fallback_trail"] = np.bytes_(json.dumps(trail))
        page = os.path.join(tmp, "report.html")
        r = run("report", qt, "--evaluate", paths["E"], "--optimize", paths["O"], "--out", page)
        check(r.returncode == 0, f"report ran ({r.stderr})")
        check(not os.path.exists(page + ".partial"), "no .partial left")
        text = open(page, encoding="utf-8").read()
        for bad in ("<script", " src=", "<link", "@import", "<iframe", "https://"):
            check(bad not in text, f"the page holds no {bad!r}")
        check(text.count("http://") == text.count('xmlns="http://www.w3.org/2000/svg"'),
              "no http:// but the SVG namespace")
        check("url(" not in text.replace("url(#", ""), "no url() but the page's own gradients")

        dom_out = subprocess.run(chrome + ["--dump-dom", "file://" + page], capture_output=True, text=True,
                                 timeout=120)
        check(dom_out.returncode == 0 and "</html>" in dom_out.stdout, f"chromium --dump-dom ({dom_out.returncode})")
        dom = Dom()
        dom.feed(dom_out.stdout)
        all_cells = {(l, n) for l in range(LAYERS) for n in LIN}

        # weight SQNR: numpy on the source weights and h5py's dequantization of the file
        names = [f"esm.encoder.layer.{l}.{HF[n]}.weight" for l, n in sorted(all_cells)]
        src = safetensors_f32(model, names)
        want = {}
        with h5py.File(qt, "r") as f:
            for l, n in all_cells:
                name = f"esm.encoder.layer.{l}.{HF[n]}.weight"
                w = src[name].astype(np.float64)
                e = w - dequant(f["tensors"][name]).astype(np.float64)
                want[(l, n)] = 10 * math.log10((w * w).sum() / (e * e).sum())
            recipes = [v.decode() for v in f["recipe"].attrs.values()]
        cells = dom.having("rect", "cell-weight-sqnr")
        got = {(int(a["data-layer"]), a["data-linear"]): float(a["data-value"]) for a in cells}
        check(len(cells) == 36 and set(got) == all_cells, f"a weight-SQNR cell per layer x Linear ({len(cells)})")
        worst = max((abs(got[k] - want[k]) for k in want if k in got), default=1e9)
        check(worst < 5e-3, f"weight SQNR as numpy computes it (worst difference {worst:.2e} dB)")
        print(f"weight SQNR: 36 cells, worst difference from numpy {worst:.2e} dB")

        cells = dom.having("rect", "cell-output-sqnr")
        got = {(int(a["data-layer"]), a["data-linear"]): float(a["data-value"]) for a in cells}
        check(set(got) == all_cells and all(abs(got[(l, n)] - out_sqnr(l, LIN.index(n))) < 1e-4
                                            for l, n in all_cells), "output SQNR cells from evaluate's JSON")
        cells = dom.having("rect", "cell-sensitivity")
        got = {}
        for a in cells:
            got.setdefault((int(a["data-layer"]), a["data-linear"]), []).append(float(a["data-value"]))
        check(len(cells) == 72 and set(got) == all_cells and all(
            np.allclose(sorted(got[(l, n)]), sorted(d_loss(l, LIN.index(n), c) for c in (0, 1)), rtol=1e-5)
            for l, n in all_cells),
            f"two sensitivity cells per layer x Linear with the fixture's d_loss ({len(cells)})")
        cells = dom.having("rect", "cell-recipe")
        check(len(cells) == 36 and all(a["data-value"] == "int4" for a in cells), "recipe cells: int4 everywhere")
        rows = [a for t, a in dom.el if t == "tr" and "recipe-row" in (a.get("class") or "")]
        check(len(rows) == len(set(recipes)), f"one recipe row per distinct /recipe entry ({len(rows)} rows, "
              f"{len(set(recipes))} distinct)")

        ids = {a.get("id") for t, a in dom.el if t == "table"}
        for tid in ("size-table", "recipe-table", "accuracy-table", "utilization-table", "constraints-table",
                    "front-table", "trail-table", "provenance-table"):
            check(tid in ids, f"table #{tid}")
        keys = {a.get("data-key") for a in dom.having("tr", "metric-row")}
        for k in ("accuracy", "top1_error", "confidence", "ece", "perplexity", "logits_kl_mean",
                  "top1_disagreement", "tokens_per_s", "speedup"):
            check(k in keys, f"accuracy table row {k}")
        pts = dom.having("circle", "front-point")
        chosen = [a for a in pts if "chosen" in a["class"].split()]
        check(len(pts) == len(front), f"one point per front entry ({len(pts)})")
        check(len(chosen) == 1 and float(chosen[0]["data-bytes"]) == front[3]["bytes"], "the chosen point marked")
        trs = dom.having("tr", "trail-row")
        check(len(trs) == len(trail) and len(dom.having("tr", "accepted")) >= 1
              and sum("accepted" in a["class"].split() for a in trs) == 1, "trail rows, one accepted")
        check(not any(t == "script" for t, _ in dom.el), "no script element in the DOM")
        check(any("<script>x()</script>" in s for s in dom.text), "the trail's text shown as text")

        png = os.path.join(tmp, "shot.png")
        shot = subprocess.run(chrome + ["--window-size=1200,2400", "--screenshot=" + png, "file://" + page],
                              capture_output=True, text=True, timeout=120)
        check(shot.returncode == 0 and os.path.exists(png), f"chromium --screenshot ({shot.returncode})")
        if os.path.exists(png):
            img = pngread.read(png)
            packed = (img[:, :, 0].astype(np.uint32) << 16) | (img[:, :, 1].astype(np.uint32) << 8) | img[:, :, 2]
            colours = np.unique(packed)
            check(img.shape[:2] == (2400, 1200), f"screenshot size {img.shape}")
            check(len(colours) > 200, f"the picture is not blank ({len(colours)} colours)")
            for c, what in ((0x440154, "lowest SQNR"), (0xFDE725, "highest SQNR"), (0xE66101, "int4 recipe")):
                n = int((packed == c).sum())
                check(n > 200, f"#{c:06x} ({what}) painted: {n} pixels")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(FAILS)} failure(s)" if FAILS else "report render: ok")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
