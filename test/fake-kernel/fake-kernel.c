/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fake kernel for host tests, put in from outside with LD_PRELOAD: it
 * answers the module system calls that go through syscall(2) and records
 * each one, so tests can check what the loader handed over without a real
 * kernel (and without ever loading into the build host).
 *
 * $FAKE_KERNEL_DIR (required) holds its state: a file per "loaded" module
 * (named after it), and calls.log, one line per call:
 *   finit NAME FLAGS BYTES MAGIC RESULT  |  init NAME BYTES RESULT  |  delete NAME FLAGS RESULT
 * where MAGIC is "elf" when the image starts with an ELF header, "compressed"
 * for MODULE_INIT_COMPRESSED_FILE, else "other", and RESULT "ok" or the errno
 * name.
 * A module's name is taken from the file name behind the fd (memfd name or
 * path), up to its first '.'. An image that is not ELF is refused with
 * ENOEXEC, and a second load of one name with EEXIST, as the kernel does.
 *
 * To make loads overlap, a load can be held before it is answered:
 *   $FAKE_KERNEL_DELAY_MS   sleep this long in every finit/init call;
 *   $FAKE_KERNEL_GATE       a path: wait while it exists (polled every 10 ms);
 *   $FAKE_KERNEL_HOLD_ONLY  hold only the module of this name (default: all).
 * The parameters of a load, when it has any, go to params.log: "NAME PARAMS".
 * Each call that is held adds a line "hold NAME" to calls.log when it starts
 * waiting. */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <dlfcn.h>

static void module_name_from(const char *path, char *buf, size_t size) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (strncmp(base, "memfd:", 6) == 0)
                base += 6;
        snprintf(buf, size, "%.*s", (int) strcspn(base, ". "), base);
        for (char *p = buf; *p; p++)
                if (*p == '-')
                        *p = '_';
}

/* The parameters of a load that has any go to params.log: "NAME PARAMS". */
static void record_params(const char *name, const char *params) {
        char path[4096];
        const char *dir = getenv("FAKE_KERNEL_DIR");
        int saved = errno;
        FILE *f;

        if (!dir || !params || !*params)
                return;
        snprintf(path, sizeof path, "%s/params.log", dir);
        f = fopen(path, "ae");
        if (f) {
                fprintf(f, "%s %s\n", name, params);
                fclose(f);
        }
        errno = saved;
}

static void record(const char *fmt, ...) {
        char path[4096];
        const char *dir = getenv("FAKE_KERNEL_DIR");
        va_list ap;
        FILE *f;

        if (!dir)
                return;
        snprintf(path, sizeof path, "%s/calls.log", dir);
        f = fopen(path, "ae");
        if (!f)
                return;
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fputc('\n', f);
        fclose(f);
}

static int state_path(const char *name, char *buf, size_t size) {
        const char *dir = getenv("FAKE_KERNEL_DIR");
        if (!dir) {
                errno = ENOSYS;
                return -1;
        }
        snprintf(buf, size, "%s/%s", dir, name);
        return 0;
}

static void sleep_ms(long ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Hold a load as configured; keeps errno as it was. */
static void hold(const char *name) {
        const char *delay = getenv("FAKE_KERNEL_DELAY_MS"), *gate = getenv("FAKE_KERNEL_GATE"),
                   *only = getenv("FAKE_KERNEL_HOLD_ONLY");
        long ms = delay ? strtol(delay, NULL, 10) : 0;
        int saved = errno;

        if (only && *only && strcmp(only, name) != 0)
                return;
        if (ms > 0 || (gate && access(gate, F_OK) == 0)) {
                record("hold %s", name);
                if (ms > 0)
                        sleep_ms(ms);
                if (gate)
                        while (access(gate, F_OK) == 0)
                                sleep_ms(10);
        }
        errno = saved;
}

static long do_insert(const char *name, const unsigned char *head, size_t n) {
        char path[4096];
        int fd;

        if (n < 4 || memcmp(head, "\177ELF", 4) != 0) {
                errno = ENOEXEC;
                return -1;
        }
        if (state_path(name, path, sizeof path) < 0)
                return -1;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
                errno = errno == EEXIST ? EEXIST : EIO;
                return -1;
        }
        close(fd);
        return 0;
}

static long fake_finit(int fd, const char *params, int flags) {
        char link[64], target[4096], name[256];
        unsigned char head[4] = {};
        struct stat st;
        ssize_t n;
        long r;

        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof target - 1);
        if (n < 0 || fstat(fd, &st) < 0) {
                errno = EBADF;
                return -1;
        }
        target[n] = '\0';
        module_name_from(target, name, sizeof name);
        n = pread(fd, head, sizeof head, 0);
        /* The kernel decompresses a MODULE_INIT_COMPRESSED_FILE itself: accept it as is. */
        if (flags & 4)
                memcpy(head, "\177ELF", 4), n = 4;
        hold(name);
        record_params(name, params);
        r = do_insert(name, head, n < 0 ? 0 : (size_t) n);
        record("finit %s %d %lld %s %s", name, flags, (long long) st.st_size,
               (flags & 4)                   ? "compressed"
               : (r == 0 || errno == EEXIST) ? "elf"
                                             : "other",
               r == 0 ? "ok" : strerrorname_np(errno));
        return r;
}

long syscall(long number, ...) {
        va_list ap;
        long a, b, c;

        va_start(ap, number);
        a = va_arg(ap, long);
        b = va_arg(ap, long);
        c = va_arg(ap, long);
        va_end(ap);

        if (number == SYS_finit_module) {
                if (getenv("FAKE_KERNEL_NO_FINIT")) {
                        errno = ENOSYS;
                        return -1;
                }
                return fake_finit((int) a, (const char *) b, (int) c);
        }
        if (number == SYS_init_module) {
                /* No file behind it: take the name from the parameters' "fakename=" or "unknown". */
                const char *params = (const char *) c, *p = params ? strstr(params, "fakename=") : NULL;
                char name[256] = "unknown";
                long r;
                if (p)
                        snprintf(name, sizeof name, "%.*s", (int) strcspn(p + 9, " "), p + 9);
                hold(name);
                record_params(name, params);
                r = do_insert(name, (const unsigned char *) a, (size_t) b);
                record("init %s %ld %s", name, b, r == 0 ? "ok" : strerrorname_np(errno));
                return r;
        }
        if (number == SYS_delete_module) {
                char path[4096];
                long r = -1;
                if (state_path((const char *) a, path, sizeof path) == 0) {
                        r = unlink(path);
                        if (r < 0)
                                errno = ENOENT;
                }
                record("delete %s %ld %s", (const char *) a, b, r == 0 ? "ok" : strerrorname_np(errno));
                return r;
        }

        /* Everything else goes to the real thing. */
        long (*real)(long, ...) = (long (*)(long, ...)) dlsym(RTLD_NEXT, "syscall");
        va_list ap2;
        long d, e, f;
        va_start(ap2, number);
        a = va_arg(ap2, long);
        b = va_arg(ap2, long);
        c = va_arg(ap2, long);
        d = va_arg(ap2, long);
        e = va_arg(ap2, long);
        f = va_arg(ap2, long);
        va_end(ap2);
        return real(number, a, b, c, d, e, f);
}
