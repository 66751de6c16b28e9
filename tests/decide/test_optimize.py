# SPDX-License-Identifier: Apache-2.0
"""test_optimize.py - `proteus optimize` end to end on the bundled model,
kept small (2 calibration sequences, 4 held-out ones, 64 residues):
--max-size between the uniform int4 and int8 files gives a recipe that
`proteus quantize --recipe` turns into a file under the budget, whose
accuracy `proteus evaluate` finds to be what optimize reported and at least
that of every uniform recipe that fits; one cell's d_loss is what `proteus
score` finds with only that Linear quantized; --max-drop 0.5 gives a file within
0.5 points by `proteus evaluate`; a budget nothing meets exits 13 naming it
and writes no recipe, as does a speedup nothing reaches; bad options exit 2
naming the option.

usage: test_optimize.py PROTEUS MODEL CALIB.fasta EVAL.fasta"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import expect, finish, path, scratch  # noqa: E402

PROTEUS, MODEL, CALIB, EVAL = (os.path.abspath(a) for a in sys.argv[1:5])
TMP = scratch("pq_optimize_", keep_on_failure=True)
SMALL = ["--calibration-data", CALIB, "--calibration-seqs", "2", "--eval-data", EVAL, "--eval-seqs", "4",
         "--max-length", "64", "--threads", "1", "--tmp-dir", TMP, "-q"]
def run(*args):
    p = subprocess.run([PROTEUS, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def optimize(name, *args):
    return run("optimize", "--model", MODEL, "--out", path(name + ".recipe.json"), "--json", path(name + ".json"),
               *SMALL, *args)


def quantize_and_evaluate(name):
    """The recipe through the ordinary commands: size and accuracy drop."""
    h5 = path(name + ".h5")
    rc, _, err = run("quantize", "--model", MODEL, "--recipe", path(name + ".recipe.json"), "--out", h5)
    expect(rc == 0, f"{name}: quantize --recipe failed: {err}")
    rc, _, err = run("evaluate", "--model", h5, "--reference", MODEL, "--fasta", EVAL, "--max-seqs", "4",
                     "--max-length", "64", "--threads", "1", "--json", path(name + ".eval.json"))
    expect(rc == 0, f"{name}: evaluate failed: {err}")
    ev = json.load(open(path(name + ".eval.json")))
    return os.path.getsize(h5), ev


# 1. a loose run measures the table once (reused below with --sensitivity-in)
rc, out, err = optimize("loose", "--max-drop", "100")
expect(rc == 0, f"loose run: exit {rc}: {err}")
loose = json.load(open(path("loose.json")))
sens = loose["sensitivity"]
expect(len(sens) == 36 and all(len(s["candidates"]) == 5 for s in sens),
       "36 Linears x 5 candidates (int4-ch, int4-g64, int8-ch, fp16, fp32)")
expect(sorted({s["linear"] for s in sens}) == sorted(["q", "k", "v", "o", "fc1", "fc2"]), "the six Linears")
expect(all(c["kl"] == 0 and c["d_loss"] == 0 for s in sens for c in s["candidates"]
           if c["recipe"]["precision"] == "fp32"), "fp32 costs nothing")
# the bundled model's weights are fp16 values: fp16 changes nothing
expect(all(c["kl"] == 0 for s in sens for c in s["candidates"] if c["recipe"]["precision"] == "fp16"),
       "fp16 of an fp16-exact checkpoint has KL 0")
# int4 hurts more than int8 for every Linear
for s in sens:
    kl = {(c["recipe"]["precision"], c["recipe"]["group_size"]): c["kl"] for c in s["candidates"]}
    expect(kl[("int4", 0)] > kl[("int8", 0)] > 0, f"{s['tensor']}: int4 KL > int8 KL > 0")
expect(-1 <= loose["estimate_rank_correlation"] <= 1, "a rank correlation")
uni = {f["label"]: f for f in loose["front"] if f["label"].startswith("uniform")}
expect(set(uni) == {"uniform int4-ch", "uniform int4-g64", "uniform int8-ch", "uniform fp16"}, f"uniform: {set(uni)}")
s_json = path("loose.json")

# a cell against the ordinary commands: only that Linear quantized (quantize
# --recipe), its weights dequantized to fp32 (score --mode dequant) on the same
# masked calibration sequences: the change of the pooled mean NLL is d_loss
cell = next(c for c in sens[4]["candidates"] if c["recipe"]["precision"] == "int4" and not c["recipe"]["group_size"])
one = path("one.recipe.json")
with open(one, "w") as f:
    json.dump({"rules": [{"tensors": sens[4]["tensor"], "precision": "int4", "per_channel": True,
                          "symmetric": True},
                         {"linears": ["q", "k", "v", "o", "fc1", "fc2"], "precision": "fp32"}]}, f)
rc, _, err = run("quantize", "--model", MODEL, "--recipe", one, "--out", path("one.h5"), "-q")
expect(rc == 0, f"quantize one Linear: {err}")
nll = []
for m, mode in [(MODEL, []), (path("one.h5"), ["--mode", "dequant"])]:
    rc, _, err = run("score", "--model", m, "--fasta", CALIB, "--max-seqs", "2", "--max-length", "64", "--threads", "1",
                     "--json", path("score.json"), *mode)
    expect(rc == 0, f"score {m}: {err}")
    nll.append(json.load(open(path("score.json")))["mean_nll"])
    os.unlink(path("score.json"))
d = nll[1] - nll[0]
expect(sens[4]["linear"] == "fc1" and abs(d - cell["d_loss"]) <= 1e-6 + 1e-3 * abs(d),
       f"{sens[4]['tensor']} int4-ch: d_loss {cell['d_loss']}, score says {d}")

# 2. --max-size between uniform int4 and int8
budget = (uni["uniform int4-g64"]["bytes"] + uni["uniform int8-ch"]["bytes"]) // 2
rc, out, err = optimize("size", "--sensitivity-in", s_json, "--max-size", str(budget))
expect(rc == 0, f"--max-size {budget}: exit {rc}: {err}")
if rc == 0:
    o = json.load(open(path("size.json")))
    expect(o["constraints"] == {"max_size_bytes": budget, "max_drop_points": None, "min_speedup": None},
           f"constraints {o['constraints']}")
    ch = o["chosen"]
    expect(ch["met"] and ch["bytes"] <= budget, f"chosen {ch}")
    size, ev = quantize_and_evaluate("size")
    expect(abs(size - ch["bytes"]) < 4096, f"quantize --recipe wrote {size} bytes, optimize measured {ch['bytes']}")
    expect(size <= budget, f"{size} bytes over the budget {budget}")
    expect(abs(ev["accuracy_quantized"] - ch["accuracy"]) < 1e-12,
           f"evaluate: accuracy {ev['accuracy_quantized']}, optimize said {ch['accuracy']}")
    for f in o["front"]:
        if f["label"].startswith("uniform") and f["bytes"] <= budget:
            expect(ch["accuracy"] >= f["accuracy"], f"{f['label']} fits and is more accurate")
    expect(sum(f["chosen"] for f in o["front"]) == 1, "one chosen front entry")
    expect(o["unmet"] == [], "nothing unmet")

# 3. --max-drop 0.5
rc, out, err = optimize("drop", "--sensitivity-in", s_json, "--max-drop", "0.5")
expect(rc == 0, f"--max-drop 0.5: exit {rc}: {err}")
if rc == 0:
    size, ev = quantize_and_evaluate("drop")
    drop = 100 * (ev["accuracy_reference"] - ev["accuracy_quantized"])
    expect(drop <= 0.5, f"evaluate: drop {drop} points")
    expect(size < os.path.getsize(MODEL), "smaller than the checkpoint")

# 4. a budget nothing meets: status 13, named, no recipe
rc, out, err = optimize("tiny", "--sensitivity-in", s_json, "--max-size", "1k")
expect(rc == 13, f"--max-size 1k: exit {rc} (13 expected)")
expect("--max-size 1024 bytes" in err and "no recipe written" in err, f"message: {err}")
expect(not os.path.exists(path("tiny.recipe.json")), "no recipe file after a failure")
t = json.load(open(path("tiny.json")))
expect(t["chosen"]["met"] is False and t["chosen"]["recipe_file"] is None and t["unmet"], "JSON says unmet")

# a speed nothing reaches: named, status 13
rc, out, err = optimize("fast", "--sensitivity-in", s_json, "--min-speedup", "1000")
expect(rc == 13 and "--min-speedup 1000" in err, f"--min-speedup 1000: exit {rc}: {err}")
expect(not os.path.exists(path("fast.recipe.json")), "no recipe file after a failure")

# 5. bad options: exit 2, one line naming the thing
bad_json = path("badsens.json")
with open(bad_json, "w") as f:
    json.dump({"sensitivity": [{"tensor": "x", "layer": 0, "linear": "q", "candidates": [
        {"recipe": {"precision": "int5"}, "bytes": 1, "d_loss": 0, "kl": 0}]}]}, f)
for args, want in [([], "give at least one constraint"),
                   (["--max-drop", "-1"], "--max-drop"),
                   (["--max-size", "lots"], "--max-size"),
                   (["--min-speedup", "0"], "--min-speedup"),
                   (["--max-drop", "1", "--sensitivity-in", bad_json], "precision 'int5'"),
                   (["--max-drop", "1", "--sensitivity-in", path("absent.json")], "absent.json")]:
    rc, out, err = optimize("bad", *args)
    expect(rc == 2 and want in err, f"{args}: exit {rc}, stderr {err!r} (2 and {want!r} expected)")
    expect(not os.path.exists(path("bad.recipe.json")), f"{args}: no recipe")
rc, out, err = run("optimize", "--help")
expect(rc == 0 and all(o in out for o in ["--max-size", "--max-drop", "--min-speedup", "--calibration-data",
                                          "--eval-data", "--json", "--sensitivity-in", "--out"]), "--help")

finish()
