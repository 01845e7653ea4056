#!/usr/bin/env python3
"""Build a small initramfs that runs one test scenario under a real kernel.

The image is a newc cpio archive (written here, no root needed), gzip'd by
default.  It holds:
  * busybox (static) with a symlink per applet,
  * host binaries with every library `ldd` names, at the same paths,
  * binaries from another unpacked Debian root (e.g. Debian 13's kmod) with
    their own C library, under a prefix, run through wrapper scripts,
  * extra files, a kernel module tree at /lib/modules/KVER,
  * /init, which mounts proc, sysfs, devtmpfs, tmpfs on /tmp and /run, runs
    /scenario with /bin/sh (output on the serial console), prints
    "@@VM-EXIT <status>" and powers the machine off.

The guest is merged-/usr: /bin, /sbin, /lib and /lib64 are symlinks into /usr,
so a file may be named by either path.  busybox's sh runs its own applets
before $PATH: scenarios call /sbin/modprobe and friends by full path.

Command line (see --help):
  mkinitrd.py -o initrd.gz --scenario s.sh --bin /sbin/modprobe \\
      --modules CACHE/trees/6.1-xz --kver 6.1.0-NN-cloud-amd64
Python:
  import mkinitrd
  img = mkinitrd.Initrd()
  img.add_bin("/sbin/modprobe"); img.add_modules(tree, kver)
  img.set_scenario_text("...")
  img.write("initrd.gz")
"""

import argparse
import glob
import gzip
import os
import re
import shutil
import stat
import subprocess
import sys

END_MARKER = "@@VM-EXIT"
START_MARKER = "@@VM-START"

MERGED = ("bin", "sbin", "lib", "lib64")

INIT = """#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
exec </dev/console >/dev/console 2>&1
[ -f /etc/vm-env ] && . /etc/vm-env
echo "%(start)s"
/bin/sh /scenario
rc=$?
printf '\\n%(end)s %%d\\n' "$rc"
sync
poweroff -f
# not reached unless poweroff failed; leaving /init panics, which reboots
# the machine, which ends qemu (-no-reboot)
exit "$rc"
""" % {"start": START_MARKER, "end": END_MARKER}


def canonical(path):
    """Guest path without leading slash, with the merged-/usr layout applied."""
    parts = [p for p in os.path.normpath("/" + path).split("/") if p]
    if parts and parts[0] in MERGED:
        parts.insert(0, "usr")
    return "/".join(parts)


def ldd_paths(binary, loader=None, library_path=None):
    """Libraries (and the dynamic loader) a binary needs, as the paths given."""
    if loader:
        cmd = [loader, "--list"]
        if library_path:
            cmd[1:1] = ["--library-path", library_path]
        cmd.append(binary)
    else:
        cmd = ["ldd", binary]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    out = proc.stdout + proc.stderr
    if "not a dynamic executable" in out or "statically linked" in out:
        return []
    if proc.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), out.strip()))
    libs = []
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line)
        if not m:
            m = re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.append(m.group(1))
        elif "=> not found" in line:
            raise RuntimeError("%s: library not found: %s" % (binary, line))
    return libs


class Initrd:
    """An initramfs under construction: guest path -> entry."""

    def __init__(self, busybox="/bin/busybox"):
        self.entries = {}
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "proc", "sys",
                  "dev", "tmp", "run", "etc", "root", "mnt"):
            self.add_dir(d)
        for d in MERGED:
            self.entries[d] = ("symlink", "usr/" + d)
        self.entries["dev/console"] = ("chr", 5, 1, 0o600)
        if busybox:
            self.add_busybox(busybox)
        self.add_data("/init", INIT, 0o755)
        self.add_data("/scenario", "echo no scenario given; exit 1\n", 0o755)

    # --- primitives --------------------------------------------------------
    def add_dir(self, guest, mode=0o755):
        g = canonical(guest)
        parts = g.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub and self.entries.get(sub, ("",))[0] != "symlink":
                self.entries.setdefault(sub, ("dir", mode))

    def _parent(self, g):
        if "/" in g:
            self.add_dir(g.rsplit("/", 1)[0])

    def add_file(self, host, guest=None, mode=None):
        """Copy a host file (symlinks followed) to guest (default: same path)."""
        g = canonical(guest or host)
        if not os.path.isfile(host):
            raise FileNotFoundError(host)
        if mode is None:
            mode = stat.S_IMODE(os.stat(host).st_mode)
        self._parent(g)
        self.entries[g] = ("file", os.path.realpath(host), mode)

    def add_data(self, guest, data, mode=0o644):
        g = canonical(guest)
        if isinstance(data, str):
            data = data.encode()
        self._parent(g)
        self.entries[g] = ("data", data, mode)

    def add_symlink(self, guest, target):
        g = canonical(guest)
        self._parent(g)
        self.entries[g] = ("symlink", target)

    def add_tree(self, host, guest):
        """Copy a host folder recursively (symlinks kept as symlinks)."""
        host = host.rstrip("/")
        self.add_dir(guest)
        for dirpath, dirnames, filenames in os.walk(host):
            rel = os.path.relpath(dirpath, host)
            gdir = guest if rel == "." else os.path.join(guest, rel)
            for name in dirnames + filenames:
                hp = os.path.join(dirpath, name)
                gp = os.path.join(gdir, name)
                if os.path.islink(hp):
                    self.add_symlink(gp, os.readlink(hp))
                elif os.path.isdir(hp):
                    self.add_dir(gp)
                elif os.path.isfile(hp):
                    self.add_file(hp, gp)

    # --- higher level ------------------------------------------------------
    def add_busybox(self, busybox):
        self.add_file(busybox, "/usr/bin/busybox", 0o755)
        out = subprocess.run([busybox, "--list-full"], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
        for applet in out.split():
            g = canonical(applet)
            if g != "usr/bin/busybox" and g not in self.entries:
                self.add_symlink(g, "/usr/bin/busybox")

    def add_bin(self, path, guest=None):
        """A host binary and its libraries.  A symlinked name (e.g.
        /sbin/modprobe -> /bin/kmod) stays a symlink, so argv[0] is kept."""
        real = os.path.realpath(path)
        g = guest or path
        if canonical(real) != canonical(g) and os.path.basename(real) != os.path.basename(g):
            self.add_file(real, real, 0o755)
            self.add_symlink(g, "/" + canonical(real))
        else:
            self.add_file(real, g, 0o755)
        for lib in ldd_paths(real):
            self.add_file(lib, lib)

    def add_foreign(self, root, binary, prefix, links=(), extra_libs=()):
        """A binary from another unpacked Debian root (ROOT/BINARY), with its
        own loader and libraries, under PREFIX in the guest.  Each LINK gets a
        wrapper script that runs it through that loader with argv[0]=LINK.
        extra_libs: globs (relative to ROOT's library folder) of libraries
        the program dlopen()s."""
        root = os.path.abspath(root)
        libdir = "/usr/lib/x86_64-linux-gnu"
        loader = None
        for cand in ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                     "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                     "/usr/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"):
            if os.path.exists(root + cand):
                loader = cand
                break
        if loader is None:
            raise FileNotFoundError("no dynamic loader in " + root)
        libpath = ":".join(root + d for d in (libdir, "/lib/x86_64-linux-gnu"))
        host_bin = root + "/" + binary.lstrip("/")
        prefix = "/" + prefix.strip("/")

        def under_prefix(hostpath):
            rel = os.path.relpath(hostpath, root)
            if rel.startswith(".."):
                raise RuntimeError("%s resolved outside %s: %s" % (binary, root, hostpath))
            return prefix + "/" + canonical(rel)

        self.add_file(host_bin, under_prefix(host_bin), 0o755)
        self.add_file(root + loader, prefix + "/" + canonical(loader), 0o755)
        for lib in ldd_paths(host_bin, loader=root + loader, library_path=libpath):
            self.add_file(lib, under_prefix(lib))
        for pattern in extra_libs:
            hits = glob.glob(os.path.join(root + libdir, pattern))
            if not hits:
                raise FileNotFoundError("%s: no %s in %s" % (root, pattern, root + libdir))
            for lib in hits:
                self.add_file(lib, under_prefix(lib))
        gloader = prefix + "/" + canonical(loader)
        glibpath = prefix + "/" + canonical(libdir)
        gbin = under_prefix(host_bin)
        for link in links:
            self.add_data(link, '#!/bin/sh\nexec %s --library-path %s --argv0 "$0" %s "$@"\n'
                          % (gloader, glibpath, gbin), 0o755)

    def add_modules(self, tree, kver):
        """TREE/lib/modules/KVER (or TREE itself if it is that folder)."""
        src = os.path.join(tree, "lib", "modules", kver)
        if not os.path.isdir(src):
            src = tree
        if not os.path.isfile(os.path.join(src, "modules.dep")):
            raise FileNotFoundError("no modules.dep in %s (run depmod)" % src)
        self.add_tree(src, "/lib/modules/" + kver)

    def set_scenario(self, host_file):
        self.add_file(host_file, "/scenario", 0o755)

    def set_scenario_text(self, text):
        self.add_data("/scenario", text, 0o755)

    def set_env(self, env):
        """Variables /init exports before running the scenario."""
        lines = []
        for k, v in env.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise ValueError("bad variable name %r" % k)
            lines.append("%s='%s'\nexport %s\n" % (k, str(v).replace("'", "'\\''"), k))
        self.add_data("/etc/vm-env", "".join(lines))

    # --- output -------------------------------------------------------------
    def write(self, out, compress="gzip", level=1):
        tmp = out + ".tmp"
        if compress == "gzip":
            f = gzip.GzipFile(tmp, "wb", compresslevel=level, mtime=0)
        elif compress == "none":
            f = open(tmp, "wb")
        else:
            raise ValueError("compress must be gzip or none")
        with f:
            w = _NewcWriter(f)
            for g in sorted(self.entries):
                w.entry(g, self.entries[g])
            w.trailer()
        os.replace(tmp, out)
        return out


class _NewcWriter:
    def __init__(self, f):
        self.f = f
        self.ino = 1000

    def _header(self, name, mode, size, nlink=1, rdev=(0, 0)):
        self.ino += 1
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(nb), 0))
        buf = hdr.encode() + nb
        buf += b"\0" * (-len(buf) % 4)
        self.f.write(buf)

    def _data(self, data):
        self.f.write(data)
        self.f.write(b"\0" * (-len(data) % 4))

    def entry(self, name, e):
        kind = e[0]
        if kind == "dir":
            self._header(name, stat.S_IFDIR | e[1], 0, nlink=2)
        elif kind == "symlink":
            t = e[1].encode()
            self._header(name, stat.S_IFLNK | 0o777, len(t))
            self._data(t)
        elif kind == "chr":
            self._header(name, stat.S_IFCHR | e[3], 0, rdev=(e[1], e[2]))
        elif kind == "data":
            self._header(name, stat.S_IFREG | e[2], len(e[1]))
            self._data(e[1])
        elif kind == "file":
            size = os.path.getsize(e[1])
            self._header(name, stat.S_IFREG | e[2], size)
            with open(e[1], "rb") as src:
                shutil.copyfileobj(src, self.f, 1 << 20)
            self.f.write(b"\0" * (-size % 4))
        else:
            raise ValueError(kind)

    def trailer(self):
        self._header("TRAILER!!!", 0, 0, nlink=1)
        self.f.write(b"\0" * 512)


def add_arguments(p):
    """The options that describe an image (shared with run-vm.py)."""
    p.add_argument("--scenario", metavar="FILE", help="shell script /init runs")
    p.add_argument("--bin", action="append", default=[], metavar="PATH",
                   help="host binary, copied with its libraries (repeatable)")
    p.add_argument("--foreign", action="append", default=[],
                   metavar="ROOT:BINARY:PREFIX:LINK[,LINK...][:LIBGLOB[,LIBGLOB...]]",
                   help="binary from another unpacked Debian root, run through "
                        "its own loader via wrapper scripts at LINKs (repeatable)")
    p.add_argument("--file", action="append", default=[], metavar="HOSTPATH:GUESTPATH",
                   help="extra file (repeatable)")
    p.add_argument("--dir", action="append", default=[], metavar="HOSTDIR:GUESTDIR",
                   help="extra folder, copied recursively (repeatable)")
    p.add_argument("--modules", metavar="TREE",
                   help="module tree: TREE/lib/modules/KVER goes to /lib/modules/KVER")
    p.add_argument("--kver", help="kernel version of --modules")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="variable exported to the scenario (repeatable)")
    p.add_argument("--busybox", default="/bin/busybox", help="static busybox binary")
    p.add_argument("--compress", choices=("gzip", "none"), default="gzip")


def from_arguments(a):
    img = Initrd(busybox=a.busybox)
    for b in a.bin:
        img.add_bin(b)
    for spec in a.foreign:
        parts = spec.split(":")
        if len(parts) not in (4, 5):
            raise SystemExit("--foreign wants ROOT:BINARY:PREFIX:LINKS[:LIBGLOBS]: " + spec)
        libs = parts[4].split(",") if len(parts) == 5 and parts[4] else []
        img.add_foreign(parts[0], parts[1], parts[2], parts[3].split(","), libs)
    for spec in a.file:
        host, _, guest = spec.rpartition(":")
        if not host:
            raise SystemExit("--file wants HOSTPATH:GUESTPATH: " + spec)
        img.add_file(host, guest)
    for spec in a.dir:
        host, _, guest = spec.rpartition(":")
        if not host:
            raise SystemExit("--dir wants HOSTDIR:GUESTDIR: " + spec)
        img.add_tree(host, guest)
    if a.modules:
        if not a.kver:
            ents = os.listdir(os.path.join(a.modules, "lib", "modules"))
            if len(ents) != 1:
                raise SystemExit("--kver needed: %s" % ents)
            a.kver = ents[0]
        img.add_modules(a.modules, a.kver)
    if a.env:
        img.set_env(dict(e.split("=", 1) for e in a.env))
    if a.scenario:
        img.set_scenario(a.scenario)
    return img


def main(argv=None):
    p = argparse.ArgumentParser(description="Build a test initramfs (newc cpio).")
    p.add_argument("-o", "--output", required=True, help="image to write")
    add_arguments(p)
    a = p.parse_args(argv)
    try:
        img = from_arguments(a)
        img.write(a.output, compress=a.compress)
    except (OSError, RuntimeError, ValueError) as e:
        print("mkinitrd: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
