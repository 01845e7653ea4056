#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Check one translation against the sources.
#
#   test-po.sh SOURCE_ROOT LANG [XGETTEXT_ARG...]
#
# Fails when po/LANG.po does not compile cleanly (msgfmt --check, which
# includes printf-format checks), holds untranslated or fuzzy messages, or is
# out of date: a message the sources mark for translation is missing from it,
# or it still carries one the sources no longer have. The sources are
# extracted afresh from po/POTFILES with the xgettext arguments po/meson.build
# uses, so neither po/modloadd.pot nor a build directory needs to be current.
# Exits 77 (skipped) when the gettext tools are missing.

set -eu

if [ $# -lt 2 ]; then
        echo "usage: $0 SOURCE_ROOT LANG [XGETTEXT_ARG...]" >&2
        exit 2
fi
srcroot=$1
lang=$2
shift 2
po="$srcroot/po/$lang.po"

for tool in msgfmt msgattrib msgcmp xgettext; do
        if ! command -v "$tool" >/dev/null 2>&1; then
                echo "SKIP: $tool not found"
                exit 77
        fi
done

if [ ! -f "$po" ]; then
        echo "FAIL: $po does not exist" >&2
        exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail=0

# Compiles, headers complete, every printf format matches its msgid.
if ! msgfmt --check --check-format -o /dev/null "$po"; then
        echo "FAIL: msgfmt --check reports errors in $po" >&2
        fail=1
fi

# No message left untranslated or fuzzy (obsolete "#~" entries do not count).
msgattrib --untranslated --no-obsolete "$po" >"$tmp/untranslated"
if [ -s "$tmp/untranslated" ]; then
        echo "FAIL: untranslated messages in $po:" >&2
        cat "$tmp/untranslated" >&2
        fail=1
fi
msgattrib --only-fuzzy --no-obsolete "$po" >"$tmp/fuzzy"
if [ -s "$tmp/fuzzy" ]; then
        echo "FAIL: fuzzy messages in $po:" >&2
        cat "$tmp/fuzzy" >&2
        fail=1
fi

# The messages the sources have now. xgettext reads the paths in POTFILES
# relative to the source root and skips its comment lines.
xgettext "$@" -D "$srcroot" -f "$srcroot/po/POTFILES" -o "$tmp/current.pot"
if [ ! -f "$tmp/current.pot" ]; then
        echo "FAIL: xgettext found no messages in the files of po/POTFILES" >&2
        exit 1
fi

# Every message of the sources has a translation ...
if ! msgcmp "$po" "$tmp/current.pot" 2>"$tmp/missing"; then
        echo "FAIL: $po lacks messages of the sources; run 'ninja -C BUILD modloadd-update-po' and translate them:" >&2
        cat "$tmp/missing" >&2
        fail=1
fi
# ... and no translation is kept for a message the sources dropped.
if ! msgcmp --use-untranslated "$tmp/current.pot" "$po" 2>"$tmp/stale"; then
        echo "FAIL: $po has messages the sources no longer use; run 'ninja -C BUILD modloadd-update-po':" >&2
        cat "$tmp/stale" >&2
        fail=1
fi

if [ "$fail" -eq 0 ]; then
        echo "OK: $po is complete and current"
fi
exit "$fail"
