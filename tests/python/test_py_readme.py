# SPDX-License-Identifier: Apache-2.0
"""test_py_readme.py - the README's Python section and docs/PYTHON.md as a new user meets them:
`pip install ./python` into a fresh virtualenv (made with
--system-site-packages, so Debian's numpy serves it without the network;
the package is installed from a copy, the checkout stays clean), the two
environment variables it shows, then every ```python block of the README's section and of
docs/PYTHON.md run as written from a folder where data/ is the checkout's."""
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pkgtest import LIBRARY, PROTEUS, ROOT, TMP  # noqa: E402

import h5py  # noqa: E402


def section_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Python\n(.*?)^## ", text, re.S | re.M)
    assert m, "README.md has no '## Python' section"
    blocks = re.findall(r"```python\n(.*?)```", m.group(1), re.S)
    with open(os.path.join(ROOT, "docs", "PYTHON.md")) as f:
        blocks += re.findall(r"```python\n(.*?)```", f.read(), re.S)
    return blocks


class Readme(unittest.TestCase):
    def test_examples_as_written(self):
        blocks = section_blocks()
        self.assertEqual(len(blocks), 2)
        venv = os.path.join(TMP, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
        src = shutil.copytree(os.path.join(ROOT, "python"), os.path.join(TMP, "python"),
                              ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        py = os.path.join(venv, "bin", "python")
        p = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", src],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        work = os.path.join(TMP, "work")
        os.mkdir(work)
        os.symlink(os.path.join(ROOT, "data"), os.path.join(work, "data"))
        # the package from the virtualenv, not from the checkout's python/
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PROTEUS_LIBRARY=LIBRARY, PROTEUS_BIN=PROTEUS)
        for i, code in enumerate(blocks):
            p = subprocess.run([py, "-c", code], cwd=work, env=env, capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, "README example %d failed:\n%s\n%s" % (i + 1, p.stdout, p.stderr))
            print(p.stdout, end="")
        where = subprocess.run([py, "-c", "import proteus; print(proteus.__file__)"], cwd=work, env=env,
                               capture_output=True, text=True).stdout
        self.assertTrue(where.startswith(venv), where)
        for name in ("esm2_t6_8M_UR50D_static_int8.h5", "esm2_t6_8M_UR50D_dynamic_int8.h5"):
            with h5py.File(os.path.join(work, name), "r") as f:
                self.assertEqual(bytes(f.attrs["format"]).decode(), "proteus.quantized")
        with h5py.File(os.path.join(work, "esm2_t6_8M_UR50D_dynamic_int8.h5"), "r") as f:
            self.assertEqual(int(f.attrs["num_ranks"]), 4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
