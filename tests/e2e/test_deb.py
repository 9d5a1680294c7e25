#!/usr/bin/env python3
"""The Debian packages: build, install, use, purge.

Builds quicmux, libquicmux2 and libquicmux-dev with scripts/build-deb.sh (which
also runs lintian and fails on lintian errors) into a temporary directory, or
takes already-built .deb files from $QMTEST_DEB_DIR. Checks what each package
holds, installs the three with `apt-get install ./*.deb`, runs the installed
`quicmux --version` and `--check` on the shipped example configs, compiles
the embedding examples shipped in libquicmux-dev (/usr/share/doc/
libquicmux-dev/examples) against the installed library with `pkg-config
quicmux` (shared, and static libquicmux), runs echo_server + echo_client over
127.0.0.1 and ::1, then purges the packages (and whatever apt pulled in for
them) and checks that their files are gone.

It changes the machine, so: it needs root (or password-less sudo); it skips
(exit 77, saying why) when a quicmux package is already installed, so it never
removes someone's install; and it purges what it installed whatever happens
(failed case, exception, SIGTERM/SIGHUP: the purge runs in a finally block and
at exit). The build tools scripts/build-deb.sh installs (debhelper, lintian,
dpkg-dev, via scripts/deps.sh --deb) stay, like any scripts/deps.sh dependency.

Time: the build ~25 s on 2 cores (the unit tests run inside it; a first run on a
fresh machine adds the download of debhelper and lintian), lintian ~5 s,
install + checks + purge ~15 s. Every command has a timeout.
Output: "PASS name" / "FAIL name: reason" / "SKIP name: reason", "# ..." notes,
then "N passed, N failed[, N skipped]". QMTEST_KEEP=1 keeps the temp dir.
"""

import atexit
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
# test_library.py runs the same examples against a cmake --install prefix;
# its process and echo helpers are reused here as they are.
from test_library import Fail, Skip, check, run, must, echo_run, have_ipv6, needed, stop_all, run_cases  # noqa: E402

SKIP_EXIT = 77
PACKAGES = ["quicmux", "libquicmux2", "libquicmux-dev"]
CFLAGS = "-std=c11 -Wall -Wextra -Wpedantic -Werror"
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
APT_OPTS = ["-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=120"]


class Ctx:
    tmp = None
    sudo = []
    debdir = None
    debs = {}          # package -> .deb path
    version = None
    multiarch = None
    before = None      # {package: version} installed before the test
    audit = None       # `dpkg --audit` before the test
    installed = False  # we ran apt-get install (purge at the end)
    pulled = []        # packages apt installed for ours (purged with them)
    bins = {}
    notes = []


def note(s):
    print("# " + s, flush=True)


def run_apt(argv, timeout):
    """apt-get or dpkg to completion, (rc, output). Never interrupted by us: it runs
    in its own session (a terminal's Ctrl-C does not reach it), and a SIGTERM or
    SIGINT that reaches this process meanwhile is held until the command is done
    (a dpkg stopped half-way leaves packages half-configured). Past the timeout it
    is killed and reported."""
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(Ctx.sudo + argv, env=APT_ENV, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        held = None
        while True:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
                break
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                log.seek(0)
                raise Fail("%s: no exit within %ds, killed: %s" % (" ".join(argv), timeout,
                           log.read().decode(errors="replace")[-800:]))
            except (SystemExit, KeyboardInterrupt) as e:
                held = e
        log.seek(0)
        out = log.read().decode(errors="replace")
    if held is not None:
        raise held
    return p.returncode, out


def upstream_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"^project\(quicmux VERSION ([0-9.]+)", f.read(), re.M)
    return m.group(1) if m else None


def installed_packages():
    """{package: version} of every package dpkg has installed (configured or not)."""
    rc, out = run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Status}\n"], timeout=60)
    check(rc == 0, "dpkg-query failed: %s" % out[-500:])
    pk = {}
    for ln in out.splitlines():
        parts = ln.split("\t")
        if len(parts) == 3 and parts[2] not in ("not-installed", "config-files"):
            pk[parts[0].split(":")[0]] = parts[1]
    return pk


def status_of(pkg):
    rc, out = run(["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg], timeout=30)
    return out.strip() if rc == 0 else "not-installed"


def deb_files(deb, dirs=True):
    """Paths in a .deb (absolute); without dirs=True only files and symlinks."""
    out = must(["dpkg-deb", "-c", deb], "dpkg-deb -c %s" % deb, timeout=60)
    files = set()
    for ln in out.splitlines():
        m = re.search(r"\s\./(\S.*?)(?: -> .*)?$", ln)
        if m and m.group(1) and (dirs or not ln.startswith("d")):
            files.add("/" + m.group(1).rstrip("/"))
    return files


# --------------------------------------------------------------------------- preconditions

def preconditions():
    """Raise Skip when this machine cannot run the test without harm."""
    for tool in ("dpkg-query", "dpkg-deb", "apt-get"):
        if not shutil.which(tool):
            raise Skip("no %s: not a Debian system" % tool)
    if os.geteuid() != 0:
        if not shutil.which("sudo") or run(["sudo", "-n", "true"], timeout=10)[0] != 0:
            raise Skip("installing packages needs root or password-less sudo")
        Ctx.sudo = ["sudo", "-n"]
    before = installed_packages()
    ours = {p: before[p] for p in PACKAGES if p in before}
    if ours:
        raise Skip("already installed, not touching them: %s" %
                   ", ".join("%s %s" % kv for kv in sorted(ours.items())))
    Ctx.before = before
    Ctx.audit = run(["dpkg", "--audit"], timeout=60)[1].strip()
    rc, out = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], timeout=30)
    if rc != 0:
        rc, out = run(["gcc", "-print-multiarch"], timeout=30)
    Ctx.multiarch = out.strip()
    check(Ctx.multiarch, "cannot tell the multiarch triplet")


# --------------------------------------------------------------------------- cases

def case_build():
    d = os.environ.get("QMTEST_DEB_DIR")
    if d:
        Ctx.debdir = os.path.abspath(d)
        note("using the packages in %s (QMTEST_DEB_DIR)" % Ctx.debdir)
    else:
        Ctx.debdir = os.path.join(Ctx.tmp, "debs")
        t0 = time.monotonic()
        rc, out = run([os.path.join(ROOT, "scripts", "build-deb.sh"), Ctx.debdir], timeout=1200)
        for ln in out.splitlines():
            if ln.startswith("build-deb:") or re.match(r"^[EWI]: ", ln):
                note(ln)
        check(rc == 0, "scripts/build-deb.sh exited %s: %s" % (rc, out.strip()[-2000:]))
        note("scripts/build-deb.sh took %.0f s" % (time.monotonic() - t0))
    for p in PACKAGES:
        found = [f for f in glob.glob(os.path.join(Ctx.debdir, "%s_*.deb" % p))]
        check(len(found) == 1, "expected one %s_*.deb in %s, found %r" % (p, Ctx.debdir, found))
        Ctx.debs[p] = found[0]
    vers = {p: must(["dpkg-deb", "-f", f, "Version"], "dpkg-deb -f").strip() for p, f in Ctx.debs.items()}
    check(len(set(vers.values())) == 1, "the packages have different versions: %r" % vers)
    Ctx.version = vers["quicmux"]
    up = upstream_version()
    check(Ctx.version.split("-")[0] == up, "package version %s, CMakeLists.txt says %s" % (Ctx.version, up))


def case_contents():
    """What each package holds, its dependencies, and the symbols file."""
    check(Ctx.debs, "no packages")
    ma = Ctx.multiarch
    want = {
        "quicmux": ["/usr/bin/quicmux", "/usr/share/man/man1/quicmux.1.gz", "/etc/quicmux",
                    "/usr/share/doc/quicmux/copyright",
                    "/usr/share/doc/quicmux/examples/client-aes-srtp.json",
                    "/usr/share/doc/quicmux/examples/server-tls.json",
                    "/usr/share/doc/quicmux/examples/tls/cert.pem"],
        "libquicmux2": ["/usr/lib/%s/libquicmux.so.2" % ma],
        "libquicmux-dev": ["/usr/include/quicmux/quicmux.h", "/usr/lib/%s/libquicmux.so" % ma,
                           "/usr/lib/%s/libquicmux.a" % ma, "/usr/lib/%s/pkgconfig/quicmux.pc" % ma,
                           "/usr/share/doc/libquicmux-dev/examples/echo_server.c",
                           "/usr/share/doc/libquicmux-dev/examples/echo_client.c"],
    }
    for p, paths in want.items():
        files = deb_files(Ctx.debs[p])
        missing = [f for f in paths if f not in files]
        check(not missing, "%s lacks %s" % (p, ", ".join(missing)))
    qm = deb_files(Ctx.debs["quicmux"])
    units = [f for f in qm if re.search(r"/systemd/system/quicmux@?\.service$", f)]
    check(len(units) == 2, "quicmux should ship quicmux.service and quicmux@.service, has %r" % units)
    lib = deb_files(Ctx.debs["libquicmux2"])
    check(any(re.search(r"/libquicmux\.so\.2\.\d+\.\d+$", f) for f in lib), "no libquicmux.so.2.X.Y in libquicmux2")
    check(not any(f.endswith((".so", ".a", ".h")) for f in lib), "libquicmux2 holds development files")
    # every file in exactly one package
    only = {p: deb_files(Ctx.debs[p], dirs=False) for p in PACKAGES}
    for i, a in enumerate(PACKAGES):
        for b in PACKAGES[i + 1:]:
            both = only[a] & only[b]
            check(not both, "in both %s and %s: %s" % (a, b, ", ".join(sorted(both))))
    field = lambda p, k: must(["dpkg-deb", "-f", Ctx.debs[p], k], "dpkg-deb -f").strip()  # noqa: E731
    dev_dep = field("libquicmux-dev", "Depends")
    check("libquicmux2 (= %s)" % Ctx.version in dev_dep, "libquicmux-dev Depends %r lacks libquicmux2 (= %s)" % (dev_dep, Ctx.version))
    for p in ("libngtcp2-dev", "libngtcp2-crypto-gnutls-dev", "libgnutls28-dev", "nettle-dev", "libev-dev"):
        check(re.search(r"\b%s\b" % re.escape(p), dev_dep), "libquicmux-dev Depends %r lacks %s (quicmux.pc Requires.private)" % (dev_dep, p))
    lib_dep = field("libquicmux2", "Depends")
    check(re.search(r"libngtcp2-\d+ \(>= 1\.11", lib_dep), "libquicmux2 Depends %r: no libngtcp2 >= 1.11" % lib_dep)
    check(field("libquicmux2", "Multi-Arch") == "same", "libquicmux2 is not Multi-Arch: same")
    # the symbols file: every exported symbol, with its version node
    ctl = os.path.join(Ctx.tmp, "ctl")
    must(["dpkg-deb", "-e", Ctx.debs["libquicmux2"], ctl], "dpkg-deb -e")
    with open(os.path.join(ctl, "symbols")) as f:
        syms = f.read()
    # version nodes: QUICMUX_2 and the later ones (QUICMUX_2.1: none yet)
    listed = set(re.findall(r"^ (\S+)@QUICMUX_2(?:\.\d+)* ", syms, re.M))
    check(syms.startswith("libquicmux.so.2 libquicmux2 #MINVER#"), "odd symbols header: %r" % syms[:80])
    unversioned = [ln for ln in syms.splitlines() if ln.startswith(" ") and
                   not re.match(r" \S+@QUICMUX_2(?:\.\d+)* ", ln)]
    check(not unversioned, "symbols without a QUICMUX_2 node: %r" % unversioned)
    pkg = os.path.join(Ctx.tmp, "libpkg")
    must(["dpkg-deb", "-x", Ctx.debs["libquicmux2"], pkg], "dpkg-deb -x")
    so = os.path.realpath(os.path.join(pkg, "usr/lib/%s/libquicmux.so.2" % ma))
    out = must(["nm", "-D", "--defined-only", so], "nm -D")
    exported = set(re.findall(r"^\S+ [A-Z] (\S+?)@@?QUICMUX_2(?:\.\d+)*$", out, re.M))
    # the version nodes themselves (QUICMUX_2@QUICMUX_2 in the file)
    exported |= set(re.findall(r"^\S+ A (QUICMUX_2(?:\.\d+)*)$", out, re.M))
    check(exported == listed, "symbols file and library differ: only exported %r, only listed %r" %
          (sorted(exported - listed), sorted(listed - exported)))
    check(len(listed) > 20, "only %d symbols listed" % len(listed))
    note("symbols file: %d symbols (version nodes and functions), all @QUICMUX_2*" % len(listed))


def case_install():
    check(Ctx.debs, "no packages")
    argv = ["apt-get", "install"] + APT_OPTS + [Ctx.debs[p] for p in PACKAGES]
    Ctx.installed = True  # from here on, the purge runs whatever happens
    t0 = time.monotonic()
    rc, out = run_apt(argv, timeout=600)
    check(rc == 0, "apt-get install exited %s: %s" % (rc, out.strip()[-1500:]))
    for p in PACKAGES:
        check(status_of(p) == "installed", "%s is %s after apt-get install" % (p, status_of(p)))
    after = installed_packages()
    Ctx.pulled = sorted(set(after) - set(Ctx.before) - set(PACKAGES))
    note("apt-get install took %.1f s%s" % (time.monotonic() - t0,
         "; it also installed " + " ".join(Ctx.pulled) if Ctx.pulled else ""))


def case_program():
    check(status_of("quicmux") == "installed", "quicmux is not installed")
    path = shutil.which("quicmux")
    check(path and os.path.realpath(path) == "/usr/bin/quicmux", "quicmux on PATH is %r, not /usr/bin/quicmux" % path)
    rc, out = run(["/usr/bin/quicmux", "--version"], timeout=10)
    check(rc == 0, "quicmux --version exited %s: %s" % (rc, out.strip()))
    check(upstream_version() in out, "quicmux --version says %r, expected %s" % (out.strip(), upstream_version()))
    note("installed: %s" % out.strip().splitlines()[0])
    # the shipped example configs are valid as shipped (run from the doc dir, where
    # their relative examples/tls/ paths resolve)
    doc = "/usr/share/doc/quicmux"
    cfgs = sorted(glob.glob(os.path.join(doc, "examples", "*.json")))
    check(cfgs, "no example configs in %s/examples" % doc)
    for c in cfgs:
        rc, out = run("cd %s && /usr/bin/quicmux -c %s --check" % (doc, shlex.quote(os.path.relpath(c, doc))),
                      timeout=20, shell=True)
        check(rc == 0, "quicmux -c %s --check exited %s: %s" % (c, rc, out.strip()[-500:]))
    for unit in ("quicmux.service", "quicmux@.service"):
        paths = [d + "/" + unit for d in ("/lib/systemd/system", "/usr/lib/systemd/system") if os.path.isfile(d + "/" + unit)]
        check(paths, "%s not installed" % unit)
        with open(paths[0]) as f:
            text = f.read()
        for exe in re.findall(r"^Exec\w*=(\S+)", text, re.M):
            check(os.access(exe, os.X_OK), "%s runs %s, which is not an executable" % (unit, exe))
        enabled = glob.glob("/etc/systemd/system/*.wants/%s" % unit)
        check(not enabled, "%s was enabled on install: %r" % (unit, enabled))


def case_pkgconfig():
    check(status_of("libquicmux-dev") == "installed", "libquicmux-dev is not installed")
    env = dict(os.environ)
    env.pop("PKG_CONFIG_PATH", None)
    ver = must(["pkg-config", "--modversion", "quicmux"], "pkg-config --modversion quicmux", env=env).strip()
    check(ver == upstream_version(), "pkg-config says %s, expected %s" % (ver, upstream_version()))
    libdir = must(["pkg-config", "--variable=libdir", "quicmux"], "pkg-config libdir", env=env).strip()
    check(os.path.realpath(libdir) == "/usr/lib/" + Ctx.multiarch,
          "pkg-config quicmux libdir is %s, not /usr/lib/%s (another quicmux.pc first on the path?)" % (libdir, Ctx.multiarch))
    libs = must(["pkg-config", "--libs", "quicmux"], "pkg-config --libs", env=env).split()
    check(libs == ["-lquicmux"], "pkg-config --libs quicmux gave %r, expected just -lquicmux" % libs)


def compile_examples(flavour, link):
    src = "/usr/share/doc/libquicmux-dev/examples"
    outdir = os.path.join(Ctx.tmp, flavour)
    os.makedirs(outdir, exist_ok=True)
    env = dict(os.environ)
    env.pop("PKG_CONFIG_PATH", None)
    bins = {}
    for name in ("echo_server", "echo_client"):
        out = os.path.join(outdir, name)
        cmd = "cc %s -o %s %s %s" % (CFLAGS, shlex.quote(out), shlex.quote(os.path.join(src, name + ".c")), link)
        must(cmd, "compiling %s (%s)" % (name, flavour), env=env, shell=True)
        bins[name] = out
    return bins


def case_examples_shared():
    src = "/usr/share/doc/libquicmux-dev/examples"
    for name in ("echo_server.c", "echo_client.c", "README.md"):
        with open(os.path.join(src, name), "rb") as a, open(os.path.join(ROOT, "examples", "c", name), "rb") as b:
            check(a.read() == b.read(), "%s/%s differs from examples/c/%s" % (src, name, name))
    bins = compile_examples("shared", "$(pkg-config --cflags --libs quicmux) -lev")
    for b in bins.values():
        check("libquicmux.so.2" in needed(b), "%s does not need libquicmux.so.2: %r" % (b, needed(b)))
        out = must(["ldd", b], "ldd")
        m = re.search(r"libquicmux\.so\.2 => (\S+)", out)
        check(m and os.path.realpath(m.group(1)).startswith("/usr/lib/%s/" % Ctx.multiarch),
              "%s loads libquicmux from %s" % (b, m and m.group(1)))
    Ctx.bins["shared"] = bins


def case_examples_static():
    link = ('$(pkg-config --cflags quicmux) "$(pkg-config --variable=libdir quicmux)/libquicmux.a" '
            '$(pkg-config --libs $(pkg-config --print-requires-private quicmux)) -lev')
    bins = compile_examples("static", link)
    for b in bins.values():
        check(not any(n.startswith("libquicmux") for n in needed(b)), "%s needs libquicmux.so: %r" % (b, needed(b)))
    Ctx.bins["static"] = bins


def make_echo(flavour, host, extra=()):
    def case():
        bins = Ctx.bins.get(flavour)
        check(bins, "the %s examples were not built" % flavour)
        if host == "::1" and not have_ipv6():
            raise Skip("no IPv6 loopback")
        echo_run(bins, host, extra, clients=[(["-n", "8", "-b", "1000000"], 8), (["-n", "20", "-m", "hello, quicmux"], 20)])
    return case


def purge():
    """apt-get purge our packages and what apt pulled in for them; dpkg --purge as
    a fallback. Returns the output."""
    if Ctx.before is not None:
        # also after a failed install: whatever apt installed since the test began
        Ctx.pulled = sorted(set(installed_packages()) - set(Ctx.before) - set(PACKAGES))
    names = [p for p in PACKAGES + Ctx.pulled if status_of(p) != "not-installed"]
    if not names:
        return ""
    rc, out = run_apt(["apt-get", "purge"] + APT_OPTS + names, timeout=600)
    if rc != 0:
        rc2, out2 = run_apt(["dpkg", "--purge"] + names, timeout=300)
        out += "\n(dpkg --purge fallback, exit %s)\n%s" % (rc2, out2)
    return out


def case_purge():
    check(Ctx.installed, "nothing was installed")
    t0 = time.monotonic()
    out = purge()
    Ctx.installed = False
    left = {p: status_of(p) for p in PACKAGES + Ctx.pulled}
    left = {p: s for p, s in left.items() if s != "not-installed"}
    check(not left, "still known to dpkg after purge: %r; apt said: %s" % (left, out.strip()[-800:]))
    gone = ["/usr/bin/quicmux", "/usr/share/man/man1/quicmux.1.gz", "/etc/quicmux", "/usr/include/quicmux",
            "/usr/share/doc/quicmux", "/usr/share/doc/libquicmux2", "/usr/share/doc/libquicmux-dev",
            "/lib/systemd/system/quicmux.service", "/usr/lib/systemd/system/quicmux.service",
            "/lib/systemd/system/quicmux@.service", "/usr/lib/systemd/system/quicmux@.service"]
    gone += glob.glob("/usr/lib/%s/libquicmux*" % Ctx.multiarch)
    gone += glob.glob("/usr/lib/%s/pkgconfig/quicmux.pc" % Ctx.multiarch)
    still = [f for f in gone if os.path.lexists(f)]
    check(not still, "left behind after purge: %s" % ", ".join(still))
    rc, out = run(["ldconfig", "-p"], timeout=30)
    check("libquicmux" not in out, "ldconfig still lists libquicmux")
    check(run(["pkg-config", "--exists", "quicmux"], timeout=10)[0] != 0, "pkg-config still finds quicmux")
    after = installed_packages()
    changed = sorted(set(after) ^ set(Ctx.before))
    check(not changed, "installed packages differ from before the test: %s" % ", ".join(changed))
    audit = run(["dpkg", "--audit"], timeout=60)[1].strip()
    check(audit == Ctx.audit, "dpkg --audit now reports: %s" % audit[-800:])
    note("purge took %.1f s; installed packages are as before, dpkg --audit as before" % (time.monotonic() - t0))


CASES = [
    ("build the packages (scripts/build-deb.sh, lintian)", case_build),
    ("package contents, dependencies, symbols file", case_contents),
    ("apt-get install ./*.deb", case_install),
    ("installed quicmux: --version, example configs, units", case_program),
    ("pkg-config quicmux finds the installed library", case_pkgconfig),
    ("examples from libquicmux-dev: shared link", case_examples_shared),
    ("examples from libquicmux-dev: static libquicmux", case_examples_static),
    ("echo shared 127.0.0.1", make_echo("shared", "127.0.0.1")),
    ("echo shared ::1", make_echo("shared", "::1")),
    ("echo static 127.0.0.1", make_echo("static", "127.0.0.1", ["-s", "aes-128-gcm", "-k", "k3y", "-H", "srtp"])),
    ("apt-get purge: packages and files gone", case_purge),
]


def _cleanup():
    stop_all()
    if Ctx.installed:
        Ctx.installed = False
        purge()
        print("# cleanup: purged %s" % " ".join(PACKAGES + Ctx.pulled), flush=True)


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


def main():
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    atexit.register(_cleanup)
    try:
        preconditions()
    except Skip as e:
        print("SKIP deb: %s" % e, flush=True)
        print("0 passed, 0 failed, 1 skipped")
        return SKIP_EXIT
    except Fail as e:
        print("FAIL deb preconditions: %s" % e, flush=True)
        print("0 passed, 1 failed")
        return 1
    Ctx.tmp = tempfile.mkdtemp(prefix="qm-deb-")
    passed = failed = skipped = 0
    t_all = time.monotonic()
    try:
        passed, failed, skipped = run_cases(CASES, lambda name, dt: note("%s: %.1fs" % (name, dt)))
    finally:
        _cleanup()
        if failed or os.environ.get("QMTEST_KEEP"):
            print("# kept %s" % Ctx.tmp)
        else:
            shutil.rmtree(Ctx.tmp, ignore_errors=True)
    note("total time %.1f s" % (time.monotonic() - t_all))
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
