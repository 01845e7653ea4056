/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The server and the client of our varlink layer against each other: the
 * server runs in a child process on its own sd-event loop. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "json-util.h"
#include "timeutil.h"
#include "varlink-client.h"
#include "varlink.h"

#define check(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

static const char test_interface[] = "# A test interface.\n"
                                     "interface org.example.test\n"
                                     "method Echo(text: string, n: ?int) -> (text: string)\n"
                                     "method Count(upto: int) -> (i: int)\n"
                                     "method Later() -> ()\n"
                                     "method Fail() -> ()\n"
                                     "method Missing() -> ()\n"
                                     "method Root() -> ()\n";

static VarlinkCall *later_call;

static int method_echo(VarlinkCall *call, json_object *params, void *userdata) {
        json_object *p = json_object_new_object();
        json_add(p, "text", json_object_get(json_object_object_get(params, "text")));
        return varlink_call_reply(call, p);
}

static int method_count(VarlinkCall *call, json_object *params, void *userdata) {
        int64_t upto = json_object_get_int64(json_object_object_get(params, "upto"));

        for (int64_t i = 0; i < upto; i++) {
                json_object *p = json_object_new_object();
                json_add_int(p, "i", i);
                if (varlink_call_wants_more(call) && i + 1 < upto)
                        check(varlink_call_notify(call, p) == 0);
                else
                        return varlink_call_reply(call, p);
        }
        return varlink_call_reply(call, NULL);
}

static int on_later(sd_event_source *s, uint64_t usec, void *userdata) {
        check(varlink_call_reply(later_call, NULL) == 0);
        later_call = varlink_call_unref(later_call);
        sd_event_source_disable_unref(s);
        return 0;
}

static int method_later(VarlinkCall *call, json_object *params, void *userdata) {
        /* Answer from a timer, while the next call on the connection waits. */
        later_call = varlink_call_ref(call);
        return sd_event_add_time_relative(userdata, NULL, CLOCK_MONOTONIC, 50 * USEC_PER_MSEC, 0, on_later, NULL);
}

static int method_fail(VarlinkCall *call, json_object *params, void *userdata) {
        return varlink_call_error(call, "org.example.test.Failed", NULL);
}

static int method_root(VarlinkCall *call, json_object *params, void *userdata) {
        return varlink_call_reply(call, NULL);
}

static void on_connections(VarlinkServer *s, unsigned n, void *userdata) {
        if (n == 0)
                sd_event_exit(userdata, 0);
}

static _noreturn_ void run_server(int fd) {
        static const VarlinkMethod methods[] = {
                { "Echo", method_echo, 0 },   { "Count", method_count, 0 },
                { "Later", method_later, 0 }, { "Fail", method_fail, 0 },
                { "Missing", NULL, 0 },       { "Root", method_root, VARLINK_METHOD_ROOT_ONLY },
        };
        VarlinkServer *s = NULL;
        sd_event *e = NULL;

        check(sd_event_new(&e) >= 0);
        check(varlink_server_new(&s, e, &(VarlinkServerInfo){ "v", "p", "1", "u" }) == 0);
        check(varlink_server_add_interface(s, test_interface, methods, ELEMENTSOF(methods), e) == 0);
        /* The table must match the description. */
        check(varlink_server_add_interface(s, test_interface, methods, 2, e) < 0);
        varlink_server_set_connections_callback(s, on_connections, e);
        check(varlink_server_add_connection(s, fd) == 0);
        check(sd_event_loop(e) == 0);
        varlink_server_free(s);
        sd_event_unref(e);
        _exit(EXIT_SUCCESS);
}

static json_object *call_ok(VarlinkClient *c, const char *method, const char *params) {
        json_object *in = params ? json_tokener_parse(params) : NULL, *out = NULL;
        char *error = NULL;

        check(varlink_client_call(c, method, in, 5 * USEC_PER_SEC, &out, &error) == 0);
        if (error)
                fprintf(stderr, "%s: unexpected error %s\n", method, error);
        check(!error);
        json_object_put(in);
        return out;
}

static void call_error(VarlinkClient *c, const char *method, const char *params, const char *want_error,
                       const char *want_params) {
        json_object *in = params ? json_tokener_parse(params) : NULL, *out = NULL;
        char *error = NULL;

        check(varlink_client_call(c, method, in, 5 * USEC_PER_SEC, &out, &error) == 0);
        check(error && streq(error, want_error));
        if (want_params)
                check(streq(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN), want_params));
        free(error);
        json_object_put(out);
        json_object_put(in);
}

int main(void) {
        VarlinkClient *c = NULL;
        json_object *out;
        bool continues;
        char *error;
        int fds[2], status;
        pid_t pid;

        check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        pid = fork();
        check(pid >= 0);
        if (pid == 0) {
                close(fds[0]);
                run_server(fds[1]);
        }
        close(fds[1]);
        check(varlink_client_new_from_fd(&c, fds[0]) == 0);

        out = call_ok(c, "org.varlink.service.GetInfo", NULL);
        check(streq(json_object_get_string(json_object_object_get(out, "vendor")), "v"));
        check(json_object_array_length(json_object_object_get(out, "interfaces")) == 2);
        json_object_put(out);

        out = call_ok(c, "org.varlink.service.GetInterfaceDescription", "{\"interface\":\"org.example.test\"}");
        check(streq(json_object_get_string(json_object_object_get(out, "description")), test_interface));
        json_object_put(out);

        out = call_ok(c, "org.example.test.Echo", "{\"text\":\"h\\u00e9llo\"}");
        check(streq(json_object_get_string(json_object_object_get(out, "text")), "h\xc3\xa9llo"));
        json_object_put(out);

        call_error(c, "org.example.test.Echo", "{}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"text\"}");
        call_error(c, "org.example.test.Echo", "{\"text\":1}", VARLINK_ERROR_INVALID_PARAMETER,
                   "{\"parameter\":\"text\"}");
        call_error(c, "org.example.test.Echo", "{\"text\":\"x\",\"z\":1}", VARLINK_ERROR_INVALID_PARAMETER,
                   "{\"parameter\":\"z\"}");
        call_error(c, "org.example.test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND,
                   "{\"method\":\"org.example.test.Nope\"}");
        call_error(c, "org.example.other.Nope", NULL, VARLINK_ERROR_INTERFACE_NOT_FOUND,
                   "{\"interface\":\"org.example.other\"}");
        call_error(c, "org.example.test.Missing", NULL, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED,
                   "{\"method\":\"org.example.test.Missing\"}");
        call_error(c, "org.example.test.Fail", NULL, "org.example.test.Failed", "{}");
        if (geteuid() == 0)
                json_object_put(call_ok(c, "org.example.test.Root", NULL));

        /* A streamed call: continues on all but the last reply. */
        json_object *upto = json_tokener_parse("{\"upto\":3}");
        check(varlink_client_send(c, "org.example.test.Count", upto, VARLINK_CALL_MORE, USEC_INFINITY) == 0);
        json_object_put(upto);
        for (int i = 0; i < 3; i++) {
                check(varlink_client_read_reply(c, 5 * USEC_PER_SEC, &out, &error, &continues) == 0);
                check(!error);
                check(json_object_get_int(json_object_object_get(out, "i")) == i);
                check(continues == (i < 2));
                json_object_put(out);
        }

        /* Oneway: no reply; then an async call answered later, with the next call queued behind it. */
        check(varlink_client_send(c, "org.example.test.Echo", NULL, VARLINK_CALL_ONEWAY, USEC_INFINITY) == 0);
        check(varlink_client_send(c, "org.example.test.Later", NULL, 0, USEC_INFINITY) == 0);
        check(varlink_client_send(c, "org.varlink.service.GetInfo", NULL, 0, USEC_INFINITY) == 0);
        /* The oneway Echo lacked "text": its error must not be sent either. */
        check(varlink_client_read_reply(c, 5 * USEC_PER_SEC, &out, &error, &continues) == 0);
        check(!error && json_object_object_length(out) == 0);
        json_object_put(out);
        check(varlink_client_read_reply(c, 5 * USEC_PER_SEC, &out, &error, &continues) == 0);
        check(!error && json_object_object_get(out, "vendor"));
        json_object_put(out);

        /* Nothing more is coming: a read times out. */
        check(varlink_client_read_reply(c, 100 * USEC_PER_MSEC, &out, &error, &continues) == -ETIMEDOUT);

        varlink_client_free(c);
        check(waitpid(pid, &status, 0) == pid);
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        /* Nobody listening: the client fails at once. */
        check(varlink_client_connect(&c, "unix:/nonexistent/socket", 5 * USEC_PER_SEC) == -ENOENT);
        check(varlink_client_connect(&c, "", 5 * USEC_PER_SEC) == -EINVAL);
        return 0;
}
