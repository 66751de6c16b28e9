# SPDX-License-Identifier: Apache-2.0
"""peer_venv.py - run a peer test under the peer virtualenv, found when the
test runs (not when the build is configured), so that a build configured
before the virtualenv existed still has and runs its peer suites.

The virtualenv is VENV_PYTHON (the checkout's .venv/bin/python), or
$PQ_PEER_PYTHON when set. When it is missing, or lacks one of the modules
the test needs, this prints what is missing and how to install it and exits
77 (meson reports SKIP); otherwise it becomes `VENV_PYTHON SCRIPT ARGS...`.

usage: peer_venv.py VENV_PYTHON MODULE[,MODULE...] SCRIPT [ARGS...]"""
import os
import subprocess
import sys

SKIP = 77
HOW = "install the peers with `scripts/deps.sh --peers` (or run `scripts/test.sh`, which does)"


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    venv_py = os.environ.get("PQ_PEER_PYTHON") or sys.argv[1]
    modules = [m for m in sys.argv[2].split(",") if m]
    script, args = sys.argv[3], sys.argv[4:]
    name = os.path.basename(script)
    if not os.access(venv_py, os.X_OK):
        print(f"SKIP {name}: the peer virtualenv's python {venv_py} does not exist; {HOW}")
        return SKIP
    probe = "import importlib.util, sys\n" \
            "missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n" \
            "print(' '.join(missing))"
    p = subprocess.run([venv_py, "-c", probe, *modules], capture_output=True, text=True)
    if p.returncode or p.stdout.strip():
        what = p.stdout.strip() or "a working interpreter (" + p.stderr.strip()[-200:] + ")"
        print(f"SKIP {name}: {venv_py} lacks {what}; {HOW}")
        return SKIP
    sys.stdout.flush()
    os.execv(venv_py, [venv_py, script, *args])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
