#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Turn one scdoc page into a roff man page.
#
#   build-man.py SCDOC PAGE.scd TRAILER.scd OUTPUT [--idl FILE] [NAME=VALUE ...]
#
# Appends the shared trailer to the page, replaces every @NAME@ with VALUE,
# and, with --idl, replaces the body of the literal block that follows the
# "; @INTERFACE_IDL@" comment with the text of FILE, so that a page always
# shows the interface the daemon embeds. Then runs scdoc and writes OUTPUT.
# Any scdoc diagnostic fails the build, and no partial OUTPUT is left behind.

import os
import re
import subprocess
import sys

IDL_MARKER = '; @INTERFACE_IDL@'


def splice_idl(text, idl, page):
    lines = text.split('\n')
    try:
        marker = next(i for i, l in enumerate(lines) if l.startswith(IDL_MARKER))
        start = next(i for i in range(marker, len(lines)) if lines[i] == '```')
        end = next(i for i in range(start + 1, len(lines)) if lines[i] == '```')
    except StopIteration:
        sys.exit(f'{page}: --idl given, but no "{IDL_MARKER}" comment followed by a ``` block')
    body = idl.rstrip('\n').split('\n')
    return '\n'.join(lines[:start + 1] + body + lines[end:])


def main(argv):
    if len(argv) < 5:
        sys.exit('usage: build-man.py SCDOC PAGE.scd TRAILER.scd OUTPUT [--idl FILE] [NAME=VALUE ...]')
    scdoc, page, trailer, output = argv[1:5]
    idl = None
    subst = {}
    args = argv[5:]
    while args:
        a = args.pop(0)
        if a == '--idl':
            with open(args.pop(0), encoding='utf-8') as f:
                idl = f.read()
        elif '=' in a:
            k, v = a.split('=', 1)
            subst[k] = v
        else:
            sys.exit(f'build-man.py: unexpected argument {a!r}')

    with open(page, encoding='utf-8') as f:
        text = f.read()
    with open(trailer, encoding='utf-8') as f:
        text = text.rstrip('\n') + '\n' + f.read()

    for k, v in subst.items():
        text = text.replace(f'@{k}@', v)
    # A placeholder nobody filled in would end up in the installed page.
    for line in text.split('\n'):
        if line.startswith(';'):
            continue  # scdoc comment
        m = re.search(r'@[A-Z][A-Z0-9_]*@', line)
        if m:
            sys.exit(f'{page}: no value given for {m.group(0)}')
    if idl is not None:
        text = splice_idl(text, idl, page)

    proc = subprocess.run([scdoc], input=text.encode('utf-8'),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0 or proc.stderr:
        sys.stderr.write(f'{page}: scdoc failed:\n')
        sys.stderr.write(proc.stderr.decode('utf-8', 'replace'))
        return 1

    tmp = output + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(proc.stdout)
    os.replace(tmp, output)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
