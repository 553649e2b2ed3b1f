/* gRPC transport (HTTP/2 through nghttp2) for the prediction and model services, on its own thread.
 *
 * Why: grpc.aio spends most of a call's CPU inside its own machinery on the event loop thread (about
 * half of the loop's GIL samples at 64 rows), and wakes several native threads per call. Here one
 * native thread owns the sockets and the HTTP/2 sessions (framing, HPACK, flow control and pings are
 * nghttp2's); Python only sees complete unary calls, taken in bulk, and hands back serialized answers.
 *
 * Ownership mirrors _native_http.c: connections and sessions are touched only by the I/O thread;
 * calls going up and answers coming down share one mutex, and each side wakes the other through an
 * eventfd written only when its queue goes from empty to non-empty.
 *
 * What is Python's (serving/native_grpc.py): method lookup, the message framing check and
 * decompression, deadlines, metadata, status codes and their messages. This side checks only what
 * HTTP/2 itself needs: POST, the application/grpc content type (415 otherwise, as gRPC servers
 * answer) and the size limit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "_native_io.h"

#define READ_CHUNK (64 * 1024)
#define OUT_HIGH_WATER (4 * 1024 * 1024) /* stop asking nghttp2 for frames while this much is unsent */
#define MAX_CONCURRENT_STREAMS 4096
#define STREAM_WINDOW (1 << 20)
#define CONNECTION_WINDOW (16 << 20)
#define MAX_HEADER_LIST (64 * 1024)
#define MAX_PATH 512

/* Why a call was refused before reaching Python (an HTTP status, answered here). */
enum { REFUSE_NONE = 0, REFUSE_METHOD = 405, REFUSE_CONTENT_TYPE = 415 };

typedef struct stream {
    struct stream *prev, *next;  /* the connection's open streams (nghttp2_session_del does not close them) */
    int32_t id;
    int is_post, grpc_content_type, path_len, refused, too_large, handed_up;
    char path[MAX_PATH];
    buf_t headers;  /* metadata as name \0 value \0 pairs, pseudo-headers left out */
    buf_t body;
    /* the answer, once Python gave it */
    char *out;
    size_t out_len, out_off;
    int grpc_status;
    char *message;
} stream_t;

typedef struct Server Server;

/* What nghttp2's callbacks get as user data: the server and the connection's slot. */
typedef struct {
    Server *server;
    uint32_t slot;
} session_ctx_t;

typedef struct {
    int fd;
    uint32_t gen;
    nghttp2_session *session;
    session_ctx_t ctx;
    stream_t *streams;
    buf_t out;
    size_t out_off;
    int want_out;
} conn_t;

/* A complete call going up to Python. */
typedef struct item {
    struct item *next;
    uint64_t conn;
    int32_t stream;
    int too_large;
    char path[MAX_PATH];
    int path_len;
    buf_t headers, body;
} item_t;

/* An answer coming down from Python. */
typedef struct reply {
    struct reply *next;
    uint64_t conn;
    int32_t stream;
    int grpc_status;
    char *message;      /* percent-encoded by Python; NULL: none */
    char *body;         /* the serialized message, framed here; NULL: a trailers-only answer */
    size_t body_len;
} reply_t;

struct Server {
    PyObject_HEAD
    io_core_t io;
    size_t max_message;
    int draining;  /* set by Python, read by the I/O thread: __atomic accesses */
    int drained;   /* I/O thread: GOAWAY already sent */
    nghttp2_session_callbacks *callbacks;
    unsigned long long accepted, calls;
};

#define CONN(s, slot) ((conn_t *)(s)->io.conns[slot])

static conn_t *conn_get(Server *s, uint64_t id) { return core_conn(&s->io, id); }

static void stream_unlink(conn_t *c, stream_t *st) {
    if (st->prev) st->prev->next = st->next; else c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
}

static void stream_free(stream_t *st) {
    buf_free(&st->headers);
    buf_free(&st->body);
    free(st->out);
    free(st->message);
    free(st);
}

static void free_items(item_t *it) {
    while (it) {
        item_t *next = it->next;
        buf_free(&it->headers);
        buf_free(&it->body);
        free(it);
        it = next;
    }
}

static void free_replies(reply_t *r) {
    while (r) {
        reply_t *next = r->next;
        free(r->message);
        free(r->body);
        free(r);
        r = next;
    }
}

static void conn_close(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    if (!c || c->fd < 0) return;
    epoll_ctl(s->io.epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->session) {
        nghttp2_session_del(c->session);
        c->session = NULL;
    }
    while (c->streams) {
        stream_t *st = c->streams;
        stream_unlink(c, st);
        stream_free(st);
    }
    buf_free(&c->out);
    c->out_off = 0;
    core_release_slot(&s->io, slot);
}

static void epoll_out(Server *s, conn_t *c, uint32_t slot, int want) {
    if (c->want_out == want) return;
    c->want_out = want;
    struct epoll_event ev;
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.u64 = conn_id(slot, c->gen);
    epoll_ctl(s->io.epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Pull frames from nghttp2 and write them; what the socket does not take waits for EPOLLOUT. */
static void conn_pump(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    for (;;) {
        while (c->out.len - c->out_off < OUT_HIGH_WATER) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->session, &data);
            if (n < 0) { conn_close(s, slot); return; }
            if (n == 0) break;
            if (buf_append(&c->out, (const char *)data, (size_t)n)) { conn_close(s, slot); return; }
        }
        if (c->out_off == c->out.len) break;
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            if (c->out_off == c->out.len) c->out.len = c->out_off = 0;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { epoll_out(s, c, slot, 1); return; }
        conn_close(s, slot);
        return;
    }
    epoll_out(s, c, slot, 0);
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) conn_close(s, slot);
}

/* ---- nghttp2 callbacks (I/O thread) -------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    stream_t *st = calloc(1, sizeof *st);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->id = frame->hd.stream_id;
    session_ctx_t *ctx = user;
    conn_t *c = CONN(ctx->server, ctx->slot);
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    nghttp2_session_set_stream_user_data(session, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st || st->handed_up) return 0;  /* trailers from the client carry nothing a unary call needs */
    if (namelen && name[0] == ':') {
        if (namelen == 5 && !memcmp(name, ":path", 5)) {
            if (valuelen >= MAX_PATH) valuelen = MAX_PATH - 1;  /* no such method: Python answers UNIMPLEMENTED */
            memcpy(st->path, value, valuelen);
            st->path_len = (int)valuelen;
        } else if (namelen == 7 && !memcmp(name, ":method", 7)) {
            st->is_post = valuelen == 4 && !memcmp(value, "POST", 4);
        }
        return 0;
    }
    if (st->headers.len + namelen + valuelen > MAX_HEADER_LIST) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  /* resets the stream */
    if (namelen == 12 && !memcmp(name, "content-type", 12)) {
        st->grpc_content_type = valuelen >= 16 && !memcmp(value, "application/grpc", 16) &&
                                (valuelen == 16 || value[16] == '+' || value[16] == ';');
    }
    if (buf_append(&st->headers, (const char *)name, namelen) || buf_append(&st->headers, "", 1) ||
        buf_append(&st->headers, (const char *)value, valuelen) || buf_append(&st->headers, "", 1))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *user) {
    session_ctx_t *ctx = user;
    stream_t *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!st || st->handed_up || st->refused) return 0;
    if (st->too_large || st->body.len + len > ctx->server->max_message + 5) {
        st->too_large = 1;  /* keep reading (flow control needs it), keep nothing; Python names the limit */
        buf_free(&st->body);
        return 0;
    }
    if (buf_append(&st->body, (const char *)data, len)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static void refuse(nghttp2_session *session, stream_t *st, int status) {
    char code[4];
    snprintf(code, sizeof code, "%d", status);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)code, 7, strlen(code), NGHTTP2_NV_FLAG_NONE},
    };
    st->refused = status;
    nghttp2_submit_response(session, st->id, nv, 1, NULL);
}

static void push_up(Server *s, item_t *it) { core_push_up(&s->io, (node_t *)it); }

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    session_ctx_t *ctx = user;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st || st->handed_up || st->refused) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (!st->is_post) { refuse(session, st, REFUSE_METHOD); return 0; }
        if (!st->grpc_content_type) { refuse(session, st, REFUSE_CONTENT_TYPE); return 0; }
    }
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    item_t *it = calloc(1, sizeof *it);
    if (!it) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    Server *s = ctx->server;
    it->conn = conn_id(ctx->slot, CONN(s, ctx->slot)->gen);
    it->stream = st->id;
    it->too_large = st->too_large;
    memcpy(it->path, st->path, (size_t)st->path_len);
    it->path_len = st->path_len;
    it->headers = st->headers;  /* ownership moves up */
    it->body = st->body;
    memset(&st->headers, 0, sizeof st->headers);
    memset(&st->body, 0, sizeof st->body);
    st->handed_up = 1;
    s->calls++;
    push_up(s, it);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user) {
    stream_t *st = nghttp2_session_get_stream_user_data(session, stream_id);
    if (st) {
        session_ctx_t *ctx = user;
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        stream_unlink(CONN(ctx->server, ctx->slot), st);
        stream_free(st);  /* an answer still coming from Python finds no stream and is dropped */
    }
    return 0;
}

/* The answer's one message: the 5-byte gRPC prefix, then the bytes; then the trailers. */
static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
    stream_t *st = source->ptr;
    size_t total = st->out_len + 5, n = 0;
    while (n < length && st->out_off < total) {
        if (st->out_off < 5) {
            uint32_t len = (uint32_t)st->out_len;
            uint8_t prefix[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
            buf[n++] = prefix[st->out_off++];
        } else {
            size_t take = total - st->out_off;
            if (take > length - n) take = length - n;
            memcpy(buf + n, st->out + (st->out_off - 5), take);
            st->out_off += take;
            n += take;
        }
    }
    if (st->out_off == total) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        char code[12];
        snprintf(code, sizeof code, "%d", st->grpc_status);
        nghttp2_nv trailers[2] = {
            {(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-message", (uint8_t *)(st->message ? st->message : ""), 12,
             st->message ? strlen(st->message) : 0, NGHTTP2_NV_FLAG_NONE},
        };
        if (nghttp2_submit_trailer(session, stream_id, trailers, st->message ? 2 : 1)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

static void answer(Server *s, reply_t *r) {
    conn_t *c = conn_get(s, r->conn);
    if (!c) return;
    stream_t *st = nghttp2_session_get_stream_user_data(c->session, r->stream);
    if (!st || st->refused) return;  /* the client reset the stream, or the connection went away */
    st->grpc_status = r->grpc_status;
    st->message = r->message;
    r->message = NULL;
    if (r->body) {
        st->out = r->body;
        st->out_len = r->body_len;
        r->body = NULL;
        nghttp2_nv nv[] = {
            {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-accept-encoding", (uint8_t *)"identity, deflate, gzip", 20, 23, NGHTTP2_NV_FLAG_NONE},
        };
        nghttp2_data_provider provider = {.source = {.ptr = st}, .read_callback = read_body};
        nghttp2_submit_response(c->session, st->id, nv, 3, &provider);
    } else {  /* trailers-only: the status travels in the one HEADERS frame */
        char code[12];
        snprintf(code, sizeof code, "%d", r->grpc_status);
        nghttp2_nv nv[] = {
            {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-message", (uint8_t *)(st->message ? st->message : ""), 12,
             st->message ? strlen(st->message) : 0, NGHTTP2_NV_FLAG_NONE},
        };
        nghttp2_submit_response(c->session, st->id, nv, st->message ? 4 : 3, NULL);
    }
}

/* ---- I/O thread ---------------------------------------------------------------------------------- */

static void on_readable(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    uint8_t chunk[READ_CHUNK];
    for (;;) {
        ssize_t r = recv(c->fd, chunk, sizeof chunk, 0);
        if (r > 0) {
            ssize_t used = nghttp2_session_mem_recv(c->session, chunk, (size_t)r);
            if (used < 0) {  /* a protocol error: nghttp2 has queued GOAWAY; send it, then close */
                conn_pump(s, slot);
                if (conn_get(s, conn_id(slot, c->gen))) conn_close(s, slot);
                return;
            }
            if ((size_t)r < sizeof chunk) break;
            continue;
        }
        if (r == 0) { conn_close(s, slot); return; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        conn_close(s, slot);
        return;
    }
    conn_pump(s, slot);
}

static void take_replies(Server *s) {
    reply_t *r = (reply_t *)core_take_down(&s->io);
    /* Submit every answer first, then write each connection once. */
    for (reply_t *it = r; it; it = it->next) answer(s, it);
    for (reply_t *it = r; it; it = it->next) {
        conn_t *c = conn_get(s, it->conn);
        if (c && nghttp2_session_want_write(c->session)) conn_pump(s, conn_slot(it->conn));
    }
    free_replies(r);
}

static int new_session(Server *s, conn_t *c, uint32_t slot) {
    c->ctx.server = s;
    c->ctx.slot = slot;
    if (nghttp2_session_server_new(&c->session, s->callbacks, &c->ctx)) { c->session = NULL; return -1; }
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 3);
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, CONNECTION_WINDOW);
    return 0;
}

static void accept_all(Server *s) {
    for (;;) {
        int fd = accept4(s->io.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) core_pause_accept(&s->io);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint32_t slot;
        conn_t *c = core_new_conn(&s->io, fd, sizeof *c, &slot);
        if (!c) return;
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.u64 = conn_id(slot, c->gen);
        if (new_session(s, c, slot) || epoll_ctl(s->io.epoll_fd, EPOLL_CTL_ADD, fd, &ev)) {
            conn_close(s, slot);
            continue;
        }
        s->accepted++;
        conn_pump(s, slot);  /* the server's SETTINGS */
    }
}

/* GOAWAY to every open connection: no new streams; those already received still get their answers. */
static void goaway_all(Server *s) {
    for (uint32_t slot = 0; slot < s->io.nconns; slot++) {
        conn_t *c = CONN(s, slot);
        if (!c || c->fd < 0) continue;
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->session),
                              NGHTTP2_NO_ERROR, NULL, 0);
        conn_pump(s, slot);
    }
}

/* Stop taking new calls: no more accepts, GOAWAY on every connection. */
static void drain_all(Server *s) {
    epoll_ctl(s->io.epoll_fd, EPOLL_CTL_DEL, s->io.listen_fd, NULL);
    s->io.accept_paused_until = 0;
    goaway_all(s);
}

static void *io_main(void *arg) {
    Server *s = arg;
    struct epoll_event events[256];
    while (!__atomic_load_n(&s->io.stopping, __ATOMIC_ACQUIRE)) {
        int n = epoll_wait(s->io.epoll_fd, events, 256, 100);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == TAG_LISTEN) { accept_all(s); continue; }
            if (tag == TAG_WAKE) {
                if (!s->drained && __atomic_load_n(&s->draining, __ATOMIC_ACQUIRE)) { s->drained = 1; drain_all(s); }
                take_replies(s);
                continue;
            }
            conn_t *c = conn_get(s, tag);
            if (!c) continue;
            uint32_t slot = conn_slot(tag);
            if (events[i].events & EPOLLOUT) {
                conn_pump(s, slot);
                if (!conn_get(s, tag)) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(s, slot);
        }
        if (!s->drained) core_resume_accept(&s->io, now_mono());
    }
    take_replies(s);  /* answers Python queued just before stop() */
    goaway_all(s);
    for (uint32_t slot = 0; slot < s->io.nconns; slot++)
        if (CONN(s, slot) && CONN(s, slot)->fd >= 0) conn_close(s, slot);
    return NULL;
}

/* ---- Python type --------------------------------------------------------------------------------- */

static int Server_init(Server *s, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"listen_fd", "max_message_bytes", NULL};
    int fd;
    unsigned long long max_message;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iK", kwlist, &fd, &max_message)) return -1;
    if (s->io.opened) {
        PyErr_SetString(PyExc_RuntimeError, "server already initialised");
        return -1;
    }
    if (nghttp2_session_callbacks_new(&s->callbacks)) {
        PyErr_NoMemory();
        return -1;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(s->callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(s->callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(s->callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(s->callbacks, on_stream_close);
    if (core_open(&s->io, fd)) return -1;
    s->max_message = (size_t)max_message;
    return core_start(&s->io, io_main, s);
}

static void stop_thread(Server *s) {
    node_t *up, *down;
    if (!core_join(&s->io, &up, &down)) return;
    free_items((item_t *)up);
    free_replies((reply_t *)down);
}

static void Server_dealloc(Server *s) {
    stop_thread(s);
    core_close(&s->io);
    if (s->callbacks) nghttp2_session_callbacks_del(s->callbacks);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *Server_stop(Server *s, PyObject *unused) {
    stop_thread(s);
    Py_RETURN_NONE;
}

static PyObject *Server_drain(Server *s, PyObject *unused) {
    if (s->io.started && !s->io.stopped) {
        __atomic_store_n(&s->draining, 1, __ATOMIC_RELEASE);
        signal_fd(s->io.wake_fd);
    }
    Py_RETURN_NONE;
}

static PyObject *Server_notify_fd(Server *s, PyObject *unused) { return PyLong_FromLong(s->io.notify_fd); }

/* Metadata as a tuple of (name, value) str pairs, latin-1 (HTTP/2 field values are octets). */
static PyObject *metadata_tuple(const buf_t *h) {
    PyObject *list = PyList_New(0);
    size_t pos = 0;
    while (list && pos < h->len) {
        const char *name = h->data + pos;
        size_t nlen = strlen(name);
        const char *value = name + nlen + 1;
        size_t vlen = strlen(value);  /* a NUL inside a value would cut it short; HTTP/2 forbids NUL there */
        pos += nlen + vlen + 2;
        PyObject *pair = Py_BuildValue("(NN)", PyUnicode_DecodeLatin1(name, (Py_ssize_t)nlen, NULL),
                                       PyUnicode_DecodeLatin1(value, (Py_ssize_t)vlen, NULL));
        if (!pair || PyList_Append(list, pair)) { Py_XDECREF(pair); Py_CLEAR(list); break; }
        Py_DECREF(pair);
    }
    if (!list) return NULL;
    PyObject *tuple = PyList_AsTuple(list);
    Py_DECREF(list);
    return tuple;
}

/* Every complete call since the last take(): a list of (conn, stream, path, metadata, body, too_large). */
static PyObject *Server_take(Server *s, PyObject *unused) {
    item_t *it = (item_t *)core_take_up(&s->io);
    PyObject *out = PyList_New(0);
    item_t *first = it;
    for (; out && it; it = it->next) {
        PyObject *t = Py_BuildValue("(KiNNy#O)", (unsigned long long)it->conn, (int)it->stream,
                                    PyUnicode_DecodeLatin1(it->path, it->path_len, NULL), metadata_tuple(&it->headers),
                                    it->body.data ? it->body.data : "", (Py_ssize_t)it->body.len,
                                    it->too_large ? Py_True : Py_False);
        if (!t || PyList_Append(out, t)) { Py_XDECREF(t); Py_CLEAR(out); break; }
        Py_DECREF(t);
    }
    free_items(first);
    return out;
}

/* respond(conn, stream, grpc_status, message: bytes | None, body: bytes | None); sent after flush(). */
static PyObject *Server_respond(Server *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "respond(conn, stream, grpc_status, message, body)");
        return NULL;
    }
    unsigned long long conn = PyLong_AsUnsignedLongLong(args[0]);
    long stream = PyLong_AsLong(args[1]);
    long status = PyLong_AsLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    char *message = NULL, *body = NULL;
    Py_ssize_t message_len = 0, body_len = 0;
    if (args[3] != Py_None && PyBytes_AsStringAndSize(args[3], &message, &message_len)) return NULL;
    if (args[4] != Py_None && PyBytes_AsStringAndSize(args[4], &body, &body_len)) return NULL;
    if (body_len > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "a gRPC message is at most 4 GiB");
        return NULL;
    }
    if (s->io.stopped || !s->io.started) Py_RETURN_NONE;
    reply_t *r = calloc(1, sizeof *r);
    if (!r) return PyErr_NoMemory();
    r->conn = conn;
    r->stream = (int32_t)stream;
    r->grpc_status = (int)status;
    if (message) {
        r->message = malloc((size_t)message_len + 1);
        if (!r->message) { free(r); return PyErr_NoMemory(); }
        memcpy(r->message, message, (size_t)message_len);
        r->message[message_len] = 0;
    }
    if (body) {
        r->body = malloc(body_len ? (size_t)body_len : 1);
        if (!r->body) { free(r->message); free(r); return PyErr_NoMemory(); }
        memcpy(r->body, body, (size_t)body_len);
        r->body_len = (size_t)body_len;
    }
    core_queue_down(&s->io, (node_t *)r);
    Py_RETURN_NONE;
}

/* Wake the I/O thread for the answers queued since the last flush (once per event loop pass). */
static PyObject *Server_flush(Server *s, PyObject *unused) {
    core_flush(&s->io);
    Py_RETURN_NONE;
}

static PyObject *Server_stats(Server *s, PyObject *unused) {
    return Py_BuildValue("{sKsK}", "accepted", s->accepted, "calls", s->calls);
}

static PyMethodDef Server_methods[] = {
    {"take", (PyCFunction)Server_take, METH_NOARGS, "Complete calls handed up since the last call."},
    {"respond", (PyCFunction)(void (*)(void))Server_respond, METH_FASTCALL, "Queue a call's answer (sent after flush())."},
    {"flush", (PyCFunction)Server_flush, METH_NOARGS, "Hand the queued answers to the I/O thread."},
    {"drain", (PyCFunction)Server_drain, METH_NOARGS, "Stop accepting; GOAWAY to every client; calls in flight finish."},
    {"notify_fd", (PyCFunction)Server_notify_fd, METH_NOARGS, "eventfd readable when take() has work."},
    {"stop", (PyCFunction)Server_stop, METH_NOARGS, "Close the listening socket and every connection; join the thread."},
    {"stats", (PyCFunction)Server_stats, METH_NOARGS, "Connections accepted and calls received so far."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "serving._native_grpc.Server",
    .tp_basicsize = sizeof(Server),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "gRPC (HTTP/2) transport on a native I/O thread (see serving/native_grpc.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Server_init,
    .tp_dealloc = (destructor)Server_dealloc,
    .tp_methods = Server_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_grpc", "gRPC transport for the model services on a native thread.", -1, NULL,
};

PyMODINIT_FUNC PyInit__native_grpc(void) {
    if (PyType_Ready(&ServerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ServerType);
    if (PyModule_AddObject(m, "Server", (PyObject *)&ServerType) < 0) {
        Py_DECREF(&ServerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
