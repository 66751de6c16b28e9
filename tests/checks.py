# SPDX-License-Identifier: Apache-2.0
"""checks.py - what the Python test scripts share: a scratch folder and the
paths in it, checks that collect their failures (expect) and the one exit
at the end (finish). A script imports it after putting tests/ on its path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from checks import expect, finish, path, scratch
"""
import atexit
import os
import shutil
import sys
import tempfile

failures = []
_folder = []


def scratch(prefix, keep_on_failure=False):
    """A new folder under the system's temporary one, removed at exit
    (kept when a check failed and keep_on_failure): its path."""
    folder = tempfile.mkdtemp(prefix=prefix)
    _folder[:] = [folder]

    def remove():
        if not (keep_on_failure and failures):
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


def path(name):
    """name inside the scratch folder."""
    return os.path.join(_folder[0], name)


def expect(ok, msg):
    """A check: a failure is printed at once and counted for finish()."""
    if not ok:
        failures.append(msg)
        print("FAIL:", msg, flush=True)


def finish():
    """Exit: 1 naming the failures, or 0."""
    if failures:
        print(f"FAILED: {len(failures)} failure(s)", flush=True)
        sys.exit(1)
    print("ok", flush=True)
    sys.exit(0)
