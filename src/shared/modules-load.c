/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "modules-load.h"
#include "strutil.h"
#include "strv.h"

const char *const modules_load_dirs[] = {
        "/etc/modules-load.d",     "/run/modules-load.d", "/usr/local/lib/modules-load.d",
        "/usr/lib/modules-load.d", "/lib/modules-load.d", NULL,
};

static int extend_unique(char ***names, const char *name, size_t len) {
        _cleanup_free_ char *n = strndup(name, len);

        if (!n)
                return -ENOMEM;
        if (strv_contains(*names, n))
                return 0;
        return strv_extend(names, n) < 0 ? -ENOMEM : 1;
}

/* A masked file: /dev/null itself, a link to it, or an empty file (as systemd treats them). */
static bool is_masked(const char *path) {
        struct stat st;

        if (stat(path, &st) < 0)
                return false;
        if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3)
                return true;
        return S_ISREG(st.st_mode) && st.st_size == 0;
}

static int compare_basename(const void *a, const void *b) {
        const char *x = strrchr(*(char *const *) a, '/'), *y = strrchr(*(char *const *) b, '/');
        return strcmp(x ? x + 1 : *(char *const *) a, y ? y + 1 : *(char *const *) b);
}

int modules_load_conf_files(const char *root, const char *const *dirs, char ***ret) {
        _cleanup_(strv_freep) char **files = NULL, **seen = NULL;

        files = calloc(1, sizeof(char *));
        seen = calloc(1, sizeof(char *));
        if (!files || !seen)
                return -ENOMEM;

        for (const char *const *d = dirs; *d; d++) {
                _cleanup_free_ char *dir = strdup_printf("%s%s", root ?: "", *d);
                DIR *dh;

                if (!dir)
                        return -ENOMEM;
                dh = opendir(dir);
                if (!dh)
                        continue;
                for (struct dirent *de; (de = readdir(dh));) {
                        size_t l = strlen(de->d_name);
                        _cleanup_free_ char *path = NULL;

                        if (de->d_name[0] == '.' || l < 6 || !streq(de->d_name + l - 5, ".conf"))
                                continue;
                        /* The first directory with a file of this name wins, masking or not. */
                        if (strv_contains(seen, de->d_name))
                                continue;
                        if (strv_extend(&seen, de->d_name) < 0) {
                                closedir(dh);
                                return -ENOMEM;
                        }
                        path = strdup_printf("%s/%s", dir, de->d_name);
                        if (!path) {
                                closedir(dh);
                                return -ENOMEM;
                        }
                        if (is_masked(path))
                                continue;
                        if (strv_extend(&files, path) < 0) {
                                closedir(dh);
                                return -ENOMEM;
                        }
                }
                closedir(dh);
        }

        qsort(files, strv_length(files), sizeof(char *), compare_basename);
        *ret = TAKE_PTR(files);
        return 0;
}

int modules_load_read(FILE *f, char ***names) {
        char *line = NULL;
        size_t size = 0;
        int added = 0, r = 0;

        for (ssize_t n; (n = getline(&line, &size, f)) >= 0;) {
                const char *s = line;
                size_t l;

                s += strspn(s, " \t\r\n");
                l = strlen(s);
                while (l > 0 && strchr(" \t\r\n", s[l - 1]))
                        l--;
                if (l == 0 || s[0] == '#' || s[0] == ';')
                        continue;
                if (l > PATH_MAX)
                        continue;
                r = extend_unique(names, s, l);
                if (r < 0)
                        break;
                added += r;
        }
        free(line);
        if (r < 0)
                return r;
        return ferror(f) ? -EIO : added;
}

/* Keys compare with '-' and '_' as one character, as systemd's command line parser does. */
static bool key_equal(const char *a, size_t alen, const char *b) {
        if (alen != strlen(b))
                return false;
        for (size_t i = 0; i < alen; i++) {
                char x = a[i] == '-' ? '_' : a[i], y = b[i] == '-' ? '_' : b[i];
                if (x != y)
                        return false;
        }
        return true;
}

/* The next word of a command line, with double or single quotes removed. */
static const char *next_word(const char *p, char *buf, size_t size) {
        size_t n = 0;
        char quote = 0;

        p += strspn(p, " \t\n");
        if (!*p)
                return NULL;
        for (; *p && (quote || !strchr(" \t\n", *p)); p++) {
                if (!quote && (*p == '"' || *p == '\'')) {
                        quote = *p;
                        continue;
                }
                if (quote && *p == quote) {
                        quote = 0;
                        continue;
                }
                if (n + 1 < size)
                        buf[n++] = *p;
        }
        buf[n] = '\0';
        return p;
}

int modules_load_from_cmdline(const char *cmdline, bool in_initrd, char ***names) {
        _cleanup_free_ char *word = malloc(strlen(cmdline) + 1);
        int added = 0;

        if (!word)
                return -ENOMEM;
        for (const char *p = cmdline; (p = next_word(p, word, strlen(cmdline) + 1));) {
                const char *eq = strchr(word, '='), *key = word, *value;
                size_t klen;

                if (!eq)
                        continue;
                klen = (size_t) (eq - word);
                value = eq + 1;
                if (startswith(key, "rd.")) {
                        if (!in_initrd)
                                continue;
                        key += 3;
                        klen -= 3;
                }
                if (!key_equal(key, klen, "modules_load"))
                        continue;
                for (const char *v = value; *v;) {
                        size_t l = strcspn(v, ",");
                        if (l > 0) {
                                int r = extend_unique(names, v, l);
                                if (r < 0)
                                        return r;
                                added += r;
                        }
                        v += l + (v[l] == ',');
                }
        }
        return added;
}
