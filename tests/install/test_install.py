# SPDX-License-Identifier: Apache-2.0
"""test_install.py - `meson install` into a temporary folder (DESTDIR), then
use the installation as someone outside the checkout would:
  - a C program built with `pkg-config --cflags --libs proteus` quantizes the
    installed bundled model through pq_quantize_model (int4, groups of 64):
    status ok, 36 quantized tensors (six Linears in each of the six layers),
    and the installed `proteus inspect` reads its file; built again against
    libproteus.a (`pkg-config --static`), it does the same;
  - the installed binary's `quantize --scheme static` without data, run from
    a folder outside the checkout, takes the calibration sample from the
    installation (its -v log names the file);
  - `man -l` renders the installed proteus-quantize(1);
  - the built binary copied to a folder outside the build finds the data in
    the source tree it was built from (a build folder anywhere);
  - $PROTEUS_DATA_DIR pointing at a folder without the sample is refused
    with status 6 naming the place.
SKIP (77) when pkg-config or a C compiler is missing.

usage: test_install.py MESON BUILD_ROOT PREFIX LIBDIR MANDIR SOURCE_ROOT"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PMIX_MCA_psec": "native", "OMPI_MCA_pml": "ob1",
           "PMIX_MCA_gds": "hash", "HWLOC_COMPONENTS": "-pci,-linuxio",
           "HWLOC_PLUGINS_BLACKLIST": "hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml"}
MODEL = "models/esm2_t6_8M_proteus_mlm.f16.safetensors"
SAMPLE = "proteins/calib_sample.fasta"


def run(cmd, cwd, env, want=0):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != want:
        print(f"FAIL: {' '.join(cmd)}: exit {p.returncode}, expected {want}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        sys.exit(1)
    return p


def sanitize_flags(build):
    """The build's own sanitizers (a library built with -Db_sanitize wants its
    programs built with them too, or ASan's runtime is not loaded first)."""
    with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
        for o in json.load(f):
            if o["name"] == "b_sanitize" and o["value"] not in ("none", ""):
                return ["-fsanitize=" + o["value"]]
    return []


def expect(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


def main():
    meson, build, prefix, libdir, mandir, src = sys.argv[1:7]
    cc = shutil.which(os.environ.get("CC", "cc"))
    for tool, path in (("pkg-config", shutil.which("pkg-config")), ("a C compiler (cc)", cc),
                       ("man (man-db)", shutil.which("man"))):
        if not path:
            print(f"SKIP: {tool} is not installed (scripts/deps.sh installs it)")
            return SKIP
    env = dict(os.environ, **{k: os.environ.get(k, v) for k, v in MPI_ENV.items()})
    env.pop("PROTEUS_DATA_DIR", None)
    tmp = tempfile.mkdtemp(prefix="pq_install_")
    try:
        dest = os.path.join(tmp, "dest")
        run([meson, "install", "-C", build, "--no-rebuild", "--quiet", "--destdir", dest], tmp, env)
        root = dest + prefix
        lib = libdir if os.path.isabs(libdir) else os.path.join(prefix, libdir)
        lib = dest + lib
        share = os.path.join(root, "share", "proteus")
        exe = os.path.join(root, "bin", "proteus")
        for f in (exe, os.path.join(root, "include", "proteus", "proteus.h"),
                  os.path.join(lib, "libproteus.so.0"), os.path.join(lib, "libproteus.a"),
                  os.path.join(share, SAMPLE), os.path.join(share, MODEL)):
            expect(os.path.isfile(f), f"installed {os.path.relpath(f, root)}")

        # a program outside the tree, built against the installation
        pc_env = dict(env, PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"))
        flags = run(["pkg-config", f"--define-variable=prefix={root}", "--cflags", "--libs", "proteus"],
                    tmp, pc_env).stdout.split()
        prog = os.path.join(tmp, "use_lib")
        san = sanitize_flags(build)
        run([cc, "-o", prog, os.path.join(src, "tests", "install", "use_lib.c"), *flags, *san], tmp, env)
        lib_env = dict(env, LD_LIBRARY_PATH=lib)
        ldd = run(["ldd", prog], tmp, lib_env).stdout
        expect(os.path.join(lib, "libproteus.so.0") in ldd, "the program loads the installed libproteus.so.0")
        q4 = os.path.join(tmp, "q4.h5")
        out = run([prog, os.path.join(share, MODEL), q4], tmp, lib_env).stdout
        expect("quantized 36 tensors" in out, f"pq_quantize_model through the library: {out.strip()}")
        # the same program against the static library
        static = run(["pkg-config", f"--define-variable=prefix={root}", "--static", "--cflags", "--libs", "proteus"],
                     tmp, pc_env).stdout.split()
        prog_a = os.path.join(tmp, "use_lib_static")
        run([cc, "-o", prog_a, os.path.join(src, "tests", "install", "use_lib.c"),
             os.path.join(lib, "libproteus.a"), *[f for f in static if f != "-lproteus"], *san], tmp, env)
        expect("libproteus" not in run(["ldd", prog_a], tmp, env).stdout, "the static build needs no libproteus.so")
        out = run([prog_a, os.path.join(share, MODEL), os.path.join(tmp, "q4s.h5")], tmp, env).stdout
        expect("quantized 36 tensors" in out, "pq_quantize_model through the static library")
        info = run([exe, "inspect", q4], tmp, env).stdout
        expect(info.count("int4 group64 sym") == 36, "the installed proteus inspect reads 36 int4 group64 tensors")

        # the installed binary's default static quantization, outside the checkout
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        p = run([exe, "quantize", "--scheme", "static", "--model", os.path.join(share, MODEL),
                 "--out", "s.h5", "-q", "-v"], work, env)
        expect(os.path.isfile(os.path.join(work, "s.h5")), "installed quantize --scheme static wrote s.h5")
        used = os.path.realpath(os.path.join(share, SAMPLE))
        expect(any(line.endswith(SAMPLE) and os.path.realpath(line.split("the bundled ", 1)[1]) == used
                   for line in p.stderr.splitlines() if "the bundled " in line),
               "its calibration sample is the installed one")

        # the installed manual page
        page = os.path.join(dest + (mandir if os.path.isabs(mandir) else os.path.join(prefix, mandir)),
                            "man1", "proteus-quantize.1")
        text = run(["man", "-l", page], tmp, dict(env, MANWIDTH="80", MANPAGER="cat", PAGER="cat")).stdout
        expect("--scheme" in text and "PROTEUS-QUANTIZE(1)" in text, "man -l renders proteus-quantize(1)")

        # a binary away from its build folder finds the source tree's data
        away = os.path.join(tmp, "elsewhere", "build")
        os.makedirs(away)
        shutil.copy(os.path.join(build, "cli", "proteus"), away)
        p = run([os.path.join(away, "proteus"), "quantize", "--scheme", "static",
                 "--model", os.path.join(src, "data", MODEL), "--out", "t.h5", "-q", "-v"], work, env)
        expect(os.path.join(src, "data", SAMPLE) in p.stderr, "a build folder elsewhere uses the source tree's sample")

        # an explicit $PROTEUS_DATA_DIR is the only place looked at
        p = run([exe, "quantize", "--scheme", "static", "--model", os.path.join(share, MODEL), "--out", "u.h5"],
                work, dict(env, PROTEUS_DATA_DIR=os.path.join(tmp, "nodata")), want=6)
        expect("calibration error" in p.stderr and os.path.join(tmp, "nodata", SAMPLE) in p.stderr
               and not os.path.exists(os.path.join(work, "u.h5")),
               "a $PROTEUS_DATA_DIR without the sample: status 6 naming it, nothing written")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
