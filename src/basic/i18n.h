/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <libintl.h>
#include <locale.h>
#include <stdbool.h>

/* User-facing text of the command-line programs; never log lines or error ids.
 * The locale is set up on the first translated string, not at start: the
 * paths that print nothing (a modprobe that succeeds, a quiet load) are the
 * hot ones, and loading a locale costs more than the rest of their start. */
const char *i18n_gettext(const char *msgid) __attribute__((format_arg(1)));

#define _(s)  i18n_gettext(s)
#define N_(s) (s)
