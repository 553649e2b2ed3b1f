/* HTTP/1.1 transport for the REST API, run on its own thread without the GIL.
 *
 * Why: on a few cores the Python event loop spent about a third of each single-row request on socket
 * reads and writes (the loopback send runs the client's receive path), HTTP parsing and response
 * framing, all while holding the GIL the batch threads need. Here one native thread accepts, reads,
 * frames and writes; Python only sees complete requests (taken in bulk) and hands back bodies.
 *
 * Ownership: connections are touched only by the I/O thread. Python and the I/O thread share two
 * queues under one mutex: requests (and protocol errors) going up, responses coming down. Each side
 * wakes the other with an eventfd, written only when its queue goes from empty to non-empty.
 *
 * Semantics follow serving/httpserver.py (the asyncio engine): keep-alive and pipelining with one
 * request per connection in flight, Content-Length and chunked bodies, Expect: 100-continue, body and
 * header limits, a read timeout for started requests and a keep-alive timeout for idle connections.
 * Protocol errors are reported to Python as (kind, detail), so messages are written in one place.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "_native_io.h"

#define MAX_HEADER_BYTES (64 * 1024)
#define READ_CHUNK (64 * 1024)
#define PAUSE_READ_BYTES (1024 * 1024) /* stop reading a busy connection beyond this much buffered */
#define MAX_HEADERS 128

/* Protocol error kinds reported to Python (mirrored in serving/native_http.py). */
enum { ERR_NONE = 0, ERR_REQUEST_LINE, ERR_HEADER_LINE, ERR_HEADERS_TOO_LARGE, ERR_LENGTH_NAN,
       ERR_LENGTH_NEGATIVE, ERR_TOO_LARGE, ERR_CHUNKED, ERR_TIMEOUT };

typedef struct {
    int fd;
    uint32_t gen;
    buf_t in, out;
    size_t out_off;
    int busy;          /* a request (or error) is with Python */
    int close_after;   /* close once `out` is flushed */
    int sent_continue;
    int paused;        /* EPOLLIN removed */
    int want_out;      /* EPOLLOUT registered */
    double deadline;   /* CLOCK_MONOTONIC seconds; 0: none */
    char peer[72];
} conn_t;

/* A request or protocol error going up to Python. */
typedef struct item {
    struct item *next;
    uint64_t id;
    int error;          /* ERR_* ; 0 for a request */
    long long number;   /* ERR_TOO_LARGE: the size */
    int keep_alive;
    char *head;         /* request head copy; names lower-cased in place */
    size_t method_off, method_len, target_off, target_len;
    int nheaders;
    size_t name_off[MAX_HEADERS], name_len[MAX_HEADERS], value_off[MAX_HEADERS], value_len[MAX_HEADERS];
    char *body;
    size_t body_len;
    char peer[72];
} item_t;

/* A response coming down from Python. */
typedef struct reply {
    struct reply *next;
    uint64_t id;
    int close;
    size_t len;
    char data[];
} reply_t;

typedef struct {
    PyObject_HEAD
    io_core_t io;
    size_t max_body;
    double request_timeout, keepalive_timeout;
    double last_scan;  /* I/O thread only */
    /* counters (I/O thread writes, read racily for stats) */
    unsigned long long accepted, requests;
} Server;

#define CONN(s, slot) ((conn_t *)(s)->io.conns[slot])

static conn_t *conn_get(Server *s, uint64_t id) { return core_conn(&s->io, id); }

static void epoll_set(Server *s, conn_t *c, uint32_t slot) {
    struct epoll_event ev;
    ev.events = (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0);
    ev.data.u64 = conn_id(slot, c->gen);
    epoll_ctl(s->io.epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    if (!c || c->fd < 0) return;
    epoll_ctl(s->io.epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    c->out_off = 0;
    core_release_slot(&s->io, slot);
}

/* ---- queue up to Python ------------------------------------------------------------------------ */

static void free_items(item_t *it) {
    while (it) {
        item_t *next = it->next;
        free(it->head);
        free(it->body);
        free(it);
        it = next;
    }
}

static void push_up(Server *s, item_t *it) { core_push_up(&s->io, (node_t *)it); }

static void report_error(Server *s, uint32_t slot, int kind, long long number, const char *detail, size_t detail_len) {
    conn_t *c = CONN(s, slot);
    item_t *it = calloc(1, sizeof *it);
    if (!it) { conn_close(s, slot); return; }
    it->id = conn_id(slot, c->gen);
    it->error = kind;
    it->number = number;
    if (detail_len) {
        it->head = malloc(detail_len);
        if (it->head) { memcpy(it->head, detail, detail_len); it->method_len = detail_len; }
    }
    memcpy(it->peer, c->peer, sizeof it->peer);
    c->busy = 1;
    c->in.len = 0;  /* nothing after a protocol error is read: the connection closes after the reply */
    c->paused = 1;
    c->deadline = 0;
    epoll_set(s, c, slot);
    push_up(s, it);
}

/* parse_one's way out for a malformed request: report it, then drop the half-built item (the detail may
 * point into it; report_error copies it). */
static int reject(Server *s, uint32_t slot, item_t *it, int kind, long long number, const char *detail, size_t detail_len) {
    report_error(s, slot, kind, number, detail, detail_len);
    free_items(it);
    return 1;
}

/* ---- parsing ----------------------------------------------------------------------------------- */

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f'; }

static void trim(const char *p, size_t len, size_t *start, size_t *n) {
    size_t a = 0, b = len;
    while (a < b && is_ws(p[a])) a++;
    while (b > a && is_ws(p[b - 1])) b--;
    *start = a;
    *n = b - a;
}

static const char *memfind(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0) return hay;
    for (size_t i = 0; i + m <= n; i++) {
        const char *p = memchr(hay + i, needle[0], n - m - i + 1);
        if (!p) return NULL;
        if (memcmp(p, needle, m) == 0) return p;
        i = (size_t)(p - hay);
    }
    return NULL;
}

static int contains_ci(const char *p, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (strncasecmp(p + i, needle, m) == 0) return 1;
    return 0;
}

static const item_t *find_header(const item_t *it, const char *name, size_t *len, const char **value) {
    size_t m = strlen(name);
    for (int i = 0; i < it->nheaders; i++) {
        if (it->name_len[i] == m && memcmp(it->head + it->name_off[i], name, m) == 0) {
            *value = it->head + it->value_off[i];
            *len = it->value_len[i];
            return it;
        }
    }
    return NULL;
}

/* Chunked body starting at `start` of c->in: 1 complete (body, consumed set), 0 incomplete, -1 error
 * (kind set). */
static int dechunk(Server *s, conn_t *c, size_t start, buf_t *body, size_t *consumed, int *kind, long long *size_out) {
    size_t pos = start;
    const char *d = c->in.data;
    size_t n = c->in.len;
    body->len = 0;
    for (;;) {
        const char *line_end = memfind(d + pos, n - pos, "\r\n", 2);
        if (!line_end) return 0;
        size_t le = (size_t)(line_end - d);
        size_t a, len;
        trim(d + pos, le - pos, &a, &len);
        const char *semi = memchr(d + pos + a, ';', len);
        if (semi) trim(d + pos + a, (size_t)(semi - (d + pos + a)), &(size_t){0}, &len);
        unsigned long long size = 0;
        if (len == 0 || len > 15) { *kind = ERR_CHUNKED; return -1; }
        for (size_t i = 0; i < len; i++) {
            char ch = d[pos + a + i];
            int v = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                    : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
            if (v < 0) { *kind = ERR_CHUNKED; return -1; }
            size = size * 16 + (unsigned)v;
        }
        if (body->len + size > s->max_body) { *kind = ERR_TOO_LARGE; *size_out = (long long)(body->len + size); return -1; }
        if (size == 0) {
            const char *trailer = memfind(d + le + 2, n - (le + 2) > n ? 0 : n - (le + 2), "\r\n", 2);
            if (le + 2 > n || !trailer) return 0;
            *consumed = (size_t)(trailer - d) + 2;
            return 1;
        }
        if (n < le + 2 + size + 2) return 0;
        if (buf_append(body, d + le + 2, size)) { *kind = ERR_TOO_LARGE; *size_out = (long long)size; return -1; }
        pos = le + 2 + size + 2;
    }
}

/* Try to take one complete request off c->in and hand it to Python. Returns 1 if one was handed up
 * (or an error reported), 0 if more bytes are needed. */
static int parse_one(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    const char *d = c->in.data;
    size_t n = c->in.len;
    if (n == 0) return 0;
    const char *end = memfind(d, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > MAX_HEADER_BYTES) { report_error(s, slot, ERR_HEADERS_TOO_LARGE, MAX_HEADER_BYTES, NULL, 0); return 1; }
        return 0;
    }
    size_t head_len = (size_t)(end - d);
    item_t *it = calloc(1, sizeof *it);
    if (!it) { conn_close(s, slot); return 1; }
    it->head = malloc(head_len + 1);
    if (!it->head) { free_items(it); conn_close(s, slot); return 1; }
    memcpy(it->head, d, head_len);
    it->head[head_len] = 0;
    char *h = it->head;
    /* request line: exactly three space-separated parts, the last starting with HTTP/1. */
    const char *line_end = memfind(h, head_len, "\r\n", 2);
    size_t l0 = line_end ? (size_t)(line_end - h) : head_len;
    const char *sp1 = memchr(h, ' ', l0);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', l0 - (size_t)(sp1 + 1 - h)) : NULL;
    const char *sp3 = sp2 ? memchr(sp2 + 1, ' ', l0 - (size_t)(sp2 + 1 - h)) : NULL;
    if (!sp1 || !sp2 || sp3 || l0 - (size_t)(sp2 + 1 - h) < 7 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        return reject(s, slot, it, ERR_REQUEST_LINE, 0, h, l0);
    }
    it->method_off = 0;
    it->method_len = (size_t)(sp1 - h);
    it->target_off = (size_t)(sp1 + 1 - h);
    it->target_len = (size_t)(sp2 - sp1 - 1);
    int http11 = (l0 - (size_t)(sp2 + 1 - h) == 8) && memcmp(sp2 + 1, "HTTP/1.1", 8) == 0;
    size_t pos = line_end ? l0 + 2 : head_len;
    while (pos < head_len || (pos == head_len && line_end && pos < head_len)) {
        const char *e = memfind(h + pos, head_len - pos, "\r\n", 2);
        size_t le = e ? (size_t)(e - h) : head_len;
        const char *colon = memchr(h + pos, ':', le - pos);
        if (!colon) {
            return reject(s, slot, it, ERR_HEADER_LINE, 0, h + pos, le - pos);
        }
        if (it->nheaders < MAX_HEADERS) {
            int i = it->nheaders++;
            size_t a, len;
            trim(h + pos, (size_t)(colon - (h + pos)), &a, &len);
            it->name_off[i] = pos + a;
            it->name_len[i] = len;
            for (size_t k = 0; k < len; k++) {
                char ch = h[pos + a + k];
                if (ch >= 'A' && ch <= 'Z') h[pos + a + k] = (char)(ch + 32);
            }
            size_t vstart = (size_t)(colon + 1 - h);
            trim(h + vstart, le - vstart, &a, &len);
            it->value_off[i] = vstart + a;
            it->value_len[i] = len;
        }
        pos = le + 2;
    }
    size_t body_start = head_len + 4;
    const char *value;
    size_t vlen;
    size_t consumed;
    buf_t body = {0};
    if (find_header(it, "transfer-encoding", &vlen, &value) && contains_ci(value, vlen, "chunked")) {
        int kind = 0;
        long long size = 0;
        int r = dechunk(s, c, body_start, &body, &consumed, &kind, &size);
        if (r < 0) {
            buf_free(&body);
            return reject(s, slot, it, kind, size, NULL, 0);
        }
        if (r == 0) {
            buf_free(&body);
            goto incomplete;
        }
    } else {
        long long length = 0;
        if (find_header(it, "content-length", &vlen, &value)) {
            size_t i = 0;
            int negative = 0, digits = 0;
            if (i < vlen && (value[i] == '+' || value[i] == '-')) negative = value[i++] == '-';
            for (; i < vlen; i++) {
                if (value[i] == '_' && digits) continue;
                if (value[i] < '0' || value[i] > '9' || length > (1LL << 60)) { digits = -1; break; }
                length = length * 10 + (value[i] - '0');
                digits++;
            }
            if (digits <= 0) {
                return reject(s, slot, it, ERR_LENGTH_NAN, 0, NULL, 0);
            }
            if (negative && length > 0) {
                return reject(s, slot, it, ERR_LENGTH_NEGATIVE, 0, NULL, 0);
            }
        }
        if ((unsigned long long)length > s->max_body) {
            return reject(s, slot, it, ERR_TOO_LARGE, length, NULL, 0);
        }
        if (n - body_start < (size_t)length) goto incomplete;
        if (length && buf_append(&body, d + body_start, (size_t)length)) {
            free_items(it);
            conn_close(s, slot);
            return 1;
        }
        consumed = body_start + (size_t)length;
    }
    {
        const char *conn_value = "";
        size_t conn_len = 0;
        find_header(it, "connection", &conn_len, &conn_value);
        it->keep_alive = http11 ? !contains_ci(conn_value, conn_len, "close") : contains_ci(conn_value, conn_len, "keep-alive");
        it->body = body.data;
        it->body_len = body.len;
        it->id = conn_id(slot, c->gen);
        memcpy(it->peer, c->peer, sizeof it->peer);
        buf_consume(&c->in, consumed);
        if (!it->keep_alive) c->in.len = 0;
        c->sent_continue = 0;
        c->busy = 1;
        c->deadline = 0;
        s->requests++;
        if (c->in.len > PAUSE_READ_BYTES && !c->paused) {
            c->paused = 1;
            epoll_set(s, c, slot);
        }
        push_up(s, it);
        return 1;
    }
incomplete:
    if (!c->sent_continue && find_header(it, "expect", &vlen, &value) && vlen == 12 && strncasecmp(value, "100-continue", 12) == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        buf_append(&c->out, cont, sizeof cont - 1);
        c->sent_continue = 1;
    }
    free_items(it);
    return 0;
}

/* ---- I/O --------------------------------------------------------------------------------------- */

static void flush_out(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) { c->want_out = 1; epoll_set(s, c, slot); }
            return;
        }
        if (w < 0 && errno == EINTR) continue;
        conn_close(s, slot);
        return;
    }
    c->out.len = c->out_off = 0;
    if (c->want_out) { c->want_out = 0; epoll_set(s, c, slot); }
    if (c->close_after && !c->busy) conn_close(s, slot);
}

static void after_reply(Server *s, uint32_t slot);

static void on_readable(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    int was_empty = c->in.len == 0;
    for (;;) {
        if (buf_reserve(&c->in, READ_CHUNK)) { conn_close(s, slot); return; }
        ssize_t r = recv(c->fd, c->in.data + c->in.len, READ_CHUNK, 0);
        if (r > 0) {
            c->in.len += (size_t)r;
            if ((size_t)r < READ_CHUNK) break;
            if (c->busy && c->in.len > PAUSE_READ_BYTES) break;
            continue;
        }
        if (r == 0) { conn_close(s, slot); return; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        conn_close(s, slot);
        return;
    }
    if (c->busy) {
        if (c->in.len > PAUSE_READ_BYTES && !c->paused) { c->paused = 1; epoll_set(s, c, slot); }
        return;
    }
    if (was_empty && c->in.len) c->deadline = now_mono() + s->request_timeout;
    parse_one(s, slot);
    c = CONN(s, slot);
    if (c && c->fd >= 0 && c->out.len > c->out_off) flush_out(s, slot);  /* 100 Continue */
}

/* Python answered: the connection is free for its next (pipelined) request. */
static void after_reply(Server *s, uint32_t slot) {
    conn_t *c = CONN(s, slot);
    c->busy = 0;
    if (c->close_after) {
        c->in.len = 0;
        if (c->out_off >= c->out.len) conn_close(s, slot);
        return;
    }
    if (c->paused) { c->paused = 0; epoll_set(s, c, slot); }
    if (c->in.len) {
        c->deadline = now_mono() + s->request_timeout;
        parse_one(s, slot);
    } else {
        c->deadline = now_mono() + s->keepalive_timeout;
    }
}

static void take_replies(Server *s) {
    reply_t *r = (reply_t *)core_take_down(&s->io);
    /* Append every reply first, then flush each connection once: a batch of answers costs one send per
     * connection, and a connection's next request is parsed only after its answer is queued. */
    reply_t *first = r;
    for (; r; r = r->next) {
        conn_t *c = conn_get(s, r->id);
        if (!c) continue;
        if (buf_append(&c->out, r->data, r->len)) { conn_close(s, conn_slot(r->id)); continue; }
        if (r->close) c->close_after = 1;
    }
    for (r = first; r;) {
        reply_t *next = r->next;
        conn_t *c = conn_get(s, r->id);
        if (c) {
            uint32_t slot = conn_slot(r->id);
            after_reply(s, slot);
            c = conn_get(s, r->id);
            if (c) flush_out(s, slot);
        }
        free(r);
        r = next;
    }
}

static void accept_all(Server *s) {
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t alen = sizeof addr;
        int fd = accept4(s->io.listen_fd, (struct sockaddr *)&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) core_pause_accept(&s->io);
            return;  /* EAGAIN, or an error the next event retries */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint32_t slot;
        conn_t *c = core_new_conn(&s->io, fd, sizeof *c, &slot);
        if (!c) return;
        c->deadline = now_mono() + s->keepalive_timeout;
        char host[INET6_ADDRSTRLEN] = "";
        int port = 0;
        if (addr.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&addr;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (addr.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&addr;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.u64 = conn_id(slot, c->gen);
        if (epoll_ctl(s->io.epoll_fd, EPOLL_CTL_ADD, fd, &ev)) { close(fd); core_release_slot(&s->io, slot); continue; }
        s->accepted++;
    }
}

static void scan_deadlines(Server *s, double now) {
    for (uint32_t slot = 0; slot < s->io.nconns; slot++) {
        conn_t *c = CONN(s, slot);
        if (!c || c->fd < 0 || c->busy || c->deadline == 0 || now < c->deadline) continue;
        if (c->in.len) report_error(s, slot, ERR_TIMEOUT, 0, NULL, 0);  /* a started request never finished */
        else conn_close(s, slot);
    }
}

static void *io_main(void *arg) {
    Server *s = arg;
    struct epoll_event events[256];
    s->last_scan = now_mono();
    while (!__atomic_load_n(&s->io.stopping, __ATOMIC_ACQUIRE)) {
        int n = epoll_wait(s->io.epoll_fd, events, 256, 100);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == TAG_LISTEN) { accept_all(s); continue; }
            if (tag == TAG_WAKE) { take_replies(s); continue; }
            conn_t *c = conn_get(s, tag);
            if (!c) continue;
            uint32_t slot = conn_slot(tag);
            if (events[i].events & EPOLLOUT) {
                flush_out(s, slot);
                if (!conn_get(s, tag)) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (c->paused && !(events[i].events & (EPOLLHUP | EPOLLERR))) continue;
                on_readable(s, slot);
            }
        }
        double now = now_mono();
        if (now - s->last_scan >= 0.05) {
            s->last_scan = now;
            scan_deadlines(s, now);
            core_resume_accept(&s->io, now);
        }
    }
    for (uint32_t slot = 0; slot < s->io.nconns; slot++) {
        if (CONN(s, slot) && CONN(s, slot)->fd >= 0) {
            flush_out(s, slot);
            if (CONN(s, slot)->fd >= 0) conn_close(s, slot);
        }
    }
    return NULL;
}

/* ---- Python type ------------------------------------------------------------------------------- */

static void free_replies(reply_t *r) {
    while (r) {
        reply_t *next = r->next;
        free(r);
        r = next;
    }
}

static int Server_init(Server *s, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"listen_fd", "max_body_bytes", "request_timeout", "keepalive_timeout", NULL};
    int fd;
    unsigned long long max_body;
    double request_timeout, keepalive_timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iKdd", kwlist, &fd, &max_body, &request_timeout, &keepalive_timeout))
        return -1;
    if (s->io.opened) {
        PyErr_SetString(PyExc_RuntimeError, "server already initialised");
        return -1;
    }
    if (core_open(&s->io, fd)) return -1;
    s->max_body = (size_t)max_body;
    s->request_timeout = request_timeout;
    s->keepalive_timeout = keepalive_timeout;
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
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *Server_stop(Server *s, PyObject *unused) {
    stop_thread(s);
    Py_RETURN_NONE;
}

static PyObject *Server_notify_fd(Server *s, PyObject *unused) { return PyLong_FromLong(s->io.notify_fd); }

static PyObject *latin1(const char *p, size_t n) { return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL); }

/* Everything the I/O thread has handed up since the last call: a list of
 *   (id, method, target, headers, body, keep_alive, peer)  for requests, and
 *   (id, None, kind, detail, number, False, peer)           for protocol errors. */
static PyObject *Server_take(Server *s, PyObject *unused) {
    item_t *it = (item_t *)core_take_up(&s->io);
    PyObject *out = PyList_New(0);
    item_t *first = it;
    for (; out && it; it = it->next) {
        PyObject *t;
        if (it->error) {
            t = Py_BuildValue("(KOiNLOs)", (unsigned long long)it->id, Py_None, it->error,
                              latin1(it->head ? it->head : "", it->method_len), it->number, Py_False, it->peer);
        } else {
            PyObject *headers = PyDict_New();
            for (int i = 0; headers && i < it->nheaders; i++) {
                PyObject *name = latin1(it->head + it->name_off[i], it->name_len[i]);
                PyObject *value = latin1(it->head + it->value_off[i], it->value_len[i]);
                if (!name || !value) { Py_XDECREF(name); Py_XDECREF(value); Py_CLEAR(headers); break; }
                PyObject *old = PyDict_GetItemWithError(headers, name);
                if (old) {
                    PyObject *joined = PyUnicode_FromFormat("%U, %U", old, value);
                    Py_DECREF(value);
                    value = joined;
                }
                if (!value || PyDict_SetItem(headers, name, value)) { Py_DECREF(name); Py_XDECREF(value); Py_CLEAR(headers); break; }
                Py_DECREF(name);
                Py_DECREF(value);
            }
            t = headers ? Py_BuildValue("(KNNNy#Os)", (unsigned long long)it->id,
                                        latin1(it->head + it->method_off, it->method_len),
                                        latin1(it->head + it->target_off, it->target_len), headers,
                                        it->body ? it->body : "", (Py_ssize_t)it->body_len,
                                        it->keep_alive ? Py_True : Py_False, it->peer)
                        : NULL;
        }
        if (!t || PyList_Append(out, t)) { Py_XDECREF(t); Py_CLEAR(out); break; }
        Py_DECREF(t);
    }
    free_items(first);
    return out;
}

static char date_cache[64];
static time_t date_second;

/* respond(id, head: bytes, body: bytes, close: bool): the status line and headers up to (not including)
 * Date and Content-Length come from Python; Date, Content-Length and the body are added here. */
static PyObject *Server_respond(Server *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "respond(id, head, body, close)");
        return NULL;
    }
    unsigned long long id = PyLong_AsUnsignedLongLong(args[0]);
    if (PyErr_Occurred()) return NULL;
    char *head, *body;
    Py_ssize_t head_len, body_len;
    if (PyBytes_AsStringAndSize(args[1], &head, &head_len) || PyBytes_AsStringAndSize(args[2], &body, &body_len)) return NULL;
    int close_after = PyObject_IsTrue(args[3]);
    if (close_after < 0) return NULL;
    if (s->io.stopped || !s->io.started) Py_RETURN_NONE;
    time_t now = time(NULL);
    if (now != date_second) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date_cache, sizeof date_cache, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_second = now;
    }
    char tail[160];
    int tail_len = snprintf(tail, sizeof tail, "%sDate: %s\r\nContent-Length: %zd\r\n\r\n",
                            close_after ? "Connection: close\r\n" : "", date_cache, body_len);
    size_t total = (size_t)head_len + (size_t)tail_len + (size_t)body_len;
    reply_t *r = malloc(sizeof *r + total);
    if (!r) return PyErr_NoMemory();
    r->id = id;
    r->close = close_after;
    r->len = total;
    r->next = NULL;
    memcpy(r->data, head, (size_t)head_len);
    memcpy(r->data + head_len, tail, (size_t)tail_len);
    memcpy(r->data + head_len + tail_len, body, (size_t)body_len);
    core_queue_down(&s->io, (node_t *)r);
    Py_RETURN_NONE;
}

/* Wake the I/O thread for the responses queued since the last flush. Python calls this once per event
 * loop pass, not per response: a batch's answers then cost one wake-up instead of one each. */
static PyObject *Server_flush(Server *s, PyObject *unused) {
    core_flush(&s->io);
    Py_RETURN_NONE;
}

static PyObject *Server_stats(Server *s, PyObject *unused) {
    return Py_BuildValue("{sKsK}", "accepted", s->accepted, "requests", s->requests);
}

static PyMethodDef Server_methods[] = {
    {"take", (PyCFunction)Server_take, METH_NOARGS, "Requests and protocol errors handed up since the last call."},
    {"respond", (PyCFunction)(void (*)(void))Server_respond, METH_FASTCALL, "Queue a response for a connection (sent after flush())."},
    {"flush", (PyCFunction)Server_flush, METH_NOARGS, "Hand the queued responses to the I/O thread."},
    {"notify_fd", (PyCFunction)Server_notify_fd, METH_NOARGS, "eventfd readable when take() has work."},
    {"stop", (PyCFunction)Server_stop, METH_NOARGS, "Close the listening socket and every connection; join the thread."},
    {"stats", (PyCFunction)Server_stats, METH_NOARGS, "Connections accepted and requests parsed so far."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "serving._native_http.Server",
    .tp_basicsize = sizeof(Server),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HTTP/1.1 transport on a native I/O thread (see serving/native_http.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Server_init,
    .tp_dealloc = (destructor)Server_dealloc,
    .tp_methods = Server_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_http", "HTTP/1.1 transport for the REST API on a native thread.", -1, NULL,
};

PyMODINIT_FUNC PyInit__native_http(void) {
    if (PyType_Ready(&ServerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ServerType);
    if (PyModule_AddObject(m, "Server", (PyObject *)&ServerType) < 0) {
        Py_DECREF(&ServerType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "ERR_REQUEST_LINE", ERR_REQUEST_LINE);
    PyModule_AddIntConstant(m, "ERR_HEADER_LINE", ERR_HEADER_LINE);
    PyModule_AddIntConstant(m, "ERR_HEADERS_TOO_LARGE", ERR_HEADERS_TOO_LARGE);
    PyModule_AddIntConstant(m, "ERR_LENGTH_NAN", ERR_LENGTH_NAN);
    PyModule_AddIntConstant(m, "ERR_LENGTH_NEGATIVE", ERR_LENGTH_NEGATIVE);
    PyModule_AddIntConstant(m, "ERR_TOO_LARGE", ERR_TOO_LARGE);
    PyModule_AddIntConstant(m, "ERR_CHUNKED", ERR_CHUNKED);
    PyModule_AddIntConstant(m, "ERR_TIMEOUT", ERR_TIMEOUT);
    PyModule_AddIntConstant(m, "MAX_HEADER_BYTES", MAX_HEADER_BYTES);
    return m;
}
