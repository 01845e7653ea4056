/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "decompress.h"
#include "macro.h"

#define check(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

#define check_r(expr, want)                                                                                          \
        do {                                                                                                         \
                int _r_ = (expr);                                                                                    \
                if (_r_ != (want)) {                                                                                 \
                        fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n", __FILE__, __LINE__, #expr, _r_, \
                                strerror(-_r_), (want));                                                             \
                        abort();                                                                                     \
                }                                                                                                    \
        } while (0)

#define BIG_SIZE   (2U * 1024U * 1024U + 12345U)
#define SMALL_SIZE 6000U

typedef struct Buf {
        uint8_t *data;
        size_t size;
} Buf;

static void buf_done(Buf *b) {
        free(b->data);
        *b = (Buf){};
}

static void buf_append(Buf *b, const void *p, size_t n) {
        uint8_t *d = realloc(b->data, b->size + n + 1);
        check(d);
        if (n > 0)
                memcpy(d + b->size, p, n);
        b->data = d;
        b->size += n;
}

static Buf buf_copy(const Buf *src, size_t n) {
        Buf b = {};
        check(n <= src->size);
        buf_append(&b, src->data, n);
        return b;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

/* Text-like, compressible bytes with some incompressible runs mixed in. */
static Buf make_data(size_t size) {
        static const char *const words[] = {
                "module",    "kernel",  "symbol",      "alias", "depends", "softdep",  "vermagic", "license",
                "GPL",       "\177ELF", "init_module", "finit", "memfd",   "\0\0\0\0", "parm",     "srcversion",
                "retpoline", "intree",  "name",        "\n",    " ",       "=",
        };
        Buf b = {};

        b.data = malloc(size + 1);
        check(b.data);
        while (b.size < size) {
                uint64_t x = rng();
                size_t n;

                if (x % 97 == 0) {
                        /* a short random run */
                        n = (size_t) (x >> 8) % 200;
                        n = MIN(n, size - b.size);
                        for (size_t i = 0; i < n; i++)
                                b.data[b.size + i] = (uint8_t) rng();
                } else {
                        const char *w = words[(x >> 16) % ELEMENTSOF(words)];
                        n = MIN(w[0] == '\0' ? 4 : strlen(w), size - b.size);
                        memcpy(b.data + b.size, w, n);
                }
                b.size += n;
        }
        return b;
}

static Buf compress_xz(const Buf *in) {
        Buf b = {};
        size_t pos = 0, bound = lzma_stream_buffer_bound(in->size);

        b.data = malloc(bound);
        check(b.data);
        check(lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, NULL, in->data, in->size, b.data, &pos, bound) == LZMA_OK);
        b.size = pos;
        return b;
}

static Buf compress_zstd(const Buf *in, bool checksum) {
        Buf b = {};
        size_t bound = ZSTD_compressBound(in->size), z;

        b.data = malloc(bound);
        check(b.data);
        if (checksum) {
                ZSTD_CCtx *c = ZSTD_createCCtx();
                check(c);
                check(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)));
                z = ZSTD_compress2(c, b.data, bound, in->data, in->size);
                ZSTD_freeCCtx(c);
        } else
                z = ZSTD_compress(b.data, bound, in->data, in->size, 3);
        check(!ZSTD_isError(z));
        b.size = z;
        return b;
}

static Buf compress_gzip(const Buf *in) {
        z_stream z = {};
        Buf b = {};
        uLong bound;

        check(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        bound = deflateBound(&z, in->size);
        b.data = malloc(bound);
        check(b.data);
        z.next_in = in->data;
        z.avail_in = (uInt) in->size;
        z.next_out = b.data;
        z.avail_out = (uInt) bound;
        check(deflate(&z, Z_FINISH) == Z_STREAM_END);
        b.size = z.total_out;
        check(deflateEnd(&z) == Z_OK);
        return b;
}

/* The large input compressed in each format once, since compressing is the slow part under
 * valgrind. */
static Buf big_packed[_COMPRESSION_MAX];

static Buf pack(CompressionType t, const Buf *in) {
        switch (t) {
        case COMPRESSION_NONE:
                return buf_copy(in, in->size);
        case COMPRESSION_XZ:
                return compress_xz(in);
        case COMPRESSION_ZSTD:
                /* as zstd(1) does by default, and so module files carry a checksum */
                return compress_zstd(in, true);
        case COMPRESSION_GZIP:
                return compress_gzip(in);
        default:
                check(false);
                return (Buf){};
        }
}

static void write_all(int fd, const void *p, size_t n) {
        const uint8_t *q = p;
        while (n > 0) {
                ssize_t k = write(fd, q, n);
                if (k < 0 && errno == EINTR)
                        continue;
                check(k > 0);
                q += k;
                n -= (size_t) k;
        }
}

static int memfd_with(const void *p, size_t n) {
        int fd = memfd_create("test-input", MFD_CLOEXEC);
        check(fd >= 0);
        write_all(fd, p, n);
        check(lseek(fd, 0, SEEK_SET) == 0);
        return fd;
}

/* Refill an existing memfd so sweeps don't create thousands of fds. */
static void memfd_refill(int fd, const void *p, size_t n) {
        check(ftruncate(fd, 0) == 0);
        check(lseek(fd, 0, SEEK_SET) == 0);
        write_all(fd, p, n);
        check(lseek(fd, 0, SEEK_SET) == 0);
}

static void memfd_reset(int fd) {
        check(ftruncate(fd, 0) == 0);
        check(lseek(fd, 0, SEEK_SET) == 0);
}

static bool fd_content_equals(int fd, const Buf *want) {
        struct stat st;
        uint8_t *p;
        bool eq;

        check(fstat(fd, &st) == 0);
        if ((uint64_t) st.st_size != want->size)
                return false;
        p = malloc(want->size + 1);
        check(p);
        for (size_t off = 0; off < want->size;) {
                ssize_t k = pread(fd, p + off, want->size - off, (off_t) off);
                check(k > 0);
                off += (size_t) k;
        }
        eq = want->size == 0 || memcmp(p, want->data, want->size) == 0;
        free(p);
        return eq;
}

static int decompress_buf(CompressionType t, const Buf *in, int out_fd, uint64_t max_size, uint64_t *ret_size) {
        _cleanup_close_ int in_fd = memfd_with(in->data, in->size);
        memfd_reset(out_fd);
        return decompress_fd_to_fd(t, in_fd, out_fd, max_size, ret_size);
}

static void check_sealed(int fd, const Buf *want) {
        int seals = fcntl(fd, F_GET_SEALS);
        int need = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
        int fl;

        check(seals >= 0);
        check((seals & need) == need);
        fl = fcntl(fd, F_GETFD);
        check(fl >= 0 && (fl & FD_CLOEXEC));
        check(lseek(fd, 0, SEEK_CUR) == 0);
        check(fd_content_equals(fd, want));

        errno = 0;
        check(write(fd, "x", 1) < 0 && errno == EPERM);
        errno = 0;
        check(ftruncate(fd, (off_t) want->size + 1) < 0 && errno == EPERM);
        if (want->size > 0) {
                errno = 0;
                check(ftruncate(fd, 0) < 0 && errno == EPERM);
        }
        check(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) < 0 && errno == EPERM);
        check(fd_content_equals(fd, want));
}

static void test_strings(void) {
        for (CompressionType t = 0; t < _COMPRESSION_MAX; t++) {
                const char *s = compression_to_string(t);
                check(s);
                check(compression_from_string(s) == t);
        }
        check(streq(compression_to_string(COMPRESSION_NONE), "none"));
        check(streq(compression_to_string(COMPRESSION_XZ), "xz"));
        check(streq(compression_to_string(COMPRESSION_ZSTD), "zstd"));
        check(streq(compression_to_string(COMPRESSION_GZIP), "gzip"));
        check(!compression_to_string(_COMPRESSION_MAX));
        check(!compression_to_string(_COMPRESSION_INVALID));
        check(compression_from_string("gz") == COMPRESSION_GZIP);
        check(compression_from_string("zst") == _COMPRESSION_INVALID);
        check(compression_from_string("XZ") == _COMPRESSION_INVALID);
        check(compression_from_string("xz\n") == _COMPRESSION_INVALID);
        check(compression_from_string("") == _COMPRESSION_INVALID);
        check(compression_from_string(NULL) == _COMPRESSION_INVALID);
}

static void test_detect(void) {
        static const struct {
                uint8_t magic[8];
                size_t len;
                CompressionType type;
        } table[] = {
                { { 0xfd, '7', 'z', 'X', 'Z', 0x00, 0x00, 0x04 }, 6, COMPRESSION_XZ },
                { { 0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x00 }, 4, COMPRESSION_ZSTD },
                { { 0x50, 0x2a, 0x4d, 0x18, 0x04, 0x00 }, 4, COMPRESSION_ZSTD },
                { { 0x5f, 0x2a, 0x4d, 0x18, 0x04, 0x00 }, 4, COMPRESSION_ZSTD },
                { { 0x1f, 0x8b, 0x08, 0x00 }, 2, COMPRESSION_GZIP },
        };
        static const uint8_t elf[] = { 0x7f, 'E', 'L', 'F', 2, 1, 1, 0 };
        static const uint8_t almost_xz[] = { 0xfd, '7', 'z', 'X', 'Z', 0x01 };
        static const uint8_t almost_zstd[] = { 0x28, 0xb5, 0x2f, 0xfe };
        static const uint8_t almost_skip[] = { 0x60, 0x2a, 0x4d, 0x18 };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                check(compression_detect(table[i].magic, sizeof(table[i].magic)) == table[i].type);
                check(compression_detect(table[i].magic, table[i].len) == table[i].type);
                for (size_t l = 0; l < table[i].len; l++)
                        check(compression_detect(table[i].magic, l) == COMPRESSION_NONE);
        }

        check(compression_detect(elf, sizeof(elf)) == COMPRESSION_NONE);
        check(compression_detect(almost_xz, sizeof(almost_xz)) == COMPRESSION_NONE);
        check(compression_detect(almost_zstd, sizeof(almost_zstd)) == COMPRESSION_NONE);
        check(compression_detect(almost_skip, sizeof(almost_skip)) == COMPRESSION_NONE);
        check(compression_detect(NULL, 0) == COMPRESSION_NONE);
        check(compression_detect(NULL, 100) == COMPRESSION_NONE);
        check(compression_detect("", 0) == COMPRESSION_NONE);
}

/* Round trip through both entry points and check everything the API promises. */
static void roundtrip(CompressionType t, const Buf *orig, const Buf *packed) {
        _cleanup_close_ int out = memfd_create("test-output", MFD_CLOEXEC);
        _cleanup_close_ int in = -EBADF, sealed = -EBADF;
        uint64_t size = UINT64_MAX;

        check(out >= 0);
        check_r(decompress_buf(t, packed, out, UINT64_MAX, &size), 0);
        check(size == orig->size);
        check(fd_content_equals(out, orig));

        /* exactly at the bound is fine, one below is not */
        check_r(decompress_buf(t, packed, out, orig->size, NULL), 0);
        check(fd_content_equals(out, orig));
        if (orig->size > 0) {
                size = 4242;
                check_r(decompress_buf(t, packed, out, orig->size - 1, &size), -EFBIG);
                check(size == 4242);
                check_r(decompress_buf(t, packed, out, 0, &size), -EFBIG);
                check(size == 4242);
        }

        in = memfd_with(packed->data, packed->size);
        size = UINT64_MAX;
        check_r(decompress_to_sealed_memfd(t, in, "test-module.ko", UINT64_MAX, &sealed, &size), 0);
        check(sealed >= 0);
        check(size == orig->size);
        check_sealed(sealed, orig);

        if (orig->size > 0 && orig->size < DECOMPRESS_CHUNK_SIZE) {
                int fd = -42;
                size = 4242;
                check(lseek(in, 0, SEEK_SET) == 0);
                check_r(decompress_to_sealed_memfd(t, in, "x", orig->size - 1, &fd, &size), -EFBIG);
                check(fd == -42 && size == 4242);
        }
}

static void test_roundtrips(const Buf *big) {
        Buf one = { .data = (uint8_t *) "A", .size = 1 }, empty = { .data = (uint8_t *) "", .size = 0 };
        const Buf *inputs[] = { big, &one, &empty };

        for (CompressionType t = 0; t < _COMPRESSION_MAX; t++)
                for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                        if (inputs[i] == big) {
                                check(compression_detect(big_packed[t].data, big_packed[t].size) == t);
                                roundtrip(t, big, &big_packed[t]);
                                continue;
                        }
                        Buf packed = pack(t, inputs[i]);
                        check(compression_detect(packed.data, packed.size) == t);
                        roundtrip(t, inputs[i], &packed);
                        buf_done(&packed);
                }

        /* zstd frames without a checksum, as ZSTD_compress() makes them */
        Buf z = compress_zstd(big, false);
        roundtrip(COMPRESSION_ZSTD, big, &z);
        buf_done(&z);
}

/* A file that is zero bytes long is not a valid compressed file. */
static void test_empty_file(void) {
        _cleanup_close_ int out = memfd_create("test-output", MFD_CLOEXEC);
        Buf empty = {};
        uint64_t size = 4242;

        check(out >= 0);
        check_r(decompress_buf(COMPRESSION_NONE, &empty, out, UINT64_MAX, &size), 0);
        check(size == 0);
        check_r(decompress_buf(COMPRESSION_NONE, &empty, out, 0, &size), 0);

        for (CompressionType t = COMPRESSION_XZ; t < _COMPRESSION_MAX; t++) {
                _cleanup_close_ int in = memfd_with("", 0);
                int fd = -42;

                size = 4242;
                check_r(decompress_buf(t, &empty, out, UINT64_MAX, &size), -EBADMSG);
                check(size == 4242);
                check_r(decompress_to_sealed_memfd(t, in, NULL, UINT64_MAX, &fd, &size), -EBADMSG);
                check(fd == -42 && size == 4242);
        }
}

static void test_concatenated(const Buf *small) {
        _cleanup_close_ int out = memfd_create("test-output", MFD_CLOEXEC);
        static const uint8_t skippable[] = { 0x53, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c' };
        static const uint8_t xz_padding[] = { 0, 0, 0, 0 };
        Buf twice = {}, half = buf_copy(small, small->size / 2);
        uint64_t size;

        check(out >= 0);
        buf_append(&twice, small->data, small->size);
        buf_append(&twice, half.data, half.size);

        for (CompressionType t = COMPRESSION_XZ; t < _COMPRESSION_MAX; t++) {
                Buf a = pack(t, small), b = pack(t, &half), cat = {};

                if (t == COMPRESSION_ZSTD)
                        buf_append(&cat, skippable, sizeof(skippable));
                buf_append(&cat, a.data, a.size);
                if (t == COMPRESSION_XZ)
                        buf_append(&cat, xz_padding, sizeof(xz_padding));
                if (t == COMPRESSION_ZSTD)
                        buf_append(&cat, skippable, sizeof(skippable));
                buf_append(&cat, b.data, b.size);
                if (t == COMPRESSION_XZ)
                        buf_append(&cat, xz_padding, sizeof(xz_padding));

                size = 0;
                check_r(decompress_buf(t, &cat, out, UINT64_MAX, &size), 0);
                check(size == twice.size);
                check(fd_content_equals(out, &twice));

                /* the bound applies to the total, not per stream */
                check_r(decompress_buf(t, &cat, out, twice.size - 1, NULL), -EFBIG);

                /* trailing garbage after the last complete stream is rejected */
                Buf g = buf_copy(&cat, cat.size);
                buf_append(&g, "garbage!", 8);
                check_r(decompress_buf(t, &g, out, UINT64_MAX, NULL), -EBADMSG);
                buf_done(&g);

                /* so is a single stray byte, and a stray zero byte (not valid xz stream padding) */
                g = buf_copy(&a, a.size);
                buf_append(&g, "\0", 1);
                check_r(decompress_buf(t, &g, out, UINT64_MAX, NULL), -EBADMSG);
                buf_done(&g);

                buf_done(&a);
                buf_done(&b);
                buf_done(&cat);
        }

        buf_done(&twice);
        buf_done(&half);
}

/* Offsets for sweeps over a small stream: every byte near either end (headers, trailers, checksums),
 * a sample in between, to keep the test quick under valgrind. */
static size_t sweep_next(size_t i, size_t size) {
        if (i < 96 || i + 96 >= size)
                return i + 1;
        return MIN(i + 5, size - 96);
}

/* Every truncation near the ends of a small stream, and some of a large one, must fail cleanly. */
static void test_truncated(const Buf *small) {
        _cleanup_close_ int out = memfd_create("test-output", MFD_CLOEXEC);
        _cleanup_close_ int in = memfd_create("test-input", MFD_CLOEXEC);

        check(out >= 0 && in >= 0);

        for (CompressionType t = COMPRESSION_XZ; t < _COMPRESSION_MAX; t++) {
                Buf s = pack(t, small);
                const Buf *b = &big_packed[t];
                size_t offsets[] = { 7, b->size / 2, b->size - 1 };

                for (size_t cut = 0; cut < s.size; cut = sweep_next(cut, s.size)) {
                        uint64_t size = 4242;
                        memfd_refill(in, s.data, cut);
                        memfd_reset(out);
                        check_r(decompress_fd_to_fd(t, in, out, UINT64_MAX, &size), -EBADMSG);
                        check(size == 4242);
                }

                for (size_t i = 0; i < ELEMENTSOF(offsets); i++) {
                        Buf c = buf_copy(b, offsets[i]);
                        check_r(decompress_buf(t, &c, out, UINT64_MAX, NULL), -EBADMSG);
                        buf_done(&c);
                }

                buf_done(&s);
        }
}

/* Flip bytes of a small stream (see sweep_next()): either an error, or (for the few header bytes a
 * format does not protect: gzip's mtime, extra flags and OS) the original content. Never wrong
 * content, never a crash. */
static void test_flipped(const Buf *small) {
        _cleanup_close_ int out = memfd_create("test-output", MFD_CLOEXEC);
        _cleanup_close_ int in = memfd_create("test-input", MFD_CLOEXEC);
        unsigned errors = 0, harmless = 0;

        check(out >= 0 && in >= 0);

        for (CompressionType t = COMPRESSION_XZ; t < _COMPRESSION_MAX; t++) {
                Buf s = pack(t, small), *b = &big_packed[t];

                for (size_t pos = 0; pos < s.size; pos = sweep_next(pos, s.size)) {
                        s.data[pos] ^= 0x55;
                        memfd_refill(in, s.data, s.size);
                        memfd_reset(out);
                        int r = decompress_fd_to_fd(t, in, out, UINT64_MAX, NULL);
                        if (r < 0) {
                                check(r == -EBADMSG || r == -ENOMEM);
                                errors++;
                        } else {
                                check(fd_content_equals(out, small));
                                harmless++;
                        }
                        s.data[pos] ^= 0x55;
                }

                /* a flipped byte in the middle of a large stream is always caught */
                b->data[b->size / 2] ^= 0xff;
                check_r(decompress_buf(t, b, out, UINT64_MAX, NULL), -EBADMSG);
                b->data[b->size / 2] ^= 0xff;

                buf_done(&s);
        }

        /* without a checksum a zstd flip may decode to other bytes; it still must not crash or
         * exceed the bound */
        Buf z = compress_zstd(small, false);
        for (size_t pos = 0; pos < z.size; pos = sweep_next(pos, z.size)) {
                uint64_t size = 0;
                z.data[pos] ^= 0x55;
                memfd_refill(in, z.data, z.size);
                memfd_reset(out);
                int r = decompress_fd_to_fd(COMPRESSION_ZSTD, in, out, SMALL_SIZE * 2, &size);
                check(r < 0 || size <= SMALL_SIZE * 2);
                z.data[pos] ^= 0x55;
        }
        buf_done(&z);

        check(errors > 0);
        printf("flipped bytes: %u rejected, %u harmless\n", errors, harmless);
}

static void test_wrong_input(const Buf *small) {
        _cleanup_close_ int out = memfd_create("test-output", MFD_CLOEXEC);
        Buf garbage = { .data = malloc(100000), .size = 100000 };

        check(out >= 0);
        check(garbage.data);
        for (size_t i = 0; i < garbage.size; i++)
                garbage.data[i] = (uint8_t) rng();

        for (CompressionType t = COMPRESSION_XZ; t < _COMPRESSION_MAX; t++) {
                Buf packed = pack(t, small);

                /* wrong magic */
                packed.data[0] ^= 0x01;
                check_r(decompress_buf(t, &packed, out, UINT64_MAX, NULL), -EBADMSG);
                packed.data[0] ^= 0x01;

                /* decoded as another format */
                for (CompressionType u = COMPRESSION_XZ; u < _COMPRESSION_MAX; u++)
                        if (u != t)
                                check_r(decompress_buf(u, &packed, out, UINT64_MAX, NULL), -EBADMSG);

                /* random bytes, plain data, and plain data after a valid magic */
                check_r(decompress_buf(t, &garbage, out, UINT64_MAX, NULL), -EBADMSG);
                check_r(decompress_buf(t, small, out, UINT64_MAX, NULL), -EBADMSG);
                Buf m = buf_copy(&packed, t == COMPRESSION_XZ ? 6 : t == COMPRESSION_ZSTD ? 4 : 2);
                buf_append(&m, garbage.data, 5000);
                check_r(decompress_buf(t, &m, out, UINT64_MAX, NULL), -EBADMSG);
                buf_done(&m);

                buf_done(&packed);
        }

        /* COMPRESSION_NONE does not look at the bytes */
        uint64_t size = 0;
        check_r(decompress_buf(COMPRESSION_NONE, &garbage, out, UINT64_MAX, &size), 0);
        check(size == garbage.size);
        check(fd_content_equals(out, &garbage));

        buf_done(&garbage);
}

static void test_bad_args_and_io_errors(const Buf *small) {
        _cleanup_close_ int out = memfd_create("test-output", MFD_CLOEXEC);
        _cleanup_close_ int in = -EBADF, dir = -EBADF, ro = -EBADF;
        Buf packed = compress_xz(small);
        uint64_t size = 4242;
        int fd = -42;

        check(out >= 0);
        in = memfd_with(packed.data, packed.size);

        check_r(decompress_fd_to_fd(_COMPRESSION_MAX, in, out, UINT64_MAX, &size), -EOPNOTSUPP);
        check_r(decompress_fd_to_fd(_COMPRESSION_INVALID, in, out, UINT64_MAX, &size), -EOPNOTSUPP);
        check_r(decompress_fd_to_fd((CompressionType) 77, in, out, UINT64_MAX, &size), -EOPNOTSUPP);
        check_r(decompress_fd_to_fd(COMPRESSION_XZ, -1, out, UINT64_MAX, &size), -EBADF);
        check_r(decompress_fd_to_fd(COMPRESSION_XZ, in, -EBADF, UINT64_MAX, &size), -EBADF);
        check_r(decompress_to_sealed_memfd(_COMPRESSION_MAX, in, "x", UINT64_MAX, &fd, &size), -EOPNOTSUPP);
        check_r(decompress_to_sealed_memfd(COMPRESSION_XZ, -1, "x", UINT64_MAX, &fd, &size), -EBADF);
        check_r(decompress_to_sealed_memfd(COMPRESSION_XZ, in, "x", UINT64_MAX, NULL, &size), -EINVAL);
        check(size == 4242 && fd == -42);

        /* read() failing: a directory */
        dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        check(dir >= 0);
        for (CompressionType t = 0; t < _COMPRESSION_MAX; t++)
                check_r(decompress_fd_to_fd(t, dir, out, UINT64_MAX, &size), -EISDIR);

        /* write() failing: an fd not open for writing */
        ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
        check(ro >= 0);
        check(lseek(in, 0, SEEK_SET) == 0);
        check_r(decompress_fd_to_fd(COMPRESSION_XZ, in, ro, UINT64_MAX, &size), -EBADF);
        check(size == 4242);

        /* input is read from the fd's current offset */
        _cleanup_close_ int prefixed = memfd_with("JUNKJUNK", 8);
        check(lseek(prefixed, 0, SEEK_END) == 8);
        write_all(prefixed, packed.data, packed.size);
        check(lseek(prefixed, 8, SEEK_SET) == 8);
        memfd_reset(out);
        check_r(decompress_fd_to_fd(COMPRESSION_XZ, prefixed, out, UINT64_MAX, &size), 0);
        check(size == small->size);
        check(fd_content_equals(out, small));

        /* memfd names: NULL, empty and longer than the kernel allows */
        char longname[400];
        memset(longname, 'n', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        const char *names[] = { NULL, "", longname };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_close_ int m = -EBADF;
                check(lseek(in, 0, SEEK_SET) == 0);
                check_r(decompress_to_sealed_memfd(COMPRESSION_XZ, in, names[i], UINT64_MAX, &m, NULL), 0);
                check_sealed(m, small);
        }

        buf_done(&packed);
}

/* A pipe fed in small, irregular pieces by another process. */
static void test_pipe(const Buf *big) {
        for (CompressionType t = 0; t < _COMPRESSION_MAX; t++) {
                const Buf *packed = &big_packed[t];
                _cleanup_close_ int sealed = -EBADF;
                int p[2], status;
                uint64_t size = 0;
                pid_t pid;

                check(pipe2(p, O_CLOEXEC) == 0);
                fflush(stdout);
                fflush(stderr);
                pid = fork();
                check(pid >= 0);
                if (pid == 0) {
                        (void) close(p[0]);
                        for (size_t off = 0; off < packed->size;) {
                                size_t n = (size_t) (rng() % 70000) + 1;
                                n = MIN(n, packed->size - off);
                                ssize_t k = write(p[1], packed->data + off, n);
                                if (k < 0 && errno == EINTR)
                                        continue;
                                if (k <= 0)
                                        _exit(EXIT_FAILURE);
                                off += (size_t) k;
                        }
                        _exit(EXIT_SUCCESS);
                }
                (void) close(p[1]);

                check_r(decompress_to_sealed_memfd(t, p[0], "pipe", UINT64_MAX, &sealed, &size), 0);
                (void) close(p[0]);
                check(waitpid(pid, &status, 0) == pid);
                check(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                check(size == big->size);
                check_sealed(sealed, big);
        }
}

/* Optional: round trip real module files. Uncompressed ones are compressed here in each format;
 * compressed ones are detected by their magic and decompressed. */
static unsigned ko_count;

static int ko_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        _cleanup_close_ int fd = -EBADF, out = -EBADF;
        uint8_t head[COMPRESSION_MAGIC_MAX];
        const char *dot;
        Buf data = {};
        ssize_t n;

        if (flag != FTW_F || !S_ISREG(st->st_mode))
                return 0;
        dot = strstr(path + ftw->base, ".ko");
        if (!dot || (dot[3] != '\0' && !streq(dot, ".ko.xz") && !streq(dot, ".ko.zst") && !streq(dot, ".ko.gz")))
                return 0;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        check(fd >= 0);
        n = pread(fd, head, sizeof(head), 0);
        check(n >= 0);
        CompressionType t = compression_detect(head, (size_t) n);

        if (t != COMPRESSION_NONE) {
                uint64_t size = 0;
                check_r(decompress_to_sealed_memfd(t, fd, path + ftw->base, UINT64_MAX, &out, &size), 0);
                check(size > 0);
                ko_count++;
                return 0;
        }

        for (;;) {
                uint8_t chunk[65536];
                n = read(fd, chunk, sizeof(chunk));
                check(n >= 0);
                if (n == 0)
                        break;
                buf_append(&data, chunk, (size_t) n);
        }

        out = memfd_create("test-output", MFD_CLOEXEC);
        check(out >= 0);
        for (CompressionType u = 0; u < _COMPRESSION_MAX; u++) {
                Buf packed = pack(u, &data);
                uint64_t size = 0;
                check_r(decompress_buf(u, &packed, out, UINT64_MAX, &size), 0);
                check(size == data.size);
                check(fd_content_equals(out, &data));
                buf_done(&packed);
        }
        buf_done(&data);
        ko_count++;
        return 0;
}

static void test_ko_dir(void) {
        const char *dir = getenv("MODLOADD_TEST_KO_DIR");

        if (isempty(dir)) {
                printf("MODLOADD_TEST_KO_DIR not set, skipping module files\n");
                return;
        }
        check(nftw(dir, ko_visit, 16, FTW_PHYS) == 0);
        printf("round-tripped %u module files from %s\n", ko_count, dir);
}

int main(void) {
        Buf big = make_data(BIG_SIZE), small = make_data(SMALL_SIZE);

        for (CompressionType t = 0; t < _COMPRESSION_MAX; t++)
                big_packed[t] = pack(t, &big);

        test_strings();
        test_detect();
        test_roundtrips(&big);
        test_empty_file();
        test_concatenated(&small);
        test_truncated(&small);
        test_flipped(&small);
        test_wrong_input(&small);
        test_bad_args_and_io_errors(&small);
        test_pipe(&big);
        test_ko_dir();

        for (CompressionType t = 0; t < _COMPRESSION_MAX; t++)
                buf_done(&big_packed[t]);
        buf_done(&big);
        buf_done(&small);
        printf("all decompress tests passed\n");
        return EXIT_SUCCESS;
}
