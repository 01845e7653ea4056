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
 * waiting.
 *
 * init_module(): the name is the parameters' "fakename=VALUE" when there is
 * one, else the "name=" entry of the image's .modinfo (ELF64, little endian),
 * else "unknown". Each init_module call also appends a line to init.log:
 *   NAME versions=KEEP|STRIPPED|NONE vermagic=KEEP|STRIPPED
 * versions: the image has a "__versions" section with SHF_ALLOC (KEEP),
 * one without it (STRIPPED, as modprobe --force-modversion leaves it), or
 * none (NONE); vermagic: .modinfo has a "vermagic=" string (KEEP) or not
 * (STRIPPED, also for an image that cannot be parsed).
 *
 * $FAKE_KERNEL_SYSFS=1 (any value but "" and "0"; the same for
 * $FAKE_KERNEL_TIMES): an emulated /sys/module. Every path that is
 * "/sys/module" or starts with "/sys/module/" is then redirected to
 * $FAKE_KERNEL_DIR/sys/module/..., for everyone in the process (the program,
 * libkmod, any library), through open, open64, openat, openat64, __open_2,
 * __open64_2, __openat_2, __openat64_2, fopen, fopen64, access, faccessat,
 * stat, stat64, lstat, lstat64, fstatat, fstatat64, statx, opendir, readlink
 * and readlinkat (relative paths, and paths relative to a directory fd that
 * was itself opened through /sys/module, follow from that). The fake keeps
 * that tree as the kernel keeps its own:
 *   - a finit/init of NAME whose image is ELF and which is not loaded yet
 *     creates sys/module/NAME/ with initstate "coming\n", refcnt "0\n" and an
 *     empty holders/ (all at once, by a rename); it stays "coming" while the
 *     call is held and during a nested request (below); initstate becomes
 *     "live\n" when the call succeeds, and the directory goes away when it
 *     fails;
 *   - a load that finds sys/module/NAME with initstate "coming" (another
 *     loader: a test, or another call of the fake) waits, polling every 10 ms,
 *     as the kernel's module_patient_check_exists() does: until it is "live"
 *     (then EEXIST) or gone (then it loads); it records "wait-coming NAME" in
 *     calls.log once when it starts waiting. Any other sys/module/NAME
 *     ("live", "going", or no initstate: built in) makes the load fail with
 *     EEXIST (decided before the hold, which still happens as above, so
 *     "hold" lines are the same as without $FAKE_KERNEL_SYSFS);
 *   - delete_module of NAME: ENOENT unless the state file or
 *     sys/module/NAME/initstate is there; EBUSY when initstate is not "live";
 *     EAGAIN when sys/module/NAME/refcnt holds a number > 0 (whatever the
 *     flags: the kernel answers EWOULDBLOCK without CONFIG_MODULE_FORCE_UNLOAD);
 *     else the state file and the directory are removed.
 * A test may create and edit the files under $FAKE_KERNEL_DIR/sys/module
 * itself (e.g. "coming" then "live" for a module another loader is loading,
 * refcnt 1 then 0). Without $FAKE_KERNEL_SYSFS nothing is redirected and no
 * sys/ is made.
 *
 * A nested request, as an init function calling the kernel's request_module():
 *   $FAKE_KERNEL_NESTED="MOD=NAME[,MOD2=NAME2...]" and
 *   $FAKE_KERNEL_MODPROBE=/path/to/program: a successful finit/init of MOD,
 * after its hold, once its state file exists but while its initstate is still
 * "coming", runs "$FAKE_KERNEL_MODPROBE -q -- NAME" (fork+execve, with the
 * environment as it is, LD_PRELOAD included; stdin and stdout /dev/null,
 * stderr kept) for each entry of MOD in order, waits for it, and records
 * "nested MOD NAME STATUS" in calls.log: STATUS is the exit status, 128+N
 * when killed by signal N, 127 when the program could not be run (or
 * $FAKE_KERNEL_MODPROBE is unset: nothing is run then), -1 when waiting for
 * it failed. The result of the load does not depend on it.
 *
 * $FAKE_KERNEL_FAIL="NAME=ERRNO[,NAME2=ERRNO2...]": a finit/init of NAME fails
 * with ERRNO (an errno name such as ENODEV, or a number), after its hold, as a
 * module whose init function returned an error: calls.log says so as for any
 * failure, no state file is made, and with $FAKE_KERNEL_SYSFS its
 * sys/module/NAME goes away as for any failed load. A module that is loaded
 * already still gets EEXIST, and an image that is not ELF ENOEXEC.
 *
 * $FAKE_KERNEL_TIMES=1: each finit/init call (not the ENOSYS of
 * $FAKE_KERNEL_NO_FINIT) appends "span NAME START_US END_US" to spans.log:
 * CLOCK_MONOTONIC in microseconds at the start of the call and just before it
 * returns, to tell which loads were in flight at the same time. */

/* Our open(), stat()... are the plain symbols, not the LFS or fortified
 * versions the headers would turn them into. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The fortified entry points, which the headers declare only with _FORTIFY_SOURCE. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

static bool env_true(const char *name) {
        const char *v = getenv(name);
        return v && *v && strcmp(v, "0") != 0;
}

static long long now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long) ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------------ */
/* The real libc functions behind ours. */

static void *real_symbol(const char *name, void **cache) {
        void *p = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
        int saved;

        if (p)
                return p;
        saved = errno;
        p = dlsym(RTLD_NEXT, name);
        if (!p) {
                fprintf(stderr, "fake-kernel: no %s behind the preload: %s\n", name, dlerror());
                abort();
        }
        __atomic_store_n(cache, p, __ATOMIC_RELEASE);
        errno = saved;
        return p;
}

#define REAL(fn)                                                \
        ({                                                      \
                static void *real_##fn;                         \
                (__typeof__(&fn)) real_symbol(#fn, &real_##fn); \
        })

/* ------------------------------------------------------------------------ */
/* The emulated /sys/module: where it goes. */

#define SYSFS_PREFIX     "/sys/module"
#define SYSFS_PREFIX_LEN (sizeof SYSFS_PREFIX - 1)

static bool sysfs_on(void) {
        const char *dir = getenv("FAKE_KERNEL_DIR");
        return dir && *dir && env_true("FAKE_KERNEL_SYSFS");
}

/* mkdir -p $FAKE_KERNEL_DIR/sys/module (not $FAKE_KERNEL_DIR itself); keeps errno. */
static void sysfs_make_root(void) {
        const char *dir = getenv("FAKE_KERNEL_DIR");
        char path[PATH_MAX];
        int saved = errno;

        if (dir && (size_t) snprintf(path, sizeof path, "%s/sys/module", dir) < sizeof path) {
                path[strlen(path) - strlen("/module")] = '\0';
                (void) mkdir(path, 0755);
                strcat(path, "/module");
                (void) mkdir(path, 0755);
        }
        errno = saved;
}

/* The module locks (executor.h): one directory per kernel, as /run is per boot. */
#define LOCK_PREFIX     "/run/modloadd/lock"
#define LOCK_PREFIX_LEN (sizeof LOCK_PREFIX - 1)

/* The path to use for PATH: the emulated one for "/sys/module" and what is
 * below it when that is on, $FAKE_KERNEL_DIR/lock for the module locks, else
 * PATH itself; NULL with errno ENAMETOOLONG when the emulated path does not fit. */
static const char *redirect(const char *path, char *buf, size_t size) {
        const char *rest;

        if (path && strncmp(path, LOCK_PREFIX, LOCK_PREFIX_LEN) == 0 &&
            (path[LOCK_PREFIX_LEN] == '\0' || path[LOCK_PREFIX_LEN] == '/') && getenv("FAKE_KERNEL_DIR") &&
            *getenv("FAKE_KERNEL_DIR")) {
                if ((size_t) snprintf(buf, size, "%s/lock%s", getenv("FAKE_KERNEL_DIR"), path + LOCK_PREFIX_LEN) >=
                    size) {
                        errno = ENAMETOOLONG;
                        return NULL;
                }
                return buf;
        }
        if (!path || strncmp(path, SYSFS_PREFIX, SYSFS_PREFIX_LEN) != 0)
                return path;
        rest = path + SYSFS_PREFIX_LEN;
        if ((*rest != '\0' && *rest != '/') || !sysfs_on())
                return path;
        if ((size_t) snprintf(buf, size, "%s/sys/module%s", getenv("FAKE_KERNEL_DIR"), rest) >= size) {
                errno = ENAMETOOLONG;
                return NULL;
        }
        /* Someone looks at /sys/module itself: let it be there. */
        if (rest[strspn(rest, "/")] == '\0')
                sysfs_make_root();
        return buf;
}

__attribute__((constructor)) static void fake_kernel_init(void) {
        if (sysfs_on())
                sysfs_make_root();
}

/* ------------------------------------------------------------------------ */
/* The libc entry points that look up a path, redirected. */

#define NEEDS_MODE(flags) (((flags) &O_CREAT) != 0 || ((flags) &O_TMPFILE) == O_TMPFILE)

#define REDIRECT_OR_FAIL(path, fail)                          \
        char path##_buf[PATH_MAX];                            \
        path = redirect(path, path##_buf, sizeof path##_buf); \
        if (!path)                                            \
        return fail

int open(const char *path, int flags, ...) {
        mode_t mode = 0;
        if (NEEDS_MODE(flags)) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        REDIRECT_OR_FAIL(path, -1);
        return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
        mode_t mode = 0;
        if (NEEDS_MODE(flags)) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        REDIRECT_OR_FAIL(path, -1);
        return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
        mode_t mode = 0;
        if (NEEDS_MODE(flags)) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        REDIRECT_OR_FAIL(path, -1);
        return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
        mode_t mode = 0;
        if (NEEDS_MODE(flags)) {
                va_list ap;
                va_start(ap, flags);
                mode = va_arg(ap, mode_t);
                va_end(ap);
        }
        REDIRECT_OR_FAIL(path, -1);
        return REAL(openat64)(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(__open_2)(path, flags);
}

int __open64_2(const char *path, int flags) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(__open64_2)(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(__openat_2)(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(__openat64_2)(dirfd, path, flags);
}

int mkdir(const char *path, mode_t mode) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(mkdir)(path, mode);
}

FILE *fopen(const char *path, const char *mode) {
        REDIRECT_OR_FAIL(path, NULL);
        return REAL(fopen)(path, mode);
}

FILE *fopen64(const char *path, const char *mode) {
        REDIRECT_OR_FAIL(path, NULL);
        return REAL(fopen64)(path, mode);
}

int access(const char *path, int mode) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(access)(path, mode);
}

int faccessat(int dirfd, const char *path, int mode, int flags) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(faccessat)(dirfd, path, mode, flags);
}

int stat(const char *restrict path, struct stat *restrict st) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(stat)(path, st);
}

int stat64(const char *restrict path, struct stat64 *restrict st) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(stat64)(path, st);
}

int lstat(const char *restrict path, struct stat *restrict st) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(lstat)(path, st);
}

int lstat64(const char *restrict path, struct stat64 *restrict st) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(lstat64)(path, st);
}

int fstatat(int dirfd, const char *restrict path, struct stat *restrict st, int flags) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(fstatat)(dirfd, path, st, flags);
}

int fstatat64(int dirfd, const char *restrict path, struct stat64 *restrict st, int flags) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(fstatat64)(dirfd, path, st, flags);
}

int statx(int dirfd, const char *restrict path, int flags, unsigned int mask, struct statx *restrict stx) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(statx)(dirfd, path, flags, mask, stx);
}

/* opendir() opens the directory inside libc, where we cannot see it. */
DIR *opendir(const char *path) {
        REDIRECT_OR_FAIL(path, NULL);
        return REAL(opendir)(path);
}

ssize_t readlink(const char *restrict path, char *restrict buf, size_t size) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(readlink)(path, buf, size);
}

ssize_t readlinkat(int dirfd, const char *restrict path, char *restrict buf, size_t size) {
        REDIRECT_OR_FAIL(path, -1);
        return REAL(readlinkat)(dirfd, path, buf, size);
}

/* ------------------------------------------------------------------------ */
/* Logs and state files. */

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

/* Appends one line to $FAKE_KERNEL_DIR/LOG; keeps errno. */
static void append_line(const char *log, const char *fmt, va_list ap) {
        char path[4096];
        const char *dir = getenv("FAKE_KERNEL_DIR");
        int saved = errno;
        FILE *f;

        if (!dir)
                return;
        snprintf(path, sizeof path, "%s/%s", dir, log);
        f = fopen(path, "ae");
        if (f) {
                vfprintf(f, fmt, ap);
                fputc('\n', f);
                fclose(f);
        }
        errno = saved;
}

__attribute__((format(printf, 2, 3))) static void log_to(const char *log, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        append_line(log, fmt, ap);
        va_end(ap);
}

/* A line for calls.log. */
__attribute__((format(printf, 1, 2))) static void record(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        append_line("calls.log", fmt, ap);
        va_end(ap);
}

/* The parameters of a load that has any go to params.log: "NAME PARAMS". */
static void record_params(const char *name, const char *params) {
        if (params && *params)
                log_to("params.log", "%s %s", name, params);
}

static void record_span(const char *name, long long start_us) {
        if (env_true("FAKE_KERNEL_TIMES"))
                log_to("spans.log", "span %s %lld %lld", name, start_us, now_us());
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

static bool state_exists(const char *name) {
        char path[4096];
        int saved = errno;
        bool r = state_path(name, path, sizeof path) == 0 && access(path, F_OK) == 0;
        errno = saved;
        return r;
}

static void sleep_ms(long ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ------------------------------------------------------------------------ */
/* The emulated /sys/module: what the fake kernel keeps there. */

/* $FAKE_KERNEL_DIR/sys/module/NAME, or -1 when there is none for NAME. */
static int sysfs_module_dir(const char *name, char *buf, size_t size) {
        const char *dir = getenv("FAKE_KERNEL_DIR");
        if (!dir || !*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return -1;
        return (size_t) snprintf(buf, size, "%s/sys/module/%s", dir, name) < size ? 0 : -1;
}

/* A fresh name in $FAKE_KERNEL_DIR/sys (the same file system as sys/module,
 * out of sight of whoever lists it) for something to rename into place. */
static int sysfs_temp_path(const char *what, char *buf, size_t size) {
        static unsigned long counter;
        const char *dir = getenv("FAKE_KERNEL_DIR");
        unsigned long n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);

        if (!dir)
                return -1;
        return (size_t) snprintf(buf, size, "%s/sys/.%s-%ld-%ld-%lu", dir, what, (long) getpid(), (long) gettid(), n) <
                               size
                       ? 0
                       : -1;
}

/* The first line of PATH without its newline, or -1. */
static int read_line(const char *path, char *buf, size_t size) {
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -1;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -1;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        return 0;
}

/* DIR/FILE's first line (see read_line). */
static int read_module_file(const char *dir, const char *file, char *buf, size_t size) {
        char path[PATH_MAX];
        if ((size_t) snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
                return -1;
        return read_line(path, buf, size);
}

static int write_file(const char *path, const char *text) {
        size_t len = strlen(text);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int r;

        if (fd < 0)
                return -1;
        r = write(fd, text, len) == (ssize_t) len ? 0 : -1;
        if (close(fd) < 0)
                r = -1;
        return r;
}

static void remove_tree(const char *path) {
        DIR *d = opendir(path);

        if (d) {
                for (struct dirent *de; (de = readdir(d));) {
                        char sub[PATH_MAX];
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        if ((size_t) snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= sizeof sub)
                                continue;
                        if (unlink(sub) < 0 && (errno == EISDIR || errno == EPERM))
                                remove_tree(sub);
                }
                closedir(d);
        }
        (void) rmdir(path);
}

/* Takes sys/module/NAME away at once (a rename), then removes it; keeps errno. */
static void sysfs_remove_module(const char *dir) {
        char gone[PATH_MAX];
        int saved = errno;

        if (sysfs_temp_path("gone", gone, sizeof gone) == 0 && rename(dir, gone) == 0)
                remove_tree(gone);
        else
                remove_tree(dir);
        errno = saved;
}

/* A directory ready to become sys/module/NAME of a module "coming". */
static int sysfs_prepare_coming(char *tmp, size_t size) {
        char path[PATH_MAX];

        if (sysfs_temp_path("new", tmp, size) < 0 || mkdir(tmp, 0755) < 0)
                return -1;
        if ((size_t) snprintf(path, sizeof path, "%s/initstate", tmp) >= sizeof path ||
            write_file(path, "coming\n") < 0)
                goto fail;
        strcpy(path + strlen(path) - strlen("initstate"), "refcnt");
        if (write_file(path, "0\n") < 0)
                goto fail;
        strcpy(path + strlen(path) - strlen("refcnt"), "holders");
        if (mkdir(path, 0755) < 0)
                goto fail;
        return 0;
fail:
        remove_tree(tmp);
        return -1;
}

/* With FAKE_KERNEL_SYSFS, for a load of NAME about to start: makes
 * sys/module/NAME "coming", after waiting for another loader's "coming" to
 * end. Returns 1 when this call made it (sysfs_finish() then ends it), 0 when
 * there is nothing to do (off, or no room for it), -1 when the module is
 * there already (EEXIST). Keeps errno. */
static int sysfs_claim(const char *name) {
        char dir[PATH_MAX], tmp[PATH_MAX], state[64];
        struct stat st;
        bool waited = false;
        int saved = errno, r;

        if (!sysfs_on() || sysfs_module_dir(name, dir, sizeof dir) < 0)
                return 0;
        sysfs_make_root();
        if (sysfs_prepare_coming(tmp, sizeof tmp) < 0) {
                errno = saved;
                return 0;
        }
        for (;;) {
                /* (rename() would replace an empty directory: look first.) */
                if (lstat(dir, &st) < 0 && errno == ENOENT) {
                        if (rename(tmp, dir) == 0) {
                                r = 1;
                                break;
                        }
                        if (errno != EEXIST && errno != ENOTEMPTY) {
                                remove_tree(tmp);
                                r = 0;
                                break;
                        }
                        continue;
                }
                if (read_module_file(dir, "initstate", state, sizeof state) == 0 && strcmp(state, "coming") == 0) {
                        if (!waited)
                                record("wait-coming %s", name);
                        waited = true;
                        sleep_ms(10);
                        continue;
                }
                if (lstat(dir, &st) < 0 && errno == ENOENT)
                        continue; /* gone just now */
                remove_tree(tmp);
                r = -1;
                break;
        }
        errno = saved;
        return r;
}

/* Ends what sysfs_claim() began: "live", or the directory removed. Keeps errno. */
static void sysfs_finish(const char *name, bool success) {
        char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX];
        int saved = errno;

        if (sysfs_module_dir(name, dir, sizeof dir) < 0)
                return;
        if (!success)
                sysfs_remove_module(dir);
        else if (sysfs_temp_path("initstate", tmp, sizeof tmp) == 0 &&
                 (size_t) snprintf(path, sizeof path, "%s/initstate", dir) < sizeof path &&
                 write_file(tmp, "live\n") == 0 && rename(tmp, path) < 0)
                (void) unlink(tmp); /* a test took the directory away meanwhile */
        errno = saved;
}

/* delete_module() with FAKE_KERNEL_SYSFS. */
static long sysfs_delete(const char *name) {
        char path[4096], dir[PATH_MAX], buf[64];
        bool in_state, in_sysfs;

        if (state_path(name, path, sizeof path) < 0)
                return -1;
        in_state = access(path, F_OK) == 0;
        in_sysfs = sysfs_module_dir(name, dir, sizeof dir) == 0 &&
                   read_module_file(dir, "initstate", buf, sizeof buf) == 0;
        if (!in_state && !in_sysfs) {
                errno = ENOENT;
                return -1;
        }
        if (in_sysfs && strcmp(buf, "live") != 0) {
                errno = EBUSY;
                return -1;
        }
        if (in_sysfs && read_module_file(dir, "refcnt", buf, sizeof buf) == 0 && strtol(buf, NULL, 10) > 0) {
                errno = EAGAIN;
                return -1;
        }
        (void) unlink(path);
        if (in_sysfs)
                sysfs_remove_module(dir);
        return 0;
}

/* ------------------------------------------------------------------------ */
/* A nested request_module(). */

static void run_nested(const char *mod) {
        const char *spec = getenv("FAKE_KERNEL_NESTED"), *prog = getenv("FAKE_KERNEL_MODPROBE");
        char list[4096], *save = NULL;
        int saved = errno;

        if (!spec || !*spec || (size_t) snprintf(list, sizeof list, "%s", spec) >= sizeof list)
                return;
        for (char *entry = strtok_r(list, ",", &save); entry; entry = strtok_r(NULL, ",", &save)) {
                char *target = strchr(entry, '=');
                int status = 127;
                pid_t pid;

                if (!target)
                        continue;
                *target++ = '\0';
                if (strcmp(entry, mod) != 0 || !*target)
                        continue;
                if (prog && *prog) {
                        char *argv[] = { (char *) prog, (char *) "-q", (char *) "--", target, NULL };
                        /* No stdin or stdout, as for the kernel's helpers; stderr stays, for the test's log. */
                        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                        pid = fork();
                        if (pid == 0) {
                                if (null >= 0) {
                                        (void) dup2(null, STDIN_FILENO);
                                        (void) dup2(null, STDOUT_FILENO);
                                }
                                execve(prog, argv, environ);
                                _exit(127);
                        }
                        if (null >= 0)
                                close(null);
                        if (pid < 0)
                                status = 127;
                        else {
                                int ws;
                                pid_t w;
                                while ((w = waitpid(pid, &ws, 0)) < 0 && errno == EINTR)
                                        ;
                                if (w < 0)
                                        status = -1;
                                else if (WIFEXITED(ws))
                                        status = WEXITSTATUS(ws);
                                else
                                        status = 128 + WTERMSIG(ws);
                        }
                }
                record("nested %s %s %d", mod, target, status);
        }
        errno = saved;
}

/* ------------------------------------------------------------------------ */
/* init_module() images. */

typedef struct ImageInfo {
        char name[256]; /* from .modinfo, "" if none */
        const char *versions;
        const char *vermagic;
} ImageInfo;

/* Whether [off, off + len) lies within an image of SIZE bytes. */
static bool in_image(uint64_t off, uint64_t len, size_t size) {
        return off <= size && len <= size - off;
}

static bool valid_module_name(const char *s, size_t len) {
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!(s[i] == '_' || s[i] == '-' || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= 'A' && s[i] <= 'Z')))
                        return false;
        return true;
}

static void inspect_modinfo(const unsigned char *p, size_t len, ImageInfo *info) {
        for (size_t i = 0; i < len;) {
                const char *s = (const char *) p + i;
                const unsigned char *nul = memchr(p + i, '\0', len - i);
                size_t n = nul ? (size_t) (nul - (p + i)) : len - i;

                if (n >= 9 && strncmp(s, "vermagic=", 9) == 0)
                        info->vermagic = "KEEP";
                else if (n >= 5 && strncmp(s, "name=", 5) == 0 && !info->name[0] && n - 5 < sizeof info->name &&
                         valid_module_name(s + 5, n - 5))
                        snprintf(info->name, sizeof info->name, "%.*s", (int) (n - 5), s + 5);
                i += n + 1;
        }
}

/* Reads what init.log says about an image (ELF64, little endian); anything
 * that does not parse counts as missing. */
static void inspect_image(const unsigned char *img, size_t size, ImageInfo *info) {
        Elf64_Ehdr eh;
        Elf64_Shdr strtab;

        *info = (ImageInfo){ .versions = "NONE", .vermagic = "STRIPPED" };
        if (!img || size < sizeof eh)
                return;
        memcpy(&eh, img, sizeof eh);
        if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
            eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_shentsize < sizeof(Elf64_Shdr) || eh.e_shnum == 0 ||
            eh.e_shstrndx >= eh.e_shnum || eh.e_shoff > size || eh.e_shnum > (size - eh.e_shoff) / eh.e_shentsize)
                return;
        memcpy(&strtab, img + eh.e_shoff + (uint64_t) eh.e_shstrndx * eh.e_shentsize, sizeof strtab);
        if (strtab.sh_type == SHT_NOBITS || !in_image(strtab.sh_offset, strtab.sh_size, size))
                return;
        for (unsigned i = 0; i < eh.e_shnum; i++) {
                Elf64_Shdr sh;
                const char *sname;

                memcpy(&sh, img + eh.e_shoff + (uint64_t) i * eh.e_shentsize, sizeof sh);
                if (sh.sh_name >= strtab.sh_size ||
                    !memchr(img + strtab.sh_offset + sh.sh_name, '\0', strtab.sh_size - sh.sh_name))
                        continue;
                sname = (const char *) img + strtab.sh_offset + sh.sh_name;
                if (strcmp(sname, "__versions") == 0)
                        info->versions = (sh.sh_flags & SHF_ALLOC) ? "KEEP" : "STRIPPED";
                else if (strcmp(sname, ".modinfo") == 0 && sh.sh_type != SHT_NOBITS &&
                         in_image(sh.sh_offset, sh.sh_size, size))
                        inspect_modinfo(img + sh.sh_offset, sh.sh_size, info);
        }
}

/* ------------------------------------------------------------------------ */
/* The module system calls. */

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

static bool is_elf(const unsigned char *head, size_t n) {
        return n >= 4 && memcmp(head, "\177ELF", 4) == 0;
}

static long do_insert(const char *name, const unsigned char *head, size_t n) {
        char path[4096];
        int fd;

        if (!is_elf(head, n)) {
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

/* The errno $FAKE_KERNEL_FAIL gives for NAME, or 0. */
static int configured_failure(const char *name) {
        const char *spec = getenv("FAKE_KERNEL_FAIL");
        char list[4096], *save = NULL;

        if (!spec || !*spec || (size_t) snprintf(list, sizeof list, "%s", spec) >= sizeof list)
                return 0;
        for (char *entry = strtok_r(list, ",", &save); entry; entry = strtok_r(NULL, ",", &save)) {
                char *value = strchr(entry, '='), *end;
                long number;

                if (!value)
                        continue;
                *value++ = '\0';
                if (strcmp(entry, name) != 0)
                        continue;
                number = strtol(value, &end, 10);
                if (end != value && *end == '\0' && number > 0 && number < 4096)
                        return (int) number;
                for (int e = 1; e < 4096; e++) {
                        const char *en = strerrorname_np(e);
                        if (en && strcmp(en, value) == 0)
                                return e;
                }
                fprintf(stderr, "fake-kernel: FAKE_KERNEL_FAIL: unknown errno %s for %s, using EINVAL\n", value, name);
                return EINVAL;
        }
        return 0;
}

/* What finit and init share, from the moment the name is known; returns 0 or -1 with errno. */
static long load(const char *name, const unsigned char *head, size_t n, const char *params) {
        int claimed = 0, saved, fail;
        long r;

        if (is_elf(head, n) && !state_exists(name))
                claimed = sysfs_claim(name);
        hold(name);
        record_params(name, params);
        if (claimed < 0) {
                errno = EEXIST;
                r = -1;
        } else if (is_elf(head, n) && !state_exists(name) && (fail = configured_failure(name)) > 0) {
                errno = fail;
                r = -1;
        } else
                r = do_insert(name, head, n);
        saved = errno;
        if (r == 0)
                run_nested(name);
        if (claimed > 0)
                sysfs_finish(name, r == 0);
        errno = saved;
        return r;
}

static long fake_finit(int fd, const char *params, int flags) {
        long long start = now_us();
        char link[64], target[4096], name[256];
        unsigned char head[4] = {};
        struct stat st;
        ssize_t n;
        long r;
        int saved;

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
        r = load(name, head, n < 0 ? 0 : (size_t) n, params);
        record("finit %s %d %lld %s %s", name, flags, (long long) st.st_size,
               (flags & 4)                   ? "compressed"
               : (r == 0 || errno == EEXIST) ? "elf"
                                             : "other",
               r == 0 ? "ok" : strerrorname_np(errno));
        saved = errno;
        record_span(name, start);
        errno = saved;
        return r;
}

static long fake_init(const unsigned char *image, unsigned long len, const char *params) {
        long long start = now_us();
        /* No file behind it: the name is the parameters' "fakename=", or the image's. */
        const char *p = params ? strstr(params, "fakename=") : NULL;
        char name[256] = "unknown";
        ImageInfo info;
        long r;
        int saved;

        inspect_image(image, (size_t) len, &info);
        if (p)
                snprintf(name, sizeof name, "%.*s", (int) strcspn(p + 9, " "), p + 9);
        else if (info.name[0])
                snprintf(name, sizeof name, "%s", info.name);
        log_to("init.log", "%s versions=%s vermagic=%s", name, info.versions, info.vermagic);
        r = load(name, image, (size_t) len, params);
        record("init %s %ld %s", name, (long) len, r == 0 ? "ok" : strerrorname_np(errno));
        saved = errno;
        record_span(name, start);
        errno = saved;
        return r;
}

static long fake_delete(const char *name, long flags) {
        char path[4096];
        long r = -1;

        if (sysfs_on())
                r = sysfs_delete(name);
        else if (state_path(name, path, sizeof path) == 0) {
                r = unlink(path);
                if (r < 0)
                        errno = ENOENT;
        }
        record("delete %s %ld %s", name, flags, r == 0 ? "ok" : strerrorname_np(errno));
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
        if (number == SYS_init_module)
                return fake_init((const unsigned char *) a, (unsigned long) b, (const char *) c);
        if (number == SYS_delete_module)
                return fake_delete((const char *) a, b);

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
