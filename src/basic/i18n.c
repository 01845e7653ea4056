/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "i18n.h"

const char *i18n_gettext(const char *msgid) {
        static bool initialized = false;

        if (!initialized) {
                initialized = true;
                (void) setlocale(LC_ALL, "");
                (void) bindtextdomain(GETTEXT_PACKAGE, LOCALEDIR);
                (void) textdomain(GETTEXT_PACKAGE);
        }
        return gettext(msgid);
}
