/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What systemd-modules-load reads: modules-load.d configuration and the
 * kernel command line. Parsing only; no logging. */

#include <stdbool.h>
#include <stdio.h>

#include "macro.h"

/* The directories, in order of precedence, as systemd-modules-load has them. */
extern const char *const modules_load_dirs[];

/* The .conf files of dirs (each under root, when root is not NULL), one per
 * file name, the first directory shadowing the later ones, sorted by file
 * name; files that are /dev/null (or links to it) mask and are left out. */
int modules_load_conf_files(const char *root, const char *const *dirs, char ***ret);

/* Module names from one file: one per line, surrounding whitespace dropped,
 * empty lines and lines starting with '#' or ';' skipped. Appended to *names
 * unless already there. Returns the number added, or a negative errno. */
int modules_load_read(FILE *f, char ***names);

/* Module names from a kernel command line: modules_load=a,b and, when
 * in_initrd, rd.modules_load=. Quoting and '-'/'_' in keys as systemd
 * treats them. Appended to *names unless already there. */
int modules_load_from_cmdline(const char *cmdline, bool in_initrd, char ***names);
