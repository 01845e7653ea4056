/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "kernel.h"
#include "loader.h"
#include "module-elf.h"
#include "strutil.h"
#include "timeutil.h"

#define REMOVE_RETRY_USEC (50 * USEC_PER_MSEC)

struct Loader {
        LoadPolicy policy;
        CompressionType kernel_compression;
        bool no_finit; /* finit_module() said ENOSYS once: use init_module() from then on */

        /* Decompressions running at once, at most max_decompress (0: no bound). */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned n_decompress, max_decompress;
};

static const char *const policy_names[_LOAD_POLICY_MAX] = {
        [LOAD_POLICY_AUTO] = "auto",
        [LOAD_POLICY_USERSPACE] = "userspace",
        [LOAD_POLICY_KERNEL] = "kernel",
};

const char *load_policy_to_string(LoadPolicy p) {
        return p >= 0 && p < _LOAD_POLICY_MAX ? policy_names[p] : NULL;
}

LoadPolicy load_policy_from_string(const char *s) {
        for (LoadPolicy p = 0; s && p < _LOAD_POLICY_MAX; p++)
                if (streq(s, policy_names[p]))
                        return p;
        return _LOAD_POLICY_INVALID;
}

/* Read a small sysfs attribute, without its trailing newline. */
static int read_one_line(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        return 0;
}

int loader_new(Loader **ret, LoadPolicy policy, const char *compression_sysfs) {
        Loader *l;
        char buf[32];

        if (policy < 0 || policy >= _LOAD_POLICY_MAX)
                return -EINVAL;
        l = calloc(1, sizeof(Loader));
        if (!l)
                return -ENOMEM;
        l->policy = policy;
        l->kernel_compression = COMPRESSION_NONE;
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->cond, NULL);
        /* Present only on kernels built with CONFIG_MODULE_DECOMPRESS: the one format they take. */
        if (read_one_line(compression_sysfs ?: "/sys/module/compression", buf, sizeof buf) >= 0) {
                CompressionType t = compression_from_string(buf);
                if (t > COMPRESSION_NONE)
                        l->kernel_compression = t;
        }
        *ret = l;
        return 0;
}

Loader *loader_free(Loader *l) {
        if (!l)
                return NULL;
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return NULL;
}

void loader_set_max_decompress(Loader *l, unsigned n) {
        pthread_mutex_lock(&l->lock);
        l->max_decompress = n;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
}

/* Decompressing is the part of a load that takes a CPU: bounded. The kernel call is not, so
 * that a load whose init asks for another module never waits for a slot that one needs. */
static void decompress_slot_take(Loader *l) {
        pthread_mutex_lock(&l->lock);
        while (l->max_decompress > 0 && l->n_decompress >= l->max_decompress)
                pthread_cond_wait(&l->cond, &l->lock);
        l->n_decompress++;
        pthread_mutex_unlock(&l->lock);
}

static void decompress_slot_release(Loader *l) {
        pthread_mutex_lock(&l->lock);
        l->n_decompress--;
        pthread_cond_signal(&l->cond);
        pthread_mutex_unlock(&l->lock);
}

CompressionType loader_kernel_compression(const Loader *l) {
        return l->kernel_compression;
}

static int kernel_flags(LoadFlags flags) {
        return ((flags & LOAD_FORCE_VERMAGIC) ? MODULE_INIT_IGNORE_VERMAGIC : 0) |
               ((flags & LOAD_FORCE_MODVERSION) ? MODULE_INIT_IGNORE_MODVERSIONS : 0);
}

static void count_call(LoadStats *stats, int r, uint64_t bytes) {
        if (!stats)
                return;
        stats->kernel_calls++;
        stats->bytes_to_kernel += bytes;
        if (r == -EEXIST)
                stats->kernel_eexist++;
}

/* The old way, for kernels without finit_module(): the image from our memory. init_module() takes
 * no flags: to force, kmod edits its copy (no __versions for the kernel to check, no vermagic), and
 * so do we, in a private copy-on-write mapping. */
static int insert_from_memory(int fd, uint64_t size, const char *params, int kflags, LoadStats *stats) {
        bool strip_versions = kflags & MODULE_INIT_IGNORE_MODVERSIONS,
             strip_vermagic = kflags & MODULE_INIT_IGNORE_VERMAGIC;
        void *image;
        int r;

        if (size == 0 || size > SIZE_MAX)
                return -ENOEXEC;
        image = mmap(NULL, (size_t) size, PROT_READ | (kflags ? PROT_WRITE : 0), MAP_PRIVATE, fd, 0);
        if (image == MAP_FAILED)
                return -errno;
        r = kflags ? module_elf_strip(image, (size_t) size, strip_versions, strip_vermagic) : 0;
        if (r >= 0) {
                r = kernel_init_module(image, (size_t) size, params);
                count_call(stats, r, size);
        }
        (void) munmap(image, (size_t) size);
        return r;
}

static int insert_fd(Loader *l, int fd, uint64_t size, const char *params, int kflags, LoadStats *stats) {
        int r;

        /* Workers share the loader: the flag is read and set atomically. */
        if (!__atomic_load_n(&l->no_finit, __ATOMIC_RELAXED)) {
                r = kernel_finit_module(fd, params, kflags);
                if (r != -ENOSYS) {
                        count_call(stats, r, size);
                        return r;
                }
                __atomic_store_n(&l->no_finit, true, __ATOMIC_RELAXED);
        }
        /* init_module() cannot take a compressed image: the caller decompresses it. */
        if (kflags & MODULE_INIT_COMPRESSED_FILE)
                return -EOPNOTSUPP;
        return insert_from_memory(fd, size, params, kflags, stats);
}

int loader_insert(Loader *l, const char *path, const char *params, LoadFlags flags, LoadStats *stats) {
        _cleanup_close_ int fd = -EBADF, memfd = -EBADF;
        uint8_t magic[COMPRESSION_MAGIC_MAX];
        CompressionType type;
        struct stat st;
        const char *name;
        uint64_t size;
        ssize_t n;
        int kflags = kernel_flags(flags), r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;

        n = pread(fd, magic, sizeof magic, 0);
        if (n < 0)
                return -errno;
        type = compression_detect(magic, (size_t) n);

        if (type == COMPRESSION_NONE)
                return insert_fd(l, fd, (uint64_t) st.st_size, params, kflags, stats);

        if (l->policy == LOAD_POLICY_KERNEL || (l->policy == LOAD_POLICY_AUTO && type == l->kernel_compression &&
                                                !__atomic_load_n(&l->no_finit, __ATOMIC_RELAXED))) {
                r = insert_fd(l, fd, (uint64_t) st.st_size, params, kflags | MODULE_INIT_COMPRESSED_FILE, stats);
                /* No finit_module() after all: then we decompress, unless told not to. */
                if (r != -EOPNOTSUPP || l->policy == LOAD_POLICY_KERNEL)
                        return r;
        }

        name = strrchr(path, '/');
        decompress_slot_take(l);
        r = decompress_to_sealed_memfd(type, fd, name ? name + 1 : path, LOADER_MODULE_SIZE_MAX, &memfd, &size);
        decompress_slot_release(l);
        if (r < 0)
                return r;
        if (stats)
                stats->bytes_decompressed += size;
        return insert_fd(l, memfd, size, params, kflags, stats);
}

int loader_module_refcount(const char *name) {
        char path[PATH_MAX], buf[32];
        uint64_t v;
        int r;

        snprintf(path, sizeof path, "/sys/module/%s/refcnt", name);
        r = read_one_line(path, buf, sizeof buf);
        if (r < 0)
                return r;
        r = safe_atou64(buf, &v);
        if (r < 0)
                return r;
        return (int) MIN(v, (uint64_t) INT32_MAX);
}

static bool module_has_holders(const char *name) {
        char path[PATH_MAX];
        DIR *d;
        bool any = false;

        snprintf(path, sizeof path, "/sys/module/%s/holders", name);
        d = opendir(path);
        if (!d)
                return false;
        for (struct dirent *de; (de = readdir(d));)
                if (de->d_name[0] != '.') {
                        any = true;
                        break;
                }
        closedir(d);
        return any;
}

char loader_module_state(const char *name) {
        char path[PATH_MAX], buf[32];

        if (snprintf(path, sizeof path, "/sys/module/%s/initstate", name) >= (int) sizeof path)
                return 0;
        if (read_one_line(path, buf, sizeof buf) >= 0) {
                if (streq(buf, "live"))
                        return 'L';
                if (streq(buf, "coming"))
                        return 'C';
                if (streq(buf, "going"))
                        return 'G';
                return 0;
        }
        path[strlen(path) - strlen("/initstate")] = '\0';
        return access(path, F_OK) >= 0 ? 'B' : 0;
}

int loader_remove(const char *name, bool force, uint64_t wait_usec) {
        uint64_t deadline = wait_usec == USEC_INFINITY ? USEC_INFINITY : now_usec(CLOCK_MONOTONIC) + wait_usec;
        int r;

        for (;;) {
                if (!force && (loader_module_refcount(name) > 0 || module_has_holders(name)))
                        r = -EBUSY;
                else
                        r = kernel_delete_module(name, O_NONBLOCK | (force ? O_TRUNC : 0));
                if ((r != -EBUSY && r != -EAGAIN) || wait_usec == 0)
                        return r;
                if (deadline != USEC_INFINITY && now_usec(CLOCK_MONOTONIC) >= deadline)
                        return r;
                (void) nanosleep(&(struct timespec){ .tv_nsec = REMOVE_RETRY_USEC * 1000 }, NULL);
        }
}

const char *loader_strerror(int error) {
        switch (abs(error)) {
        case ENOEXEC:
                return "Invalid module format";
        case ENOENT:
                return "Unknown symbol in module, or unknown parameter (see dmesg)";
        case ENOSYS:
                return "Kernel does not have module support";
        case EEXIST:
                return "Module already in kernel";
        case EBUSY:
                return "Module is in use";
        case EBADMSG:
                return "Module file is corrupt or truncated";
        case EFBIG:
                return "Module is larger than the loader accepts";
        case EOPNOTSUPP:
                return "The kernel cannot take this module file as it is (it decompresses only what "
                       "/sys/module/compression names)";
        case ENODATA:
                return "Module has no version information to strip for a forced load";
        case EKEYREJECTED:
                return "Key was rejected by service";
        default:
                return strerror(abs(error));
        }
}
