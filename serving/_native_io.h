/* What the native transports (_native_http.c, _native_grpc.c) share: a growable byte buffer, eventfd
 * wake-ups, the monotonic clock, and the I/O core of both: the listening socket, the epoll set, the two
 * queues between the I/O thread and Python, and the connection slots. Header-only: each extension
 * module is one translation unit. Include after Python.h.
 *
 * The core's queues hold any struct whose first member is its `next` pointer, and its slots any
 * connection struct that starts with `int fd; uint32_t gen;` (conn_head_t): the transport's own types
 * are used through those common first members (the modules build with -fno-strict-aliasing). */
#ifndef ESTEIRA_NATIVE_IO_H
#define ESTEIRA_NATIVE_IO_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static inline int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static inline int buf_append(buf_t *b, const char *data, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

static inline void buf_consume(buf_t *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
}

static inline void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static inline double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* eventfds carry wake-ups only: a failed write means one is already pending, a failed read none was. */
static inline void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

static inline void drain_fd(int fd) {
    uint64_t count;
    ssize_t r = read(fd, &count, sizeof count);
    (void)r;
}

/* ---- the I/O core ------------------------------------------------------------------------------ */

#define TAG_LISTEN UINT64_MAX
#define TAG_WAKE (UINT64_MAX - 1)

typedef struct node {
    struct node *next;
} node_t;

typedef struct {
    int fd;
    uint32_t gen;
} conn_head_t;

typedef struct {
    int opened;                  /* core_open ran: the descriptors are real or -1, the mutex is set up */
    int listen_fd, epoll_fd, wake_fd, notify_fd;
    pthread_t thread;
    int started, stopped;
    int stopping;                /* set by Python, read by the I/O thread: __atomic accesses */
    double accept_paused_until;  /* out of descriptors: accepting resumes after a pause */
    pthread_mutex_t mu;          /* guards the two queues */
    node_t *up_head, *up_tail;   /* requests going up to Python */
    int up_notified;
    node_t *down_head, *down_tail;  /* answers coming down */
    int down_woken;
    /* I/O thread only */
    conn_head_t **conns;
    uint32_t nconns, nfree;
    uint32_t *free_slots;
} io_core_t;

static inline uint64_t conn_id(uint32_t slot, uint32_t gen) { return ((uint64_t)gen << 32) | slot; }

static inline uint32_t conn_slot(uint64_t id) { return (uint32_t)(id & 0xffffffffu); }

/* The open connection an id names, or NULL once it closed (its slot's generation moved on). */
static inline void *core_conn(io_core_t *io, uint64_t id) {
    uint32_t slot = conn_slot(id), gen = (uint32_t)(id >> 32);
    if (slot >= io->nconns) return NULL;
    conn_head_t *c = io->conns[slot];
    return (c && c->fd >= 0 && c->gen == gen) ? c : NULL;
}

/* Duplicate the listening socket and set up epoll and the two eventfds; a Python error on failure. */
static inline int core_open(io_core_t *io, int listen_fd) {
    io->listen_fd = io->epoll_fd = io->wake_fd = io->notify_fd = -1;
    pthread_mutex_init(&io->mu, NULL);
    io->opened = 1;
    io->listen_fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
    if (io->listen_fd < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    fcntl(io->listen_fd, F_SETFL, fcntl(io->listen_fd, F_GETFL) | O_NONBLOCK);
    io->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    io->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    io->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->epoll_fd < 0 || io->wake_fd < 0 || io->notify_fd < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = TAG_LISTEN;
    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->listen_fd, &ev);
    ev.data.u64 = TAG_WAKE;
    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->wake_fd, &ev);
    return 0;
}

static inline int core_start(io_core_t *io, void *(*main)(void *), void *arg) {
    if (pthread_create(&io->thread, NULL, main, arg)) {
        PyErr_SetString(PyExc_OSError, "cannot start the native I/O thread");
        return -1;
    }
    io->started = 1;
    return 0;
}

static inline void core_push_up(io_core_t *io, node_t *n) {
    int notify = 0;
    pthread_mutex_lock(&io->mu);
    n->next = NULL;
    if (io->up_tail) io->up_tail->next = n; else io->up_head = n;
    io->up_tail = n;
    if (!io->up_notified) {
        io->up_notified = 1;
        notify = 1;
    }
    pthread_mutex_unlock(&io->mu);
    if (notify) signal_fd(io->notify_fd);
}

/* Everything handed up since the last call (Python's side). */
static node_t *core_take_up(io_core_t *io) {
    pthread_mutex_lock(&io->mu);
    node_t *n = io->up_head;
    io->up_head = io->up_tail = NULL;
    io->up_notified = 0;
    drain_fd(io->notify_fd);
    pthread_mutex_unlock(&io->mu);
    return n;
}

static inline void core_queue_down(io_core_t *io, node_t *n) {
    n->next = NULL;
    pthread_mutex_lock(&io->mu);
    if (io->down_tail) io->down_tail->next = n; else io->down_head = n;
    io->down_tail = n;
    pthread_mutex_unlock(&io->mu);
}

/* Every answer queued so far (the I/O thread's side). */
static node_t *core_take_down(io_core_t *io) {
    pthread_mutex_lock(&io->mu);
    node_t *n = io->down_head;
    io->down_head = io->down_tail = NULL;
    io->down_woken = 0;
    drain_fd(io->wake_fd);
    pthread_mutex_unlock(&io->mu);
    return n;
}

/* Wake the I/O thread for the answers queued since the last flush. Python calls this once per event loop
 * pass, not per answer: a batch's answers then cost one wake-up instead of one each. */
static inline void core_flush(io_core_t *io) {
    int wake = 0;
    pthread_mutex_lock(&io->mu);
    if (io->down_head && !io->down_woken) {
        io->down_woken = 1;
        wake = 1;
    }
    pthread_mutex_unlock(&io->mu);
    if (wake && !io->stopped) signal_fd(io->wake_fd);
}

/* A zeroed connection of `size` bytes (its generation kept) in a free slot, holding fd; NULL (fd
 * closed) when memory runs out. */
static inline void *core_new_conn(io_core_t *io, int fd, size_t size, uint32_t *slot_out) {
    uint32_t slot;
    if (io->nfree) {
        slot = io->free_slots[--io->nfree];
    } else {
        uint32_t n = io->nconns ? io->nconns * 2 : 64;
        conn_head_t **conns = realloc(io->conns, n * sizeof *conns);
        uint32_t *free_slots = conns ? realloc(io->free_slots, n * sizeof *free_slots) : NULL;
        if (!conns || !free_slots) { if (conns) io->conns = conns; close(fd); return NULL; }
        io->conns = conns;
        io->free_slots = free_slots;
        for (uint32_t i = io->nconns; i < n; i++) io->conns[i] = NULL;
        for (uint32_t i = n; i > io->nconns + 1; i--) io->free_slots[io->nfree++] = i - 1;
        slot = io->nconns;
        io->nconns = n;
    }
    conn_head_t *c = io->conns[slot];
    if (!c) {
        c = io->conns[slot] = calloc(1, size);
        if (!c) { close(fd); io->free_slots[io->nfree++] = slot; return NULL; }
    }
    uint32_t gen = c->gen;
    memset(c, 0, size);
    c->gen = gen;
    c->fd = fd;
    *slot_out = slot;
    return c;
}

/* A closed connection's slot: its generation moves on, so ids naming it find nothing. */
static inline void core_release_slot(io_core_t *io, uint32_t slot) {
    conn_head_t *c = io->conns[slot];
    c->fd = -1;
    c->gen++;
    io->free_slots[io->nfree++] = slot;
}

/* Out of descriptors: the listening socket stays readable, so stop watching it for a moment instead of
 * spinning; pending connections wait in the backlog. */
static inline void core_pause_accept(io_core_t *io) {
    epoll_ctl(io->epoll_fd, EPOLL_CTL_DEL, io->listen_fd, NULL);
    io->accept_paused_until = now_mono() + 0.1;
}

static inline void core_resume_accept(io_core_t *io, double now) {
    if (!io->accept_paused_until || now < io->accept_paused_until) return;
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = TAG_LISTEN;
    epoll_ctl(io->epoll_fd, EPOLL_CTL_ADD, io->listen_fd, &ev);
    io->accept_paused_until = 0;
}

/* Stop and join the I/O thread (it closes its connections on the way out), then free the slots. What is
 * still queued is detached into *up and *down for the caller to free: it knows their item types. */
static inline int core_join(io_core_t *io, node_t **up, node_t **down) {
    *up = *down = NULL;
    if (!io->started || io->stopped) return 0;
    __atomic_store_n(&io->stopping, 1, __ATOMIC_RELEASE);
    signal_fd(io->wake_fd);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(io->thread, NULL);
    Py_END_ALLOW_THREADS
    io->stopped = 1;
    close(io->listen_fd);
    close(io->epoll_fd);
    close(io->wake_fd);
    for (uint32_t i = 0; i < io->nconns; i++) free(io->conns[i]);
    free(io->conns);
    free(io->free_slots);
    io->conns = NULL;
    io->free_slots = NULL;
    io->nconns = io->nfree = 0;
    *up = io->up_head;
    *down = io->down_head;
    io->up_head = io->up_tail = io->down_head = io->down_tail = NULL;
    return 1;
}

/* After core_join (or when the thread never started): the remaining descriptors and the mutex. */
static inline void core_close(io_core_t *io) {
    if (!io->opened) return;
    if (!io->stopped) {  /* never started: only the descriptors to close */
        int fds[] = {io->listen_fd, io->epoll_fd, io->wake_fd};
        for (int i = 0; i < 3; i++) if (fds[i] >= 0) close(fds[i]);
    }
    if (io->notify_fd >= 0) close(io->notify_fd);
    pthread_mutex_destroy(&io->mu);
    io->opened = 0;
}

#endif
