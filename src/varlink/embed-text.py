#!/usr/bin/env python3
# Turn a text file into a C source file defining `const char NAME[]`.
# Usage: embed-text.py NAME INPUT OUTPUT
import sys

name, src, dst = sys.argv[1:4]
with open(src, 'rb') as f:
    data = f.read()
if b'\0' in data:
    sys.exit(f'{src}: contains a NUL byte')
with open(dst, 'w') as out:
    out.write('/* Generated from %s; do not edit. */\n' % src.split('/')[-1])
    out.write('const char %s[] =\n' % name)
    for line in data.decode('utf-8').splitlines(keepends=True):
        esc = line.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n').replace('\t', '\\t')
        out.write('        "%s"\n' % esc)
    out.write('        ;\n')
