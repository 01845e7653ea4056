#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A whole Debian 12 system with modloadd installed and switched on, booted
in qemu (TCG) with systemd as PID 1.

The root file system is the kernel's initramfs: two newc cpio archives
concatenated, which the kernel unpacks one after the other into its tmpfs
root:
  1. CACHE/system/bookworm-root.cpio, made once by mkroot.sh (debootstrap
     --variant=minbase bookworm with systemd, udev, kmod, strace, ...);
  2. an overlay built per run: `meson install` of modloadd (prefix /usr),
     the 6.1 module tree (xz), the switch-over links and the test's own
     files, a scenario unit that runs after multi-user.target and prints
     to the serial console, then powers the machine off.
The kernel runs /lib/systemd/systemd directly (rdinit=); there is no
/etc/initrd-release, so systemd boots it as the real system.

Used by test/system/test-system.py and bench/bench-modules-load.py:

    import sysimage
    img = sysimage.SystemImage(source_root, workdir)
    img.install_modloadd()                 # meson setup/install, cached in workdir
    img.enable_modloadd(idle_timeout="5s")
    img.add_scenario(text)                 # bash, run after boot as a service
    res = img.boot(timeout=600, log=path)  # run_vm.Result; res.output = console
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
import mkinitrd  # noqa: E402
import run_vm  # noqa: E402

TREE = "6.1-xz"
UNITDIR = "/usr/lib/systemd/system"
SCENARIO_PATH = "/usr/local/lib/modloadd-test/scenario"
VARLINKCTL = "/usr/local/bin/varlinkctl"

# qemu devices whose drivers are modules in Debian 12's cloud kernel, so that
# udev's coldplug has something to load through modloadd. Several share a
# driver (virtio_pci for every virtio device, virtio_net three times, evdev
# for every input device). No network back end: the NICs have no peer.
DEVICES = [
    "-cpu", "max",          # SSE4.2 & co: crc32c_intel and the AES-NI modules load
    "-nic", "none",
    "-device", "virtio-rng-pci",
    "-device", "virtio-net-pci,mac=52:54:00:12:34:01",
    "-device", "virtio-net-pci,mac=52:54:00:12:34:02",
    "-device", "virtio-net-pci,mac=52:54:00:12:34:03",
    "-device", "virtio-balloon-pci",
    "-device", "virtio-serial-pci",
    "-device", "virtio-scsi-pci",
    "-device", "virtio-keyboard-pci",
    "-device", "virtio-mouse-pci",
]

SCENARIO_UNIT = """[Unit]
Description=modloadd system test scenario
After=multi-user.target

[Service]
# Not oneshot: the boot must be able to finish while the scenario runs
# (it waits for "systemctl is-system-running --wait").
Type=simple
ExecStart=/bin/bash %(path)s
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
""" % {"path": SCENARIO_PATH}

# Shell helpers every scenario gets (sourced before the scenario's text).
SCENARIO_HEAD = r"""#!/bin/bash
exec 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export SYSTEMD_PAGER= SYSTEMD_COLORS=0 LC_ALL=C
echo
echo "%(start)s"
kv() { printf '@@KV %%s=%%s\n' "$1" "$2"; }
block() {
        local name=$1 rc
        shift
        echo "@@BEGIN $name"
        "$@" 2>&1
        rc=$?
        echo "@@END $name $rc"
        return $rc
}
uptime_s() { read -r u _ </proc/uptime; echo "$u"; }
now_ms() { echo $(( $(date +%%s%%N) / 1000000 )); }
finish() {
        printf '\n%(end)s %%d\n' "${1:-0}"
        sleep 1
        sync
        systemctl poweroff -ff
}
""" % {"start": mkinitrd.START_MARKER, "end": mkinitrd.END_MARKER}


class SetupError(RuntimeError):
    pass


def cache_dir(cache=None):
    return cache or run_vm.default_cache()


def prepare_cache(cache):
    """Kernels and module trees, the bookworm root, varlinkctl 257: each
    script is idempotent (stamped) and fast on a second run."""
    vm = os.path.join(HERE, "..", "vm", "fetch-kernels.sh")
    tools = os.path.join(HERE, "..", "fetch-tools.sh")
    for script in (vm, tools):
        r = subprocess.run([script, cache], stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            raise SetupError("%s %s failed (status %d)" % (script, cache, r.returncode))
    r = subprocess.run([os.path.join(HERE, "mkroot.sh"), cache], stdout=subprocess.PIPE,
                       universal_newlines=True)
    if r.returncode != 0:
        raise SetupError("mkroot.sh failed (status %d)" % r.returncode)
    return r.stdout.strip().splitlines()[-1]


class SystemImage:
    def __init__(self, source_root, workdir, cache=None, base_cpio=None):
        self.source_root = os.path.abspath(source_root)
        self.workdir = os.path.abspath(workdir)
        self.cache = cache_dir(cache)
        self.base_cpio = base_cpio or os.path.join(self.cache, "system", "bookworm-root.cpio")
        self.kernel = run_vm.kernel_for_tree(TREE, self.cache)
        self.stage = os.path.join(self.workdir, "stage")
        # The overlay: an mkinitrd image without its own /init, busybox,
        # merged-/usr links or top-level folders (the base root has them
        # with the right modes: /tmp 1777, /root 0700).
        self.overlay = mkinitrd.Initrd(busybox=None)
        self.overlay.entries = {}
        self.append = ["rdinit=/lib/systemd/systemd", "systemd.show_status=0", "loglevel=4"]
        self.qemu_args = list(DEVICES)
        self.dropins = {}

    # --- modloadd -----------------------------------------------------------
    def install_modloadd(self, build_dir=None):
        """meson setup --prefix=/usr + DESTDIR install into the stage folder."""
        build_dir = build_dir or os.path.join(self.workdir, "build-sys")
        if not os.path.exists(os.path.join(build_dir, "build.ninja")):
            r = subprocess.run(["meson", "setup", build_dir, self.source_root, "--prefix=/usr",
                                "-Dtests=false", "-Dbuildtype=debugoptimized"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
            if r.returncode != 0:
                raise SetupError("meson setup failed:\n" + r.stdout[-4000:])
        shutil.rmtree(self.stage, ignore_errors=True)
        # merged /usr: DESTDIR/lib is DESTDIR/usr/lib, as in the guest
        for d in ("bin", "sbin", "lib"):
            os.makedirs(os.path.join(self.stage, "usr", d), exist_ok=True)
            os.symlink("usr/" + d, os.path.join(self.stage, d))
        env = dict(os.environ, DESTDIR=self.stage)
        r = subprocess.run(["meson", "install", "-C", build_dir, "--quiet"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        if r.returncode != 0:
            raise SetupError("meson install failed:\n" + r.stdout[-4000:])
        for need in ("usr/sbin/modloadd", "usr/bin/modloadctl",
                     UNITDIR.lstrip("/") + "/modloadd.socket",
                     UNITDIR.lstrip("/") + "/modloadd.service",
                     UNITDIR.lstrip("/") + "/modloadd-modules-load.service",
                     "usr/share/modloadd/80-drivers.rules"):
            if not os.path.exists(os.path.join(self.stage, need)):
                raise SetupError("meson install did not install /%s" % need)
        self.overlay.add_tree(os.path.join(self.stage, "usr"), "/usr")

    def enable_modloadd(self, idle_timeout=None, socket=True, modules_load=True, udev=True,
                        extra_args=""):
        """The documented switch-over, done as links (what systemctl enable,
        systemctl mask and ln -s would create)."""
        if socket:
            self.overlay.add_symlink("/etc/systemd/system/sockets.target.wants/modloadd.socket",
                                     UNITDIR + "/modloadd.socket")
        if modules_load:
            self.overlay.add_symlink("/etc/systemd/system/systemd-modules-load.service", "/dev/null")
            self.overlay.add_symlink(
                "/etc/systemd/system/sysinit.target.wants/modloadd-modules-load.service",
                UNITDIR + "/modloadd-modules-load.service")
        if udev:
            self.overlay.add_symlink("/etc/udev/rules.d/80-drivers.rules",
                                     "/usr/share/modloadd/80-drivers.rules")
        args = []
        if idle_timeout is not None:
            args.append("--idle-timeout=%s" % idle_timeout)
        if extra_args:
            args.append(extra_args)
        if args:
            self.add_dropin("modloadd.service", "50-test.conf",
                            "[Service]\nExecStart=\nExecStart=/usr/sbin/modloadd %s\n" % " ".join(args))

    def add_dropin(self, unit, name, text):
        self.overlay.add_data("/etc/systemd/system/%s.d/%s" % (unit, name), text)

    # --- the rest of the image ---------------------------------------------
    def add_modules(self):
        self.overlay.add_modules(self.kernel.tree, self.kernel.kver)

    def add_varlinkctl(self):
        """systemd 257's varlinkctl (Debian 13), with its own loader and
        libraries under /opt/systemd-257, run as /usr/local/bin/varlinkctl."""
        root = os.path.join(self.cache, "trixie-root")
        prefix = "/opt/systemd-257"
        libdir = "/usr/lib/x86_64-linux-gnu"
        loader = libdir + "/ld-linux-x86-64.so.2"
        # systemd's programs find libsystemd-shared through an absolute
        # RUNPATH (/usr/lib/x86_64-linux-gnu/systemd): name it explicitly.
        libpath = ":".join(root + d for d in (libdir, libdir + "/systemd"))
        binary = root + "/usr/bin/varlinkctl"
        self.overlay.add_file(binary, prefix + "/usr/bin/varlinkctl", 0o755)
        self.overlay.add_file(root + loader, prefix + loader, 0o755)
        for lib in mkinitrd.ldd_paths(binary, loader=root + loader, library_path=libpath):
            rel = os.path.relpath(lib, root)
            if rel.startswith(".."):
                # Not unpacked by fetch-tools.sh (libpam, zlib): Debian 12's
                # build runs on Debian 13's newer C library.
                rel = libdir.lstrip("/") + "/" + os.path.basename(lib)
            self.overlay.add_file(lib, prefix + "/" + mkinitrd.canonical(rel))
        self.overlay.add_data(VARLINKCTL, '#!/bin/sh\nexec %s%s --library-path %s%s:%s%s/systemd '
                              '--argv0 varlinkctl %s/usr/bin/varlinkctl "$@"\n'
                              % (prefix, loader, prefix, libdir, prefix, libdir, prefix), 0o755)

    def add_file(self, host, guest, mode=None):
        self.overlay.add_file(host, guest, mode)

    def add_data(self, guest, data, mode=0o644):
        self.overlay.add_data(guest, data, mode)

    def add_scenario(self, text, env=None):
        head = SCENARIO_HEAD
        for k, v in (env or {}).items():
            head += "%s='%s'\n" % (k, str(v).replace("'", "'\\''"))
        self.overlay.add_data(SCENARIO_PATH, head + text, 0o755)
        self.overlay.add_data("/etc/systemd/system/modloadd-test.service", SCENARIO_UNIT)
        self.overlay.add_symlink("/etc/systemd/system/multi-user.target.wants/modloadd-test.service",
                                 "/etc/systemd/system/modloadd-test.service")
        # The console belongs to the scenario: no login prompt on it.
        self.overlay.add_symlink("/etc/systemd/system/serial-getty@ttyS0.service", "/dev/null")

    # --- boot ----------------------------------------------------------------
    def write(self, path=None):
        path = path or os.path.join(self.workdir, "initrd.img")
        ov = self.overlay.write(path + ".overlay", compress="none")
        with open(path + ".tmp", "wb") as out:
            for part in (self.base_cpio, ov):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
                # each archive padded to 4 bytes; the kernel skips zeros between them
                pad = -out.tell() % 512
                out.write(b"\0" * pad)
        os.replace(path + ".tmp", path)
        os.unlink(ov)
        return path

    def boot(self, timeout=600, log=None, echo=False, smp=2, mem=2048, append="", keep_initrd=False):
        """Write the image, boot it; the initrd (about 160 MB) is removed
        afterwards unless keep_initrd."""
        initrd = self.write()
        cmdline = " ".join(x for x in self.append + [append] if x)
        try:
            return run_vm.boot(self.kernel.vmlinuz, initrd, timeout=timeout, log=log, echo=echo,
                               smp=smp, mem=mem, append=cmdline, extra_args=self.qemu_args)
        finally:
            if not keep_initrd:
                os.unlink(initrd)


def parse(output):
    """@@KV key=value lines -> dict; @@BEGIN name ... @@END name rc -> {name: (rc, text)}."""
    kv, blocks = {}, {}
    cur, lines = None, []
    for line in output.splitlines():
        if cur is not None:
            if line.startswith("@@END %s " % cur):
                try:
                    rc = int(line.split()[-1])
                except ValueError:
                    rc = -1
                blocks[cur] = (rc, "\n".join(lines))
                cur, lines = None, []
            else:
                lines.append(line)
            continue
        if line.startswith("@@KV "):
            k, _, v = line[5:].partition("=")
            kv[k] = v.strip()
        elif line.startswith("@@BEGIN "):
            cur, lines = line.split(None, 1)[1].strip(), []
    return kv, blocks
