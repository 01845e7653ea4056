/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "modules-load.h"
#include "strutil.h"
#include "strv.h"

#define check(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

static char root[] = "/tmp/test-modules-load-XXXXXX";

static void put(const char *path, const char *content) {
        char full[PATH_MAX], dir[PATH_MAX];
        FILE *f;

        snprintf(full, sizeof full, "%s%s", root, path);
        snprintf(dir, sizeof dir, "%s", full);
        for (char *p = strchr(dir + strlen(root) + 1, '/'); p; p = strchr(p + 1, '/')) {
                *p = '\0';
                (void) mkdir(dir, 0755);
                *p = '/';
        }
        f = fopen(full, "we");
        check(f);
        fputs(content, f);
        check(fclose(f) == 0);
}

static void link_null(const char *path) {
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s%s", root, path);
        check(symlink("/dev/null", full) == 0);
}

static char **from_cmdline(const char *cmdline, bool initrd) {
        char **l = calloc(1, sizeof(char *));
        check(l && modules_load_from_cmdline(cmdline, initrd, &l) >= 0);
        return l;
}

static bool strv_equal_to(char **l, const char *const *want) {
        size_t i = 0;
        for (; want[i]; i++)
                if (!l[i] || !streq(l[i], want[i]))
                        return false;
        return l[i] == NULL;
}

int main(void) {
        char **files = NULL, **names = calloc(1, sizeof(char *));
        char cmd[PATH_MAX + 16];

        check(mkdtemp(root));
        put("/etc/modules-load.d/a.conf", "# comment\n; also a comment\n\n  dummy  \nloop\n");
        put("/usr/lib/modules-load.d/a.conf", "shadowed\n");
        put("/usr/lib/modules-load.d/b.conf", "loop\r\n\tnbd\n");
        put("/usr/lib/modules-load.d/c.conf", "masked-by-run\n");
        put("/run/modules-load.d/placeholder", "");
        link_null("/run/modules-load.d/c.conf");
        put("/lib/modules-load.d/0-first.conf", "veth");
        put("/usr/local/lib/modules-load.d/e.conf", "");
        put("/usr/lib/modules-load.d/not-a-conf.txt", "ignored\n");

        check(modules_load_conf_files(root, modules_load_dirs, &files) == 0);
        check(strv_length(files) == 3);
        check(strstr(files[0], "/lib/modules-load.d/0-first.conf"));
        check(strstr(files[1], "/etc/modules-load.d/a.conf"));
        check(strstr(files[2], "/usr/lib/modules-load.d/b.conf"));

        for (char **f = files; *f; f++) {
                FILE *fh = fopen(*f, "re");
                check(fh);
                check(modules_load_read(fh, &names) >= 0);
                fclose(fh);
        }
        check(strv_equal_to(names, (const char *const[]){ "veth", "dummy", "loop", "nbd", NULL }));
        strv_free(names);
        strv_free(files);

        names = from_cmdline("quiet modules_load=a,b,,c modules-load=\"d,a\" rd.modules_load=e x=modules_load=f",
                             false);
        check(strv_equal_to(names, (const char *const[]){ "a", "b", "c", "d", NULL }));
        strv_free(names);
        names = from_cmdline("rd.modules-load=e,f 'modules_load=g h'", true);
        check(strv_equal_to(names, (const char *const[]){ "e", "f", "g h", NULL }));
        strv_free(names);
        names = from_cmdline("", false);
        check(strv_length(names) == 0);
        strv_free(names);

        snprintf(cmd, sizeof cmd, "rm -rf %s", root);
        check(system(cmd) == 0);
        return 0;
}
