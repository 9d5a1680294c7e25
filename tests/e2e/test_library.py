#!/usr/bin/env python3
"""libquicmux as a product: install, pkg-config, exported symbols, examples.

Installs the build into a temporary prefix (`cmake --install BUILD --prefix
TMP`), checks the installed files, compiles examples/c/*.c against the
installed library with the pkg-config recipes from examples/c/README.md
(shared, and static libquicmux), and runs echo_server + echo_client over
127.0.0.1 and ::1. Checks that libquicmux.so exports exactly the functions
declared in the installed public header(s), versioned QUICMUX_2.

The build directory is the directory of $QUICMUX_BIN (CTest sets it to the
built program); default: build/ in the source tree. Standard library only;
loopback only; every wait is bounded; processes are stopped by PID.
Output: "PASS name" / "FAIL name: reason" (and "SKIP name: reason" when the
machine lacks something, e.g. IPv6 loopback), then "N passed, N failed".
Set QMTEST_KEEP=1 to keep the temporary directory.
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(ROOT, "examples", "c")
CFLAGS = "-std=c11 -Wall -Wextra -Wpedantic -Werror"
SOVERSION = "2"
VERSION_NODE = "QUICMUX_2"


def version_nodes():
    """The version nodes of cmake/libquicmux.map (QUICMUX_2, QUICMUX_2.1, ...)."""
    with open(os.path.join(ROOT, "cmake", "libquicmux.map")) as f:
        return set(re.findall(r"^(QUICMUX_[0-9.]+) \{", f.read(), re.M))


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def build_dir():
    binp = os.environ.get("QUICMUX_BIN") or os.path.join(ROOT, "build", "quicmux")
    return os.path.dirname(os.path.abspath(binp))


def cmake_cache(key):
    """A value from the build directory's CMakeCache.txt ("" if absent)."""
    try:
        with open(os.path.join(build_dir(), "CMakeCache.txt")) as f:
            for ln in f:
                name, _, val = ln.partition("=")
                if name.split(":")[0] == key:
                    return val.strip()
    except OSError:
        pass
    return ""


# Compile like the library was built: same compiler (its sanitizer runtime must
# match an instrumented library) and, for a QM_ASAN build, the same sanitizers.
CC = os.environ.get("CC") or cmake_cache("CMAKE_C_COMPILER") or "cc"
if cmake_cache("QM_ASAN").upper() in ("ON", "1", "TRUE", "YES"):
    CFLAGS += " -fsanitize=address,undefined -fno-omit-frame-pointer"


def run(cmd, timeout=120, env=None, shell=False):
    """Run a command to completion (bounded); returns (rc, stdout+stderr)."""
    try:
        p = subprocess.run(cmd, shell=shell, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        raise Fail("%s: no exit within %ds; output: %s" % (cmd if shell else " ".join(cmd), timeout, out[-600:]))
    return p.returncode, p.stdout.decode(errors="replace")


def must(cmd, what, timeout=120, env=None, shell=False):
    rc, out = run(cmd, timeout=timeout, env=env, shell=shell)
    check(rc == 0, "%s failed (exit %s): %s\n    command: %s" %
          (what, rc, out.strip()[-1500:], cmd if shell else " ".join(cmd)))
    return out


# --------------------------------------------------------------------------- processes

class Proc:
    """A background process whose stdout lines are collected by a thread."""
    live = []

    def __init__(self, argv, env=None):
        self.argv = argv
        self.lines = []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err = []
        Proc.live.append(self)
        self.t_out = threading.Thread(target=self._read, args=(self.p.stdout, self.lines), daemon=True)
        self.t_err = threading.Thread(target=self._read, args=(self.p.stderr, self.err), daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _read(self, f, into):
        for raw in iter(f.readline, b""):
            with self.cond:
                into.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self.cond:
            while True:
                for ln in self.lines:
                    m = rx.search(ln)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self.t_out.is_alive()):
                    raise Fail("%s: no line matching %r within %.0fs (exit %s); stdout %r stderr %r" %
                               (os.path.basename(self.argv[0]), pattern, timeout, self.p.poll(),
                                self.lines[-5:], self.err[-5:]))
                self.cond.wait(min(left, 0.2))

    def stop(self, timeout=5):
        """SIGTERM by PID, bounded wait, then SIGKILL. Returns the exit status."""
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.t_out.join(5)
        self.t_err.join(5)
        if self in Proc.live:
            Proc.live.remove(self)
        return self.p.returncode


def stop_all():
    for pr in list(Proc.live):
        try:
            pr.stop()
        except Exception:
            pass


# --------------------------------------------------------------------------- the install

class Ctx:
    tmp = None
    prefix = None
    libdir = None
    includedir = None
    pkgenv = None
    bins = {}  # flavour -> {"echo_server": path, "echo_client": path}
    notes = []


def pkg(args):
    return must("pkg-config " + args, "pkg-config " + args, env=Ctx.pkgenv, shell=True).strip()


def case_install():
    bdir = build_dir()
    check(os.path.isfile(os.path.join(bdir, "cmake_install.cmake")),
          "%s is not a configured build directory (set QUICMUX_BIN)" % bdir)
    Ctx.prefix = os.path.join(Ctx.tmp, "prefix")
    cmake = cmake_cache("CMAKE_COMMAND") or "cmake"
    must([cmake, "--install", bdir, "--prefix", Ctx.prefix], "cmake --install", timeout=300)
    pcs = []
    for d, _, files in os.walk(Ctx.prefix):
        if "quicmux.pc" in files:
            pcs.append(os.path.join(d, "quicmux.pc"))
    check(len(pcs) == 1, "expected one quicmux.pc under the prefix, found %r" % pcs)
    check(os.path.basename(os.path.dirname(pcs[0])) == "pkgconfig", "quicmux.pc not in a pkgconfig dir: %s" % pcs[0])
    Ctx.libdir = os.path.dirname(os.path.dirname(pcs[0]))
    Ctx.pkgenv = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
    Ctx.includedir = os.path.realpath(pkg("--variable=includedir quicmux"))
    check(Ctx.includedir.startswith(os.path.realpath(Ctx.prefix) + os.sep),
          "includedir %s is outside the install prefix (is quicmux.pc relocatable?)" % Ctx.includedir)
    check(os.path.realpath(pkg("--variable=libdir quicmux")) == os.path.realpath(Ctx.libdir),
          "pkg-config libdir %s is not where the .pc is installed" % pkg("--variable=libdir quicmux"))
    lib = lambda n: os.path.join(Ctx.libdir, n)  # noqa: E731
    for f in ["libquicmux.so", "libquicmux.so." + SOVERSION, "libquicmux.a"]:
        check(os.path.exists(lib(f)), "missing %s" % lib(f))
    check(os.path.islink(lib("libquicmux.so")), "libquicmux.so is not a symlink (dev link)")
    real = os.path.realpath(lib("libquicmux.so"))
    check(re.fullmatch(r"libquicmux\.so\.%s\.\d+\.\d+" % SOVERSION, os.path.basename(real)),
          "libquicmux.so resolves to %s, expected libquicmux.so.%s.MINOR.PATCH" % (real, SOVERSION))
    check(os.path.realpath(lib("libquicmux.so." + SOVERSION)) == real, "libquicmux.so.%s and libquicmux.so differ" % SOVERSION)
    hdr = os.path.join(Ctx.includedir, "quicmux", "quicmux.h")
    check(os.path.isfile(hdr), "missing %s" % hdr)
    out = must(["readelf", "-d", real], "readelf -d")
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    check(m and m.group(1) == "libquicmux.so." + SOVERSION, "SONAME is %r, expected libquicmux.so.%s" % (m and m.group(1), SOVERSION))
    out = must(["nm", "--defined-only", lib("libquicmux.a")], "nm libquicmux.a")
    for sym in ("qm_dial", "qm_listener_new", "qm_stream_write"):
        check(re.search(r"\bT %s$" % sym, out, re.M), "libquicmux.a does not define %s" % sym)


def case_pkgconfig():
    check(Ctx.pkgenv, "no install")
    ver = pkg("--modversion quicmux")
    check(re.fullmatch(r"\d+\.\d+\.\d+", ver), "odd version %r" % ver)
    so = os.path.basename(os.path.realpath(os.path.join(Ctx.libdir, "libquicmux.so")))
    # the file is libquicmux.so.SOVERSION.MINOR.PATCH (MINOR.PATCH of the version)
    want = "libquicmux.so.%s.%s" % (SOVERSION, ver.split(".", 1)[1])
    check(so == want, "pkg-config version %s but the library file is %s (want %s)" % (ver, so, want))
    cflags = shlex.split(pkg("--cflags quicmux"))
    incs = [os.path.realpath(f[2:]) for f in cflags if f.startswith("-I")]
    check(os.path.realpath(Ctx.includedir) in incs, "--cflags %r lacks -I%s" % (cflags, Ctx.includedir))
    libs = shlex.split(pkg("--libs quicmux"))
    check("-lquicmux" in libs, "--libs %r lacks -lquicmux" % libs)
    ldirs = [os.path.realpath(f[2:]) for f in libs if f.startswith("-L")]
    check(os.path.realpath(Ctx.libdir) in ldirs, "--libs %r lacks -L%s" % (libs, Ctx.libdir))
    req = pkg("--print-requires-private quicmux").split()
    want = ["libngtcp2", "libngtcp2_crypto_gnutls", "gnutls", "nettle"]
    check(all(w in req for w in want), "Requires.private is %r, want at least %r" % (req, want))
    static = shlex.split(pkg("--static --libs quicmux"))
    for f in ("-lquicmux", "-lev", "-lngtcp2", "-lngtcp2_crypto_gnutls", "-lgnutls", "-lnettle"):
        check(f in static, "--static --libs %r lacks %s" % (static, f))
    check("-lev" not in libs, "-lev should be private (Libs.private), --libs gave %r" % libs)


def case_header():
    """The installed header compiles on its own: C11 -Wpedantic, and C++."""
    check(Ctx.pkgenv, "no install")
    src = os.path.join(Ctx.tmp, "hdr.c")
    with open(src, "w") as f:
        f.write("#include <quicmux/quicmux.h>\nint main(void) { return qm_version()[0] == 0; }\n")
    cmd = "%s %s -o %s %s $(pkg-config --cflags --libs quicmux) -Wl,-rpath,%s" % (
        shlex.quote(CC), CFLAGS, shlex.quote(os.path.join(Ctx.tmp, "hdr")), shlex.quote(src), shlex.quote(Ctx.libdir))
    must(cmd, "C11 compile of the header", env=Ctx.pkgenv, shell=True)
    rc, out = run([os.path.join(Ctx.tmp, "hdr")], timeout=10)
    check(rc == 0, "program calling qm_version() exited %s: %s" % (rc, out))
    cxx = shutil.which("clang++" if os.path.basename(CC).startswith("clang") else "c++")
    if cxx:
        srcpp = os.path.join(Ctx.tmp, "hdr.cpp")
        shutil.copy(src, srcpp)
        must("%s -std=c++11 -Wall -Wextra -Wpedantic -Werror -c -o %s %s $(pkg-config --cflags quicmux)" % (
            shlex.quote(cxx), shlex.quote(os.path.join(Ctx.tmp, "hdr_cpp.o")), shlex.quote(srcpp)),
            "C++ compile of the header", env=Ctx.pkgenv, shell=True)


def header_functions(incdir):
    names = set()
    for d, _, files in os.walk(os.path.join(incdir, "quicmux")):
        for fn in files:
            if not fn.endswith(".h"):
                continue
            with open(os.path.join(d, fn)) as f:
                text = f.read()
            text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
            text = re.sub(r"//[^\n]*", " ", text)
            text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)
            names.update(re.findall(r"\b(qm_\w+)\s*\(", text))
    return names


def case_exports():
    """nm -D: only the public qm_ API, all of it, in the map's version nodes."""
    check(Ctx.libdir, "no install")
    nodes = version_nodes()
    check(VERSION_NODE in nodes, "no %s node in cmake/libquicmux.map: %r" % (VERSION_NODE, nodes))
    so = os.path.realpath(os.path.join(Ctx.libdir, "libquicmux.so"))
    out = must(["nm", "-D", "--defined-only", so], "nm -D")
    exported, bad = set(), []
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) < 3:
            continue
        typ, sym = parts[1], parts[2]
        if typ == "A" and sym.partition("@")[0] in nodes:
            continue  # a version node itself
        name, _, ver = sym.partition("@")
        ver = ver.lstrip("@")
        if not name.startswith("qm_") or (ver and ver not in nodes):
            bad.append(sym)
        exported.add(name)
    check(not bad, "exported symbols outside the qm_ API or not in %s: %s" % (sorted(nodes), ", ".join(sorted(bad))))
    public = header_functions(Ctx.includedir)
    check(len(public) > 20, "found only %d functions in the header: %r" % (len(public), sorted(public)))
    extra = sorted(exported - public)
    missing = sorted(public - exported)
    check(not extra, "exported but not declared in include/quicmux/: %s" % ", ".join(extra))
    check(not missing, "declared in include/quicmux/ but not exported: %s" % ", ".join(missing))
    print("  exports (%d): %s" % (len(exported), " ".join(sorted(exported))))


def compile_examples(flavour, link):
    """Compile examples/c/*.c with `cc CFLAGS -o OUT SRC <link>` through sh."""
    outdir = os.path.join(Ctx.tmp, flavour)
    os.makedirs(outdir, exist_ok=True)
    bins = {}
    for name in ("echo_server", "echo_client", "udp_echo"):
        src = os.path.join(EXAMPLES, name + ".c")
        out = os.path.join(outdir, name)
        cmd = "%s %s -o %s %s %s" % (shlex.quote(CC), CFLAGS, shlex.quote(out), shlex.quote(src), link)
        rc, text = run(cmd, env=Ctx.pkgenv, shell=True)
        if rc != 0:
            return None, cmd, text
        bins[name] = out
    return bins, None, None


def needed(path):
    out = must(["readelf", "-d", path], "readelf -d")
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def case_build_shared():
    check(Ctx.pkgenv, "no install")
    link = "$(pkg-config --cflags --libs quicmux) -lev -Wl,-rpath,%s" % shlex.quote(Ctx.libdir)
    bins, cmd, text = compile_examples("shared", link)
    if not bins:
        raise Fail("compile failed: %s\n    command: %s" % (text.strip()[-1500:], cmd))
    for b in bins.values():
        check("libquicmux.so." + SOVERSION in needed(b), "%s does not need libquicmux.so.%s: %r" % (b, SOVERSION, needed(b)))
        out = must(["ldd", b], "ldd")
        m = re.search(r"libquicmux\.so\.\S+ => (\S+)", out)
        check(m and os.path.realpath(m.group(1)).startswith(os.path.realpath(Ctx.libdir)),
              "%s loads libquicmux from %s, not the temporary prefix" % (b, m and m.group(1)))
    Ctx.bins["shared"] = bins


def case_build_static():
    check(Ctx.pkgenv, "no install")
    archive = '"$(pkg-config --variable=libdir quicmux)/libquicmux.a"'
    # Everything static via `pkg-config --static` when the system has the static
    # dependencies; else static libquicmux with shared dependencies.
    full = "$(pkg-config --cflags quicmux) %s -Wl,--as-needed $(pkg-config --static --libs quicmux)" % archive
    bins, cmd, text = compile_examples("static", full)
    if not bins:
        miss = re.findall(r"cannot find -l(\S+?):", text)
        check(miss and "quicmux" not in miss, "compile failed: %s\n    command: %s" % (text.strip()[-1500:], cmd))
        Ctx.notes.append("pkg-config --static link not possible here (no static lib%s); "
                         "used static libquicmux + shared dependencies" % ", lib".join(sorted(set(miss))))
        part = ("$(pkg-config --cflags quicmux) %s "
                "$(pkg-config --libs $(pkg-config --print-requires-private quicmux)) -lev" % archive)
        bins, cmd, text = compile_examples("static", part)
        if not bins:
            raise Fail("compile failed: %s\n    command: %s" % (text.strip()[-1500:], cmd))
    for b in bins.values():
        check(not any(n.startswith("libquicmux") for n in needed(b)), "%s still needs libquicmux.so: %r" % (b, needed(b)))
    Ctx.bins["static"] = bins


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


def echo_run(bins, host, extra=(), clients=None):
    """Start echo_server on host:0, run the clients against it, stop it by PID."""
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)  # the binaries must find libquicmux themselves
    listen = "[%s]:0" % host if ":" in host else "%s:0" % host
    srv = Proc([bins["echo_server"]] + list(extra) + [listen], env=env)
    try:
        m = srv.wait_line(r"^listening on (\S+)$", 10)
        addr = m.group(1)
        port = int(addr.rsplit(":", 1)[1])
        check(port > 0, "server printed port 0: %s" % addr)
        total_streams = 0
        for args, nstreams in clients or [(["-n", "8", "-b", "3000000"], 8), (["-n", "40", "-m", "hello, quicmux"], 40)]:
            argv = [bins["echo_client"], "-t", "60"] + list(extra) + list(args) + [addr]
            rc, out = run(argv, timeout=90, env=env)
            check(rc == 0, "%s exited %s: %s" % (" ".join(argv), rc, out.strip()[-800:]))
            check(re.search(r"\b%d/%d streams echoed byte-exact" % (nstreams, nstreams), out),
                  "%s: unexpected summary: %s" % (" ".join(argv), out.strip()[-800:]))
            total_streams += nstreams
        rc = srv.stop()
        check(rc == 0, "echo_server exited %s after SIGTERM; stderr %r" % (rc, srv.err[-5:]))
        summary = [ln for ln in srv.lines if ln.startswith("echo_server:")]
        check(summary, "echo_server printed no summary: %r" % srv.lines[-5:])
        m = re.search(r"(\d+) streams echoed \((\d+) failed\)", summary[-1])
        check(m and int(m.group(1)) == total_streams and m.group(2) == "0",
              "server summary %r, expected %d streams, 0 failed; stderr %r" % (summary[-1], total_streams, srv.err[-5:]))
    finally:
        srv.stop()


def make_echo_case(flavour, host, extra=()):
    def case():
        bins = Ctx.bins.get(flavour)
        check(bins, "%s examples were not built" % flavour)
        if host == "::1" and not have_ipv6():
            raise Skip("no IPv6 loopback")
        echo_run(bins, host, extra)
    return case


def case_key_mismatch():
    """The client reports failure (non-zero, bounded) when the keys differ."""
    bins = Ctx.bins.get("shared")
    check(bins, "shared examples were not built")
    srv = Proc([bins["echo_server"], "-s", "aes-128-gcm", "-k", "right", "127.0.0.1:0"])
    try:
        addr = srv.wait_line(r"^listening on (\S+)$", 10).group(1)
        argv = [bins["echo_client"], "-t", "2", "-s", "aes-128-gcm", "-k", "wrong", "-n", "2", addr]
        t0 = time.monotonic()
        rc, out = run(argv, timeout=30)
        check(rc == 1, "client exited %s with a wrong key, expected 1: %s" % (rc, out.strip()[-600:]))
        check(time.monotonic() - t0 < 15, "client took %.1fs to give up" % (time.monotonic() - t0))
        check("0/2 streams" in out, "unexpected summary: %s" % out.strip()[-600:])
    finally:
        srv.stop()


def case_several_servers():
    """echo_client given three servers (qm_dialer_set_servers), one refusing (nothing on
    its port: ICMP port unreachable): every stream echoed, spread over the two live
    ones; the dead one counted as failed."""
    bins = Ctx.bins.get("shared")
    check(bins, "shared examples were not built")
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
    dead.close()  # nothing listens there now: the handshake is refused
    srvs = [Proc([bins["echo_server"], "127.0.0.1:0"]) for _ in range(2)]
    try:
        addrs = [p.wait_line(r"^listening on (\S+)$", 10).group(1) for p in srvs]
        argv = [bins["echo_client"], "-t", "60", "-n", "40", "-m", "hello, servers"] + addrs + [dead_addr]
        rc, out = run(argv, timeout=90)
        check(rc == 0 and "40/40 streams echoed byte-exact" in out,
              "%s exited %s: %s" % (" ".join(argv), rc, out.strip()[-800:]))
        for a in addrs:
            m = re.search(r"server %s: (\d+) session\(s\) opened, handshakes (\d+) ok" % re.escape(a), out)
            check(m and int(m.group(2)) >= 1, "live server %s not used: %s" % (a, out.strip()[-800:]))
        m = re.search(r"server %s: \d+ session\(s\) opened, handshakes 0 ok / (\d+) failed" % re.escape(dead_addr),
                      out)
        check(m and int(m.group(1)) >= 1, "dead server %s not reported as failed: %s" % (dead_addr, out.strip()[-800:]))
    finally:
        for p in srvs:
            p.stop()
def case_udp_echo():
    """examples/c/udp_echo.c (UDP flows): datagrams of 1 to 65,507 bytes echoed exactly."""
    bins = Ctx.bins.get("shared")
    check(bins, "shared examples were not built")
    srv = Proc([bins["udp_echo"], "server", "127.0.0.1:0"])
    try:
        addr = srv.wait_line(r"^listening on (\S+)$", 10).group(1)
        for size in ("1", "1200", "9000", "65507"):
            rc, out = run([bins["udp_echo"], "client", "-n", "20", "-b", size, addr], timeout=60)
            check(rc == 0, "udp_echo client -b %s exited %s: %s" % (size, rc, out.strip()[-600:]))
            check("20 datagrams of %s bytes echoed" % size in out, "unexpected summary: %s" % out.strip()[-300:])
    finally:
        srv.stop()


def case_in_tree():
    """build/examples/ (QM_EXAMPLES) run against the build tree's libquicmux.so."""
    d = os.path.join(build_dir(), "examples")
    bins = {n: os.path.join(d, n) for n in ("echo_server", "echo_client")}
    if not all(os.access(b, os.X_OK) for b in bins.values()):
        raise Skip("no %s/echo_server (configured with -DQM_EXAMPLES=OFF?)" % d)
    echo_run(bins, "127.0.0.1", clients=[(["-n", "4", "-b", "1000000"], 4)])


CASES = [
    ("install", case_install),
    ("pkg-config", case_pkgconfig),
    ("header standalone (C11, C++)", case_header),
    ("exports only the public qm_ API", case_exports),
    ("examples: shared link via pkg-config", case_build_shared),
    ("examples: static libquicmux via pkg-config", case_build_static),
    ("echo shared 127.0.0.1", make_echo_case("shared", "127.0.0.1")),
    ("echo shared ::1", make_echo_case("shared", "::1")),
    ("echo static 127.0.0.1", make_echo_case("static", "127.0.0.1")),
    ("echo static ::1", make_echo_case("static", "::1")),
    ("echo aes-128-gcm + srtp", make_echo_case("shared", "127.0.0.1", ["-s", "aes-128-gcm", "-k", "k3y", "-H", "srtp"])),
    ("echo client fails on key mismatch", case_key_mismatch),
    ("echo client over several servers, one refusing", case_several_servers),
    ("udp_echo: datagrams through flows", case_udp_echo),
    ("in-tree examples", case_in_tree),
]


def run_cases(cases, on_pass=None):
    """Run (name, fn) cases one after the other, printing PASS/FAIL/SKIP lines; every
    process a case started is stopped after it. on_pass(name, seconds) after a pass.
    Returns (passed, failed, skipped)."""
    passed = failed = skipped = 0
    for name, fn in cases:
        t0 = time.monotonic()
        try:
            fn()
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e), flush=True)
            continue
        except Fail as e:
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
            continue
        except Exception:
            failed += 1
            print("FAIL %s: %s" % (name, traceback.format_exc().strip().replace("\n", "\n    ")), flush=True)
            continue
        finally:
            stop_all()
        passed += 1
        print("PASS %s" % name, flush=True)
        if on_pass:
            on_pass(name, time.monotonic() - t0)
    return passed, failed, skipped


def main():
    Ctx.tmp = tempfile.mkdtemp(prefix="qm-lib-")
    passed = failed = 0
    try:
        passed, failed, _ = run_cases(CASES)
        for n in Ctx.notes:
            print("note: %s" % n)
    finally:
        stop_all()
        if failed or os.environ.get("QMTEST_KEEP"):
            print("kept %s" % Ctx.tmp)
        else:
            shutil.rmtree(Ctx.tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
