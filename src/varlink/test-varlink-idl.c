/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "varlink-idl.h"

/* Unlike assert(), this stays active under NDEBUG. */
#define check_at(expr, line)                                                                         \
        do {                                                                                         \
                if (!(expr)) {                                                                       \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, (int) (line), #expr); \
                        abort();                                                                     \
                }                                                                                    \
        } while (0)
#define check(expr) check_at(expr, __LINE__)

static const char service_text[] = "# The service interface every varlink service provides.\n"
                                   "interface org.varlink.service\n"
                                   "\n"
                                   "# Information about the service and the interfaces it serves.\n"
                                   "method GetInfo() -> (\n"
                                   "  vendor: string,\n"
                                   "  product: string,\n"
                                   "  version: string,\n"
                                   "  url: string,\n"
                                   "  interfaces: []string\n"
                                   ")\n"
                                   "\n"
                                   "# The description of one interface.\n"
                                   "method GetInterfaceDescription(interface: string) -> (description: string)\n"
                                   "\n"
                                   "error InterfaceNotFound (interface: string)\n"
                                   "error MethodNotFound (method: string)\n"
                                   "error MethodNotImplemented (method: string)\n"
                                   "error InvalidParameter (parameter: string)\n"
                                   "error PermissionDenied ()\n"
                                   "error ExpectedMore ()\n";

/* An interface exercising what the real ones do not: floats, maps, inline
 * and nested structs, types used before they are declared, recursion. */
static const char example_text[] = "interface org.example-1.test2\n"
                                   "method Shapes(\n"
                                   "  f: float,\n"
                                   "  pt: ?Point,               # declared below\n"
                                   "  color: ?(red, green, blue),\n"
                                   "  counts: ?[string]int,\n"
                                   "  tags: ?[string]?[]string,\n"
                                   "  points: ?[]Point,\n"
                                   "  inline: ?(a: int, b: ?(c: bool)),\n"
                                   "  any: ?object,\n"
                                   "  list: ?Node\n"
                                   ") -> ()\n"
                                   "method Optional(a: ?int, b: ?string) -> (c: ?bool)\n"
                                   "type Point (x: float, y: float, label_2: ?string)\n"
                                   "type Node (value: int, next: ?Node)\n"
                                   "type Empty ()\n"
                                   "error Bad (why: ?Empty)\n";

static char *read_text(const char *path) {
        FILE *f;
        char *buf = NULL;
        size_t n = 0, allocated = 0;

        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "Cannot open %s: %m\n", path);
                abort();
        }

        for (;;) {
                size_t k;

                if (allocated - n < 4096) {
                        allocated = allocated * 2 + 4096;
                        buf = realloc(buf, allocated);
                        check(buf);
                }

                k = fread(buf + n, 1, allocated - n - 1, f);
                n += k;
                if (k == 0)
                        break;
        }

        check(!ferror(f));
        fclose(f);
        buf[n] = '\0';
        return buf;
}

static VarlinkIdlInterface *parse_good_at(const char *text, int line) {
        VarlinkIdlInterface *iface = NULL;
        unsigned l = 0, c = 0;
        int r;

        r = varlink_idl_parse(text, &iface, &l, &c);
        if (r < 0)
                fprintf(stderr, "Unexpected parse failure %d at %u:%u\n", r, l, c);
        check_at(r == 0, line);
        check_at(iface, line);
        return iface;
}
#define parse_good(text) parse_good_at(text, __LINE__)

static void parse_bad_at(const char *text, unsigned expected_line, int line) {
        VarlinkIdlInterface *iface = NULL;
        unsigned l = 0, c = 0;
        int r;

        r = varlink_idl_parse(text, &iface, &l, &c);
        if (r != -EBADMSG || l != expected_line)
                fprintf(stderr, "Parse of \"%s\" gave %d at %u:%u, expected -EBADMSG at line %u\n", text, r, l, c,
                        expected_line);
        check_at(r == -EBADMSG, line);
        check_at(!iface, line);
        check_at(l == expected_line, line);
        check_at(c >= 1, line);
}
#define parse_bad(text, expected_line) parse_bad_at(text, expected_line, __LINE__)

static json_object *json_at(const char *text, int line) {
        json_object *o;

        if (!text)
                return NULL;

        o = json_tokener_parse(text);
        check_at(o || streq(text, "null"), line);
        return o;
}

enum {
        INPUT,
        OUTPUT,
};

/* Validate `json` (NULL: no parameters) against method `method`'s input or
 * output; expect `expected` and, on -EINVAL, the bad field `field`. */
static void method_at(const VarlinkIdlInterface *iface, const char *method, int direction, const char *json,
                      int expected, const char *field, int line) {
        const VarlinkIdlMethod *m;
        json_object *o;
        const char *bad = "unset";
        int r;

        m = varlink_idl_interface_find_method(iface, method);
        check_at(m, line);

        o = json_at(json, line);
        if (direction == INPUT)
                r = varlink_idl_validate_method_input(m, o, &bad);
        else
                r = varlink_idl_validate_method_output(m, o, &bad);

        if (r != expected || (field ? !bad || !streq(bad, field) : !!bad))
                fprintf(stderr, "%s %s: got %d \"%s\", expected %d \"%s\"\n", method, json ?: "(none)", r,
                        bad ?: "(null)", expected, field ?: "(null)");
        check_at(r == expected, line);
        if (field)
                check_at(bad && streq(bad, field), line);
        else
                check_at(!bad, line);

        /* The out-parameter is optional. */
        if (direction == INPUT)
                check_at(varlink_idl_validate_method_input(m, o, NULL) == expected, line);
        else
                check_at(varlink_idl_validate_method_output(m, o, NULL) == expected, line);

        json_object_put(o);
}
#define input_ok(iface, method, json)          method_at(iface, method, INPUT, json, 0, NULL, __LINE__)
#define input_bad(iface, method, json, field)  method_at(iface, method, INPUT, json, -EINVAL, field, __LINE__)
#define output_ok(iface, method, json)         method_at(iface, method, OUTPUT, json, 0, NULL, __LINE__)
#define output_bad(iface, method, json, field) method_at(iface, method, OUTPUT, json, -EINVAL, field, __LINE__)

static void error_at(const VarlinkIdlInterface *iface, const char *error, const char *json, int expected,
                     const char *field, int line) {
        json_object *o;
        const char *bad = "unset";
        int r;

        o = json_at(json, line);
        r = varlink_idl_validate_error(iface, error, o, &bad);
        check_at(r == expected, line);
        if (field)
                check_at(bad && streq(bad, field), line);
        else
                check_at(!bad, line);
        json_object_put(o);
}
#define error_check(iface, error, json, expected, field) error_at(iface, error, json, expected, field, __LINE__)

static void test_service(void) {
        _cleanup_(varlink_idl_interface_freep) VarlinkIdlInterface *iface = NULL;
        static const char *const errors[] = {
                "InterfaceNotFound", "MethodNotFound",   "MethodNotImplemented",
                "InvalidParameter",  "PermissionDenied", "ExpectedMore",
        };

        iface = parse_good(service_text);
        check(streq(varlink_idl_interface_name(iface), "org.varlink.service"));
        check(varlink_idl_interface_n_methods(iface) == 2);
        check(streq(varlink_idl_method_name(varlink_idl_interface_method(iface, 0)), "GetInfo"));
        check(streq(varlink_idl_method_name(varlink_idl_interface_method(iface, 1)), "GetInterfaceDescription"));
        check(!varlink_idl_interface_method(iface, 2));
        check(!varlink_idl_interface_find_method(iface, "getInfo"));
        check(!varlink_idl_interface_find_method(iface, "InterfaceNotFound"));

        for (size_t i = 0; i < ELEMENTSOF(errors); i++)
                check(varlink_idl_interface_has_error(iface, errors[i]));
        check(!varlink_idl_interface_has_error(iface, "GetInfo"));
        check(!varlink_idl_interface_has_error(iface, "NoSuchError"));

        input_ok(iface, "GetInfo", NULL);
        input_ok(iface, "GetInfo", "{}");
        input_bad(iface, "GetInfo", "{\"verbose\": true}", "verbose");
        output_ok(iface, "GetInfo",
                  "{\"vendor\": \"v\", \"product\": \"p\", \"version\": \"1\", \"url\": \"https://x\","
                  " \"interfaces\": [\"org.varlink.service\", \"io.modloadd.Manager\"]}");
        output_bad(iface, "GetInfo",
                   "{\"vendor\": \"v\", \"product\": \"p\", \"version\": 1, \"url\": \"https://x\","
                   " \"interfaces\": []}",
                   "version");
        output_bad(iface, "GetInfo", "{\"vendor\": \"v\", \"product\": \"p\", \"version\": \"1\", \"url\": \"u\"}",
                   "interfaces");
        input_ok(iface, "GetInterfaceDescription", "{\"interface\": \"io.modloadd.Manager\"}");
        input_bad(iface, "GetInterfaceDescription", NULL, "interface");
        input_bad(iface, "GetInterfaceDescription", "{\"interface\": [\"x\"]}", "interface");

        error_check(iface, "InvalidParameter", "{\"parameter\": \"names\"}", 0, NULL);
        error_check(iface, "InvalidParameter", NULL, -EINVAL, "parameter");
        error_check(iface, "PermissionDenied", NULL, 0, NULL);
        error_check(iface, "ExpectedMore", "{}", 0, NULL);
        error_check(iface, "ExpectedMore", "{\"more\": true}", -EINVAL, "more");
        error_check(iface, "Unknown", NULL, -ENOENT, NULL);
}

static void test_manager(const char *path) {
        _cleanup_(varlink_idl_interface_freep) VarlinkIdlInterface *iface = NULL;
        _cleanup_free_ char *text = NULL;
        static const char *const methods[] = {
                "Load", "Unload", "Describe", "List", "GetStatistics", "Monitor", "Reload",
        };
        static const char stats[] =
                "{\"requests\": 10, \"sharedRequests\": 2, \"modulesInserted\": 3, \"kernelCalls\": 4,"
                " \"kernelEEXIST\": 0, \"bytesDecompressed\": 123456, \"bytesToKernel\": 123456,"
                " \"bytesAvoided\": 0, \"resolveCacheHits\": 7, \"failures\": 1, \"notFound\": 2, \"uptimeSec\": 60,"
                " \"connections\": 1, \"connectionsTotal\": 5, \"connectionsRefused\": 0, \"calls\": 9,"
                " \"protocolErrors\": 0";
        char buf[sizeof(stats) + 64];

        text = read_text(path);
        iface = parse_good(text);
        check(streq(varlink_idl_interface_name(iface), "io.modloadd.Manager"));

        check(varlink_idl_interface_n_methods(iface) == ELEMENTSOF(methods));
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                check(varlink_idl_interface_find_method(iface, methods[i]) == varlink_idl_interface_method(iface, i));
                check(streq(varlink_idl_method_name(varlink_idl_interface_method(iface, i)), methods[i]));
        }
        check(!varlink_idl_interface_find_method(iface, "Outcome")); /* a type, not a method */
        check(!varlink_idl_interface_find_method(iface, "load"));
        check(!varlink_idl_interface_find_method(iface, "io.modloadd.Manager.Load"));
        check(varlink_idl_interface_has_error(iface, "InvalidName"));
        check(varlink_idl_interface_has_error(iface, "TooManyNames"));
        check(varlink_idl_interface_has_error(iface, "TooManySubscribers"));
        check(!varlink_idl_interface_has_error(iface, "Load"));

        /* Required and optional fields */
        input_ok(iface, "Load", "{\"names\": [\"snd-dummy\"]}");
        input_ok(iface, "Load", "{\"names\": []}");
        input_ok(iface, "Load", "{\"names\": [\"a\", \"b\"], \"parameters\": \"x=1\", \"dryRun\": true}");
        input_ok(iface, "Load", "{\"names\": [\"a\"], \"parameters\": null, \"dryRun\": null}");
        input_bad(iface, "Load", NULL, "names");
        input_bad(iface, "Load", "{}", "names");
        input_bad(iface, "Load", "{\"names\": null}", "names");
        input_bad(iface, "Load", "{\"dryRun\": true}", "names");

        /* Unknown fields, also when something else is wrong too */
        input_bad(iface, "Load", "{\"names\": [\"a\"], \"bogus\": 1}", "bogus");
        input_bad(iface, "Load", "{\"bogus\": null}", "bogus");
        input_bad(iface, "Load", "{\"Names\": [\"a\"]}", "Names");
        input_bad(iface, "List", "{\"all\": true}", "all");

        /* Wrong types */
        input_bad(iface, "Load", "{\"names\": \"a\"}", "names");
        input_bad(iface, "Load", "{\"names\": [\"a\", 1]}", "names");
        input_bad(iface, "Load", "{\"names\": [\"a\", null]}", "names");
        input_bad(iface, "Load", "{\"names\": [\"a\"], \"dryRun\": \"yes\"}", "dryRun");
        input_bad(iface, "Load", "{\"names\": [\"a\"], \"dryRun\": 1}", "dryRun");
        input_bad(iface, "Load", "{\"names\": [\"a\"], \"parameters\": {}}", "parameters");
        input_ok(iface, "Unload", "{\"names\": [\"a\"], \"wait\": 5000}");
        input_ok(iface, "Unload", "{\"names\": [\"a\"], \"wait\": -1}");
        input_ok(iface, "Unload", "{\"names\": [\"a\"], \"wait\": 18446744073709551615}");
        input_bad(iface, "Unload", "{\"names\": [\"a\"], \"wait\": \"5000\"}", "wait");
        input_bad(iface, "Unload", "{\"names\": [\"a\"], \"wait\": 5.0}", "wait");
        input_bad(iface, "Unload", "{\"names\": [\"a\"], \"wait\": 5.5}", "wait");
        input_bad(iface, "Unload", "{\"names\": [\"a\"], \"wait\": true}", "wait");
        input_ok(iface, "Describe", "{\"name\": \"snd-dummy\"}");
        input_bad(iface, "Describe", "{\"name\": true}", "name");
        input_bad(iface, "Describe", "{\"name\": 1}", "name");

        /* Parameters that are not an object */
        input_bad(iface, "Load", "[]", NULL);
        input_bad(iface, "Load", "\"names\"", NULL);
        input_bad(iface, "List", "7", NULL);

        /* Methods without input */
        input_ok(iface, "List", NULL);
        input_ok(iface, "List", "{}");
        input_ok(iface, "Monitor", NULL);
        input_ok(iface, "Reload", NULL);
        output_ok(iface, "Reload", NULL);
        output_bad(iface, "Reload", "{\"x\": 1}", "x");

        /* Outputs: named structs, enums, nested unknown keys */
        output_ok(iface, "Load",
                  "{\"outcomes\": [{\"name\": \"a\", \"modules\": [\"a\", \"b\"], \"result\": \"inserted\","
                  " \"shared\": false}, {\"name\": \"c\", \"modules\": [], \"result\": \"notFound\","
                  " \"errno\": 2, \"errnoName\": \"ENOENT\", \"message\": \"No such module\", \"shared\": true}]}");
        output_ok(iface, "Load", "{\"outcomes\": []}");
        output_bad(iface, "Load",
                   "{\"outcomes\": [{\"name\": \"a\", \"modules\": [], \"result\": \"exploded\", \"shared\": false}]}",
                   "outcomes");
        output_bad(iface, "Load",
                   "{\"outcomes\": [{\"name\": \"a\", \"modules\": [], \"result\": \"NotFound\", \"shared\": false}]}",
                   "outcomes");
        output_bad(iface, "Load",
                   "{\"outcomes\": [{\"name\": \"a\", \"modules\": [], \"result\": 1, \"shared\": false}]}",
                   "outcomes");
        output_bad(iface, "Load",
                   "{\"outcomes\": [{\"name\": \"a\", \"modules\": [], \"result\": \"live\", \"shared\": false,"
                   " \"extra\": 1}]}",
                   "outcomes");
        output_bad(iface, "Load", "{\"outcomes\": [{\"name\": \"a\", \"modules\": [], \"result\": \"live\"}]}",
                   "outcomes");
        output_bad(iface, "Load", "{\"outcomes\": [null]}", "outcomes");
        output_bad(iface, "Load", "{\"outcomes\": {}}", "outcomes");
        output_ok(iface, "Describe",
                  "{\"modules\": [\"a\"], \"steps\": [{\"kind\": \"insmod\", \"module\": \"a\","
                  " \"path\": \"/lib/modules/a.ko\"}, {\"kind\": \"builtin\", \"module\": \"b\"}]}");
        output_bad(iface, "Describe", "{\"modules\": [\"a\"], \"steps\": [{\"kind\": \"rmmod\", \"module\": \"a\"}]}",
                   "steps");
        output_ok(iface, "List",
                  "{\"modules\": [{\"name\": \"a\", \"size\": 4096, \"refcount\": 0, \"holders\": [],"
                  " \"state\": \"live\"}]}");
        output_bad(iface, "List",
                   "{\"modules\": [{\"name\": \"a\", \"size\": 4096, \"refcount\": 0, \"holders\": [],"
                   " \"state\": \"unloading\"}]}",
                   "modules");
        output_bad(iface, "List",
                   "{\"modules\": [{\"name\": \"a\", \"size\": 4096, \"refcount\": 0, \"holders\": [1],"
                   " \"state\": \"live\"}]}",
                   "modules");
        output_ok(iface, "Monitor", NULL);
        output_ok(iface, "Monitor", "{\"ready\": true}");
        output_ok(iface, "Monitor",
                  "{\"event\": {\"kind\": \"call\", \"method\": \"io.modloadd.Manager.Load\","
                  " \"uid\": 0, \"pid\": 1}}");
        output_bad(iface, "Monitor", "{\"event\": {\"kind\": 1}}", "event");
        output_bad(iface, "Monitor", "{\"event\": {\"kind\": \"call\", \"gid\": 0}}", "event");
        output_bad(iface, "Monitor", "{\"ready\": true, \"event\": {\"kind\": \"call\", \"uid\": \"0\"}}", "event");
        output_bad(iface, "Monitor", "{\"event\": {}}", "event");
        output_bad(iface, "Monitor", "{\"event\": \"call\"}", "event");

        /* A full GetStatistics reply, then with one field broken */
        snprintf(buf, sizeof(buf), "%s}", stats);
        output_ok(iface, "GetStatistics", buf);
        snprintf(buf, sizeof(buf), "%s, \"extra\": 0}", stats);
        output_bad(iface, "GetStatistics", buf, "extra");
        output_bad(iface, "GetStatistics", "{\"requests\": 10}", "sharedRequests");
        output_bad(iface, "GetStatistics", NULL, "requests");
        {
                json_object *o;
                const char *bad = NULL;

                snprintf(buf, sizeof(buf), "%s}", stats);
                o = json_tokener_parse(buf);
                check(o);
                json_object_object_add(o, "uptimeSec", json_object_new_double(60.5));
                check(varlink_idl_validate_method_output(varlink_idl_interface_find_method(iface, "GetStatistics"), o,
                                                         &bad) == -EINVAL);
                check(bad && streq(bad, "uptimeSec"));
                json_object_object_add(o, "uptimeSec", json_object_new_int64(61));
                check(varlink_idl_validate_method_output(varlink_idl_interface_find_method(iface, "GetStatistics"), o,
                                                         &bad) == 0);
                check(!bad);
                json_object_object_del(o, "calls");
                check(varlink_idl_validate_method_output(varlink_idl_interface_find_method(iface, "GetStatistics"), o,
                                                         &bad) == -EINVAL);
                check(bad && streq(bad, "calls"));
                json_object_put(o);
        }

        /* Errors */
        error_check(iface, "InvalidName", "{\"name\": \"x y\"}", 0, NULL);
        error_check(iface, "InvalidName", NULL, -EINVAL, "name");
        error_check(iface, "InvalidName", "{}", -EINVAL, "name");
        error_check(iface, "InvalidName", "{\"name\": null}", -EINVAL, "name");
        error_check(iface, "InvalidName", "{\"name\": \"x\", \"why\": \"\"}", -EINVAL, "why");
        error_check(iface, "TooManyNames", "{\"max\": 128}", 0, NULL);
        error_check(iface, "TooManyNames", "{\"max\": \"128\"}", -EINVAL, "max");
        error_check(iface, "TooManySubscribers", "{\"max\": 16}", 0, NULL);
        error_check(iface, "Load", NULL, -ENOENT, NULL);
        error_check(iface, "Outcome", NULL, -ENOENT, NULL);
        error_check(iface, "InvalidParameter", NULL, -ENOENT, NULL);
}

/* A value nesting `n` Node structs. */
static json_object *make_list(unsigned n) {
        json_object *o = NULL;

        for (unsigned i = 0; i < n; i++) {
                json_object *node = json_object_new_object();

                check(node);
                json_object_object_add(node, "value", json_object_new_int(i));
                if (o)
                        json_object_object_add(node, "next", o);
                o = node;
        }

        return o;
}

static void test_example(void) {
        _cleanup_(varlink_idl_interface_freep) VarlinkIdlInterface *iface = NULL;
        const VarlinkIdlMethod *m;
        json_object *o, *wrap;
        const char *bad;

        iface = parse_good(example_text);
        check(streq(varlink_idl_interface_name(iface), "org.example-1.test2"));

        /* float takes ints and doubles, nothing else */
        input_ok(iface, "Shapes", "{\"f\": 1}");
        input_ok(iface, "Shapes", "{\"f\": 1.5}");
        input_ok(iface, "Shapes", "{\"f\": -1e300}");
        input_bad(iface, "Shapes", "{\"f\": \"1.5\"}", "f");
        input_bad(iface, "Shapes", "{\"f\": false}", "f");
        input_bad(iface, "Shapes", "{\"f\": null}", "f");

        /* A named struct, declared after use */
        input_ok(iface, "Shapes", "{\"f\": 0, \"pt\": {\"x\": 1, \"y\": 2.5}}");
        input_ok(iface, "Shapes", "{\"f\": 0, \"pt\": {\"x\": 1, \"y\": 2.5, \"label_2\": \"p\"}}");
        input_ok(iface, "Shapes", "{\"f\": 0, \"pt\": null}");
        input_bad(iface, "Shapes", "{\"f\": 0, \"pt\": {\"x\": 1}}", "pt");
        input_bad(iface, "Shapes", "{\"f\": 0, \"pt\": {\"x\": 1, \"y\": 2, \"z\": 3}}", "pt");
        input_bad(iface, "Shapes", "{\"f\": 0, \"pt\": [1, 2]}", "pt");

        /* An inline enum */
        input_ok(iface, "Shapes", "{\"f\": 0, \"color\": \"green\"}");
        input_bad(iface, "Shapes", "{\"f\": 0, \"color\": \"purple\"}", "color");
        input_bad(iface, "Shapes", "{\"f\": 0, \"color\": \"\"}", "color");
        input_bad(iface, "Shapes", "{\"f\": 0, \"color\": 0}", "color");

        /* Maps */
        input_ok(iface, "Shapes", "{\"f\": 0, \"counts\": {}}");
        input_ok(iface, "Shapes", "{\"f\": 0, \"counts\": {\"a\": 1, \"b\": 2}}");
        input_bad(iface, "Shapes", "{\"f\": 0, \"counts\": {\"a\": 1, \"b\": \"2\"}}", "counts");
        input_bad(iface, "Shapes", "{\"f\": 0, \"counts\": {\"a\": null}}", "counts");
        input_bad(iface, "Shapes", "{\"f\": 0, \"counts\": [1]}", "counts");
        input_ok(iface, "Shapes", "{\"f\": 0, \"tags\": {\"a\": null, \"b\": [], \"c\": [\"x\"]}}");
        input_bad(iface, "Shapes", "{\"f\": 0, \"tags\": {\"c\": [\"x\", 1]}}", "tags");

        /* Arrays of structs */
        input_ok(iface, "Shapes", "{\"f\": 0, \"points\": [{\"x\": 0, \"y\": 0}, {\"x\": 1, \"y\": 1}]}");
        input_bad(iface, "Shapes", "{\"f\": 0, \"points\": [{\"x\": 0, \"y\": 0}, {\"x\": 1}]}", "points");
        input_bad(iface, "Shapes", "{\"f\": 0, \"points\": [{\"x\": 0, \"y\": 0}, 1]}", "points");

        /* Inline nested structs: the top-level field is blamed */
        input_ok(iface, "Shapes", "{\"f\": 0, \"inline\": {\"a\": 1}}");
        input_ok(iface, "Shapes", "{\"f\": 0, \"inline\": {\"a\": 1, \"b\": {\"c\": true}}}");
        input_ok(iface, "Shapes", "{\"f\": 0, \"inline\": {\"a\": 1, \"b\": null}}");
        input_bad(iface, "Shapes", "{\"f\": 0, \"inline\": {\"a\": 1, \"b\": {}}}", "inline");
        input_bad(iface, "Shapes", "{\"f\": 0, \"inline\": {\"b\": {\"c\": true}}}", "inline");
        input_bad(iface, "Shapes", "{\"f\": 0, \"inline\": {\"a\": 1, \"b\": {\"c\": 1}}}", "inline");
        input_bad(iface, "Shapes", "{\"f\": 0, \"inline\": {\"a\": 1, \"b\": {\"d\": true}}}", "inline");

        /* object takes any object */
        input_ok(iface, "Shapes", "{\"f\": 0, \"any\": {}}");
        input_ok(iface, "Shapes", "{\"f\": 0, \"any\": {\"whatever\": [1, {\"x\": null}]}}");
        input_bad(iface, "Shapes", "{\"f\": 0, \"any\": []}", "any");
        input_bad(iface, "Shapes", "{\"f\": 0, \"any\": \"{}\"}", "any");

        /* Only optional fields: no parameters at all is fine */
        input_ok(iface, "Optional", NULL);
        input_ok(iface, "Optional", "{}");
        input_ok(iface, "Optional", "{\"a\": null, \"b\": null}");
        input_bad(iface, "Optional", "{\"c\": true}", "c");
        output_ok(iface, "Optional", NULL);
        output_ok(iface, "Optional", "{\"c\": false}");

        error_check(iface, "Bad", NULL, 0, NULL);
        error_check(iface, "Bad", "{\"why\": {}}", 0, NULL);
        error_check(iface, "Bad", "{\"why\": {\"x\": 1}}", -EINVAL, "why");

        /* Recursive types: fine at moderate depth, refused beyond the bound */
        m = varlink_idl_interface_find_method(iface, "Shapes");
        check(m);

        wrap = json_object_new_object();
        check(wrap);
        json_object_object_add(wrap, "f", json_object_new_int(0));
        json_object_object_add(wrap, "list", make_list(VARLINK_IDL_DEPTH_MAX / 2));
        bad = "unset";
        check(varlink_idl_validate_method_input(m, wrap, &bad) == 0);
        check(!bad);

        json_object_object_add(wrap, "list", make_list(VARLINK_IDL_DEPTH_MAX * 4));
        check(varlink_idl_validate_method_input(m, wrap, &bad) == -EINVAL);
        check(bad && streq(bad, "list"));

        /* A broken node deep down is blamed on the top-level field */
        o = make_list(10);
        json_object_object_add(wrap, "list", o);
        for (json_object *next; json_object_object_get_ex(o, "next", &next);)
                o = next;
        json_object_object_add(o, "value", json_object_new_string("zero"));
        check(varlink_idl_validate_method_input(m, wrap, &bad) == -EINVAL);
        check(bad && streq(bad, "list"));
        json_object_put(wrap);

        /* Deeply nested arrays in an "object" field are not looked into,
         * but in a typed field they are refused, not recursed into forever. */
        {
                _cleanup_(varlink_idl_interface_freep) VarlinkIdlInterface *deep = NULL;
                _cleanup_free_ char *text = NULL;
                const size_t levels = VARLINK_IDL_DEPTH_MAX - 8;
                json_object *arr = json_object_new_int(1);
                size_t k = 0;

                text = malloc(64 + 2 * levels + 64);
                check(text);
                k += sprintf(text + k, "interface a.b\nmethod M(x: ");
                for (size_t i = 0; i < levels; i++)
                        k += sprintf(text + k, "[]");
                sprintf(text + k, "int) -> ()\n");
                deep = parse_good(text);

                for (size_t i = 0; i < levels; i++) {
                        json_object *a = json_object_new_array();

                        check(a);
                        json_object_array_add(a, arr);
                        arr = a;
                }
                wrap = json_object_new_object();
                check(wrap);
                json_object_object_add(wrap, "x", arr);
                bad = "unset";
                check(varlink_idl_validate_method_input(varlink_idl_interface_find_method(deep, "M"), wrap, &bad) == 0);
                check(!bad);
                json_object_put(wrap);
        }
}

static void test_good_snippets(void) {
        static const char *const good[] = {
                /* Everything on one line, no optional whitespace */
                "interface a.b method A(x:int)->(y:?[]?string)",
                /* Comments and blank lines everywhere */
                "# doc\n\ninterface a.b # trailing\n# doc\nmethod A( # x\n x: int # y\n ) # z\n -> ( ) # end",
                /* Free whitespace and newlines between tokens */
                "interface\n  a.b\nmethod\nA\n(\n)\n->\n(\n)\n",
                "interface a.b\r\nmethod A() -> ()\r\n",
                "interface a.b\ntype E (one)\n",
                "interface a.b\ntype E (one, two_2, Three)\n",
                "interface a.b\ntype S ()\n",
                "interface a.b\nerror E ()\n",
                "interface a.b\nerror E (a: ?E2)\ntype E2 (b: [string][]?(c, d))\n",
                "interface a.b\ntype T (self: ?T, many: []T, map: [string]T)\n",
                "interface a.b\nmethod A(s: [ string ] int, t: [ ] int) -> ()\n",
                /* Keywords are fine as field names */
                "interface a.b\nmethod A(interface: string, type: int, method: bool, error: float) -> ()\n",
                /* Interface names: digits, dashes, many segments */
                "interface org.example-1.foo2.x--y.0z\nerror E ()\n",
                "interface a.0\nerror E ()\n",
                /* Uppercase letters, as in io.modloadd.Manager */
                "interface Com.Example.Foo-Bar\nerror E ()\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_(varlink_idl_interface_freep) VarlinkIdlInterface *iface = NULL;

                iface = parse_good(good[i]);
        }

        /* Argument checks, and ret left alone on failure */
        {
                VarlinkIdlInterface *iface = (VarlinkIdlInterface *) 0x1;

                check(varlink_idl_parse(NULL, &iface, NULL, NULL) == -EINVAL);
                check(varlink_idl_parse("interface a.b\n", &iface, NULL, NULL) == -EBADMSG);
                check(iface == (VarlinkIdlInterface *) 0x1);
        }

        check(!varlink_idl_interface_free(NULL));
        check(!varlink_idl_interface_name(NULL));
        check(!varlink_idl_interface_find_method(NULL, "A"));
        check(!varlink_idl_interface_has_error(NULL, "A"));
        check(varlink_idl_validate_method_input(NULL, NULL, NULL) == -EINVAL);
}

static void test_bad_snippets(void) {
        static const struct {
                const char *text;
                unsigned line;
        } bad[] = {
                /* No interface line */
                { "", 1 },
                { "# only a comment\n", 2 },
                { "method A() -> ()\n", 1 },
                { "\n\ntype T ()\ninterface a.b\n", 3 },
                { "interfacea.b\nmethod A() -> ()\n", 1 },
                /* Bad interface names */
                { "interface\n", 2 },
                { "interface foo\nmethod A() -> ()\n", 1 },
                { "interface foo.b@r\nmethod A() -> ()\n", 1 },
                { "interface Foo\nmethod A() -> ()\n", 1 },
                { "interface 0a.b\nmethod A() -> ()\n", 1 },
                { "interface a.b-\nmethod A() -> ()\n", 1 },
                { "interface a.-b\nmethod A() -> ()\n", 1 },
                { "interface a..b\nmethod A() -> ()\n", 1 },
                { "interface a.b.\nmethod A() -> ()\n", 1 },
                { "interface .a.b\nmethod A() -> ()\n", 1 },
                { "interface a_b.c\nmethod A() -> ()\n", 1 },
                /* No members */
                { "interface a.b\n", 2 },
                { "interface a.b\n# nothing\n", 3 },
                /* Bad member names and keywords */
                { "interface a.b\nmethod a() -> ()\n", 2 },
                { "interface a.b\nmethod A_b() -> ()\n", 2 },
                { "interface a.b\n\nmethod 1A() -> ()\n", 3 },
                { "interface a.b\nstruct S ()\n", 2 },
                { "interface a.b\nMethod A() -> ()\n", 2 },
                { "interface a.b\nmethodA() -> ()\n", 2 },
                { "interface a.b\nmethod\n", 3 },
                /* Duplicates */
                { "interface a.b\nmethod A() -> ()\nmethod A() -> ()\n", 3 },
                { "interface a.b\nmethod A() -> ()\n\nerror A ()\n", 4 },
                { "interface a.b\ntype A ()\nmethod A() -> ()\n", 3 },
                { "interface a.b\nmethod A(x: int,\n x: string) -> ()\n", 3 },
                { "interface a.b\nmethod A() -> (x: int,\n\n x: int)\n", 4 },
                { "interface a.b\ntype E (a, b,\n a)\n", 3 },
                { "interface a.b\ntype S (a: (x: int, x: int))\n", 2 },
                /* Unknown types, and members that are not types */
                { "interface a.b\nmethod A(x: Foo) -> ()\n", 2 },
                { "interface a.b\nmethod A() -> ()\nmethod B(x: A) -> ()\n", 3 },
                { "interface a.b\nerror E ()\ntype T (\n e: ?E)\n", 4 },
                { "interface a.b\nmethod A(x: integer) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: Bool) -> ()\n", 2 },
                /* Bad type syntax */
                { "interface a.b\nmethod A(x: ??int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: ? ?int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: []??int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: [int]string) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: [string) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: []) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: ?) -> ()\n", 2 },
                { "interface a.b\nmethod A(x:) -> ()\n", 2 },
                { "interface a.b\nmethod A(x int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: int y: int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: int,) -> ()\n", 2 },
                { "interface a.b\nmethod A(, x: int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x: (,)) -> ()\n", 2 },
                /* Bad field and enum value names */
                { "interface a.b\nmethod A(_x: int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x_: int) -> ()\n", 2 },
                { "interface a.b\nmethod A(x__y: int) -> ()\n", 2 },
                { "interface a.b\nmethod A(1x: int) -> ()\n", 2 },
                { "interface a.b\ntype E (a-b)\n", 2 },
                /* Structs and enums where they do not belong */
                { "interface a.b\nmethod A(x, y) -> ()\n", 2 },
                { "interface a.b\nmethod A() -> (x)\n", 2 },
                { "interface a.b\nerror E (x, y)\n", 2 },
                { "interface a.b\ntype T (a, b: int)\n", 2 },
                { "interface a.b\ntype T (a: int, b)\n", 2 },
                { "interface a.b\ntype T int\n", 2 },
                { "interface a.b\ntype T\n", 3 },
                /* Method syntax */
                { "interface a.b\nmethod A() ()\n", 2 },
                { "interface a.b\nmethod A() - > ()\n", 2 },
                { "interface a.b\nmethod A() ->\n", 3 },
                { "interface a.b\nmethod A -> ()\n", 2 },
                { "interface a.b\nmethod A(\n", 3 },
                { "interface a.b\nmethod A(x: int\n", 3 },
                /* Trailing garbage */
                { "interface a.b\nmethod A() -> ()\n}\n", 3 },
                { "interface a.b\nmethod A() -> () foo\n", 2 },
                { "interface a.b\nmethod A() -> ()\n\n\n)", 5 },
                { "interface a.b\nerror E ();\n", 2 },
                { "interface a.b c.d\nerror E ()\n", 1 },
                { "interface a.b\nerror E () \xc3\xa4\n", 2 },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                parse_bad(bad[i].text, bad[i].line);
}

static void test_deep_idl(void) {
        const size_t n = VARLINK_IDL_DEPTH_MAX * 4;
        _cleanup_free_ char *text = NULL;
        size_t k;

        text = malloc(64 + 10 * n);
        check(text);

        /* Arrays of arrays of ... */
        k = sprintf(text, "interface a.b\nmethod A(x: ");
        for (size_t i = 0; i < n; i++)
                k += sprintf(text + k, "[]");
        sprintf(text + k, "int) -> ()\n");
        parse_bad(text, 2);

        /* Structs in structs in ... */
        k = sprintf(text, "interface a.b\nmethod A(");
        for (size_t i = 0; i < n; i++)
                k += sprintf(text + k, "x: (");
        k += sprintf(text + k, "x: int");
        for (size_t i = 0; i <= n; i++)
                k += sprintf(text + k, ")");
        sprintf(text + k, " -> ()\n");
        parse_bad(text, 2);

        /* Maps of optional maps of ... */
        k = sprintf(text, "interface a.b\ntype T (x: ");
        for (size_t i = 0; i < n; i++)
                k += sprintf(text + k, "?[string]");
        sprintf(text + k, "int)\n");
        parse_bad(text, 2);
}

int main(int argc, char *argv[]) {
        const char *path;

        path = argc >= 2 ? argv[1] : getenv("MODLOADD_IDL_FILE");
        if (!path) {
                fprintf(stderr, "Usage: %s PATH-TO-io.modloadd.Manager.varlink (or set MODLOADD_IDL_FILE)\n", argv[0]);
                return EXIT_FAILURE;
        }

        test_service();
        test_manager(path);
        test_example();
        test_good_snippets();
        test_bad_snippets();
        test_deep_idl();

        return EXIT_SUCCESS;
}
