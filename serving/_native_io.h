/* Pieces shared by the native transports (_native_http.c, _native_grpc.c): a growable byte buffer,
 * eventfd wake-ups and the monotonic clock. Header-only: each extension module is one translation unit. */
#ifndef ESTEIRA_NATIVE_IO_H
#define ESTEIRA_NATIVE_IO_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_append(buf_t *b, const char *data, size_t n) {
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

static void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* eventfds carry wake-ups only: a failed write means one is already pending, a failed read none was. */
static void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

static void drain_fd(int fd) {
    uint64_t count;
    ssize_t r = read(fd, &count, sizeof count);
    (void)r;
}

#endif
