/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replays fuzz inputs without libFuzzer: every file named on the command
 * line, or every file in a directory named there, is one input. This is
 * how `meson test` runs the committed corpora. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "macro.h"

static int replay_file(int dir_fd, const char *name) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t done = 0;

        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "%s: %s\n", name, strerror(errno));
                return -errno;
        }
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + done, (size_t) st.st_size - done);
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                done += (size_t) n;
        }
        (void) LLVMFuzzerTestOneInput(buf, done);
        return 0;
}

int main(int argc, char *argv[]) {
        unsigned n = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (replay_file(AT_FDCWD, argv[i]) < 0)
                                return EXIT_FAILURE;
                        n++;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                if (!d)
                        return EXIT_FAILURE;
                for (struct dirent *de; (de = readdir(d));) {
                        if (de->d_name[0] == '.')
                                continue;
                        if (replay_file(dirfd(d), de->d_name) < 0) {
                                closedir(d);
                                return EXIT_FAILURE;
                        }
                        n++;
                }
                closedir(d);
        }
        printf("%u inputs replayed\n", n);
        return n > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
