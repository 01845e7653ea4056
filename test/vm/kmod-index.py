#!/usr/bin/env python3
"""Write libkmod's binary modules.dep.bin from a text modules.dep.

Debian's kmod (30 and 34) is built without zlib: its depmod does not even see
.ko.gz files.  To test gzip'd module trees anyway, fetch-kernels.sh runs
depmod on the uncompressed tree, compresses the modules, renames the paths in
modules.dep and rebuilds modules.dep.bin with this script.  The other indexes
(aliases, symbols, builtin, softdeps) name modules, not files, and stay valid.
For an uncompressed tree the output is byte for byte what depmod 30 writes.

Usage: kmod-index.py MODULES.DEP MODULES.DEP.BIN

Format (libkmod-index.c, version 2.1): big-endian u32 magic 0xB007F457,
version 0x00020001, root node offset; a node offset carries flags in its top
nibble (0x80 prefix, 0x40 values, 0x20 children) and the node holds, as
flagged: a NUL-terminated prefix; first and last child character and one u32
offset per character in between (0 = none); a value count and per value a
u32 priority and a NUL-terminated string.
"""

import os
import struct
import sys

MAGIC = 0xB007F457
VERSION = 0x00020001
F_PREFIX = 0x80000000
F_VALUES = 0x40000000
F_CHILDS = 0x20000000


class Node:
    __slots__ = ("children", "values")

    def __init__(self):
        self.children = {}
        self.values = []


def build(entries):
    """entries: iterable of (key bytes, priority, value bytes)."""
    root = Node()
    for key, prio, value in entries:
        n = root
        for c in key:
            n = n.children.setdefault(c, Node())
        n.values.append((prio, value))
    return root


def serialize(root):
    out = bytearray(struct.pack(">III", MAGIC, VERSION, 0))

    def write(node, prefix):
        # fold a chain of single-child, value-less nodes into the prefix
        while len(node.children) == 1 and not node.values:
            (c, child), = node.children.items()
            prefix += bytes([c])
            node = child
        child_offs = {}
        for c in sorted(node.children):
            child_offs[c] = write(node.children[c], b"")
        body = bytearray()
        flags = 0
        if prefix:
            flags |= F_PREFIX
            body += prefix + b"\0"
        if node.children:
            flags |= F_CHILDS
            first, last = min(child_offs), max(child_offs)
            body += bytes([first, last])
            for c in range(first, last + 1):
                body += struct.pack(">I", child_offs.get(c, 0))
        if node.values:
            flags |= F_VALUES
            body += struct.pack(">I", len(node.values))
            for prio, value in sorted(node.values, key=lambda v: v[0]):
                body += struct.pack(">I", prio) + value + b"\0"
        off = len(out)
        if off > 0x0FFFFFFF:
            raise OverflowError("index too large")
        out.extend(body)
        return off | flags

    struct.pack_into(">I", out, 8, write(root, b""))
    return bytes(out)


def modname(path):
    base = path.rsplit("/", 1)[-1]
    base = base.split(".", 1)[0]
    return base.replace("-", "_")


def dep_entries(text):
    for idx, line in enumerate(text.splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = line.split(":", 1)[0]
        yield modname(path).encode(), idx, line.encode()


def main(argv):
    if len(argv) != 3:
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        data = serialize(build(dep_entries(f.read())))
    tmp = argv[2] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
