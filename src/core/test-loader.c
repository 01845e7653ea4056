/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The loader against the fake kernel (test/fake-kernel, preloaded by the
 * test setup): which system call each kind of module file gets, with which
 * flags and how many bytes, and what happens with corrupt files. */
#include <fcntl.h>
#include <lzma.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include "loader.h"
#include "timeutil.h"

#define check(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

#define IMAGE_SIZE (300U * 1024U)

static char dir[] = "/tmp/test-loader-XXXXXX";
static uint8_t image[IMAGE_SIZE];

static void write_file(const char *name, const void *data, size_t size) {
        char path[PATH_MAX];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        check(f);
        check(fwrite(data, 1, size, f) == size);
        check(fclose(f) == 0);
}

static const char *path_of(const char *name) {
        static char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        return path;
}

/* The last line the fake kernel logged, or "" if it logged nothing since the last call. */
static char *last_call(void) {
        static char line[512];
        char path[PATH_MAX], buf[512];
        FILE *f;

        line[0] = '\0';
        snprintf(path, sizeof path, "%s/calls.log", dir);
        f = fopen(path, "re");
        if (!f)
                return line;
        while (fgets(buf, sizeof buf, f))
                snprintf(line, sizeof line, "%s", buf);
        fclose(f);
        line[strcspn(line, "\n")] = '\0';
        (void) unlink(path);
        return line;
}

static void make_files(void) {
        static uint8_t out[IMAGE_SIZE * 2];
        size_t n = 0;
        uint32_t x = 12345;

        memcpy(image, "\177ELF", 4);
        for (size_t i = 4; i < IMAGE_SIZE; i++) {
                x = x * 1103515245 + 12345;
                image[i] = (i % 7 == 0) ? (uint8_t) (x >> 24) : (uint8_t) (i / 13);
        }
        write_file("plain.ko", image, IMAGE_SIZE);

        check(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, image, IMAGE_SIZE, out, &n, sizeof out) == LZMA_OK);
        write_file("xzmod.ko.xz", out, n);
        write_file("xzcut.ko.xz", out, n / 2); /* truncated */

        n = ZSTD_compress(out, sizeof out, image, IMAGE_SIZE, 3);
        check(!ZSTD_isError(n));
        write_file("zstmod.ko.zst", out, n);

        z_stream z = {};
        check(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        z.next_in = image;
        z.avail_in = IMAGE_SIZE;
        z.next_out = out;
        z.avail_out = sizeof out;
        check(deflate(&z, Z_FINISH) == Z_STREAM_END);
        write_file("gzmod.ko.gz", out, z.total_out);
        deflateEnd(&z);

        write_file("notelf.ko", "garbage!", 8);
        write_file("compression", "xz\n", 3);
}

int main(void) {
        LoadStats st = {};
        Loader *l = NULL;
        char *call;

        check(mkdtemp(dir));
        check(setenv("FAKE_KERNEL_DIR", dir, 1) == 0);
        make_files();

        /* A kernel that decompresses xz itself. */
        check(loader_new(&l, LOAD_POLICY_AUTO, path_of("compression")) == 0);
        check(loader_kernel_compression(l) == COMPRESSION_XZ);

        /* Uncompressed: the file itself. */
        check(loader_insert(l, path_of("plain.ko"), "a=1", 0, &st) == 0);
        call = last_call();
        check(strncmp(call, "finit plain 0 307200 elf ok", 27) == 0);
        check(st.kernel_calls == 1 && st.bytes_to_kernel == IMAGE_SIZE && st.bytes_decompressed == 0);

        /* Again: the kernel says EEXIST and we count it. */
        check(loader_insert(l, path_of("plain.ko"), NULL, 0, &st) == -EEXIST);
        check(strstr(last_call(), "EEXIST"));
        check(st.kernel_calls == 2 && st.kernel_eexist == 1);

        /* xz, which this kernel takes: the compressed file with MODULE_INIT_COMPRESSED_FILE. */
        check(loader_insert(l, path_of("xzmod.ko.xz"), NULL, 0, &st) == 0);
        call = last_call();
        check(strncmp(call, "finit xzmod 4 ", 14) == 0 && strstr(call, "compressed ok"));
        check(st.bytes_decompressed == 0);

        /* zstd, which it does not: decompressed once into a sealed memfd named after the file. */
        check(loader_insert(l, path_of("zstmod.ko.zst"), NULL, LOAD_FORCE_VERMAGIC, &st) == 0);
        call = last_call();
        check(streq(call, "finit zstmod 2 307200 elf ok"));
        check(st.bytes_decompressed == IMAGE_SIZE);
        check(loader_insert(l, path_of("gzmod.ko.gz"), NULL, LOAD_FORCE_MODVERSION, &st) == 0);
        check(streq(last_call(), "finit gzmod 1 307200 elf ok"));
        check(st.kernel_calls == 5 && st.bytes_decompressed == 2 * IMAGE_SIZE);
        loader_free(l);

        /* Userspace policy: even xz is decompressed here. */
        check(loader_remove("xzmod", false, 0) == 0);
        check(strncmp(last_call(), "delete xzmod ", 13) == 0);
        check(loader_new(&l, LOAD_POLICY_USERSPACE, path_of("compression")) == 0);
        check(loader_insert(l, path_of("xzmod.ko.xz"), NULL, 0, NULL) == 0);
        check(streq(last_call(), "finit xzmod 0 307200 elf ok"));
        loader_free(l);

        /* Kernel policy: zstd goes to the kernel as it is. */
        check(loader_remove("zstmod", false, 0) == 0);
        (void) last_call();
        check(loader_new(&l, LOAD_POLICY_KERNEL, path_of("compression")) == 0);
        check(loader_insert(l, path_of("zstmod.ko.zst"), NULL, 0, NULL) == 0);
        check(strncmp(last_call(), "finit zstmod 4 ", 15) == 0);
        loader_free(l);

        /* Bad input changes nothing: no kernel call for a corrupt file, ENOEXEC for a non-module. */
        check(loader_new(&l, LOAD_POLICY_AUTO, "/nonexistent") == 0);
        check(loader_kernel_compression(l) == COMPRESSION_NONE);
        memset(&st, 0, sizeof st);
        check(loader_insert(l, path_of("xzcut.ko.xz"), NULL, 0, &st) == -EBADMSG);
        check(streq(last_call(), "") && st.kernel_calls == 0);
        check(loader_insert(l, path_of("missing.ko"), NULL, 0, &st) == -ENOENT);
        check(loader_insert(l, dir, NULL, 0, &st) == -EISDIR);
        check(loader_insert(l, path_of("notelf.ko"), NULL, 0, &st) == -ENOEXEC);
        check(strstr(last_call(), "ENOEXEC"));

        /* No finit_module(): the decompressed image goes through init_module(). */
        check(setenv("FAKE_KERNEL_NO_FINIT", "1", 1) == 0);
        check(loader_remove("xzmod", false, 0) == 0);
        (void) last_call();
        check(loader_insert(l, path_of("xzmod.ko.xz"), "fakename=xzmod", 0, &st) == 0);
        check(streq(last_call(), "init xzmod 307200 ok"));
        /* ...which takes no force flags: as kmod, the copy is edited instead, and an image that is
         * no ELF module cannot be (nothing reaches the kernel). */
        memset(&st, 0, sizeof st);
        check(loader_insert(l, path_of("plain.ko"), NULL, LOAD_FORCE_VERMAGIC, &st) == -ENOEXEC);
        check(st.kernel_calls == 0);
        const char *tree = getenv("MODLOADD_TEST_MODULE_DIR");
        if (tree) {
                char ko[PATH_MAX], log[PATH_MAX], line[256] = "";
                FILE *f;

                snprintf(ko, sizeof ko, "%s/kernel/drivers/net/dummy.ko", tree);
                check(loader_insert(l, ko, NULL, LOAD_FORCE_VERMAGIC | LOAD_FORCE_MODVERSION, &st) == 0);
                check(st.kernel_calls == 1);
                snprintf(log, sizeof log, "%s/init.log", dir);
                check((f = fopen(log, "re")));
                while (fgets(line, sizeof line, f)) /* the last call's line */
                        ;
                fclose(f);
                check(streq(line, "dummy versions=STRIPPED vermagic=STRIPPED\n"));
        }
        loader_free(l);

        check(loader_remove("nosuchmodule", false, 0) == -ENOENT);
        check(streq(loader_strerror(-ENOEXEC), "Invalid module format"));
        check(load_policy_from_string("kernel") == LOAD_POLICY_KERNEL);
        check(load_policy_from_string("bogus") == _LOAD_POLICY_INVALID);

        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        check(system(cmd) == 0);
        return 0;
}
