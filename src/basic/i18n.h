/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <libintl.h>
#include <locale.h>

/* User-facing text of the command-line programs; never log lines or error ids. */
#define _(s) gettext(s)
#define N_(s) (s)

static inline void i18n_init(void) {
        (void) setlocale(LC_ALL, "");
        (void) bindtextdomain(GETTEXT_PACKAGE, LOCALEDIR);
        (void) textdomain(GETTEXT_PACKAGE);
}
