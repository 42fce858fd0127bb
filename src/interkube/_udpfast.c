/*
 * interkube._udpfast: batched UDP I/O for the DNS listeners (Linux recvmmsg/sendmmsg).
 *
 * Why C: measured on the project's machines, an asyncio (uvloop) datagram protocol spends about
 * 5 us per packet in the event loop and in two system calls, more than interkube's whole
 * fast-path answer (about 1.5 us in Python). Python cannot call recvmmsg/sendmmsg, which move
 * up to 64 datagrams per system call. This module does that I/O; every query's first answer
 * comes from the Python callback (parse, plugin chain, templates), and an answer the chain
 * marks as a function of the query's bytes (an AnswerMemo, below) is sent again from here
 * while its stamp holds, so behaviour is the same with or without it; interkube falls back to
 * a pure-Python receive loop when it is not built.
 *
 * drain(fd, callback, rounds) reads up to `rounds` batches of datagrams from the non-blocking
 * socket fd; for each it calls callback(data: bytes, addr: tuple) -> bytes | None, and sends
 * every non-empty bytes result back to its sender in one sendmmsg per batch. It returns the
 * number of datagrams read. Datagrams longer than BUFSZ are dropped (a DNS query never is).
 * A receive error other than "nothing more to read" raises OSError (on a connected socket,
 * ECONNREFUSED is the ICMP "port unreachable" for something sent earlier).
 *
 * drain_shed(fd, callback, rounds, keys, backlog, shed_from, limit, memo) reads as drain does, except
 * that while len(backlog) >= shed_from, a datagram whose bytes after the ID are in the set `keys`
 * is not passed to the callback: (data, addr, time.monotonic()) is appended to the deque
 * `backlog`, its oldest entry dropped first when it holds `limit` (>= 1). It returns how many
 * entries were dropped so.
 * With an AnswerMemo as its last argument (else None), drain_shed first looks each datagram up in
 * it, and sends the answers it has without calling the callback (see "Stamp and AnswerMemo").
 * Why in C: under a flood of forwarded names ten times what the upstreams take (the listener's
 * `keys` are the queries its fast path sent to the slow path lately, see
 * interkube.server.listeners.UdpEndpoint), nine datagrams in ten only ever displace an older
 * one in the backlog. Done by the Python callback, that cost about 0.55 us a datagram on top of
 * the 0.85 us that reading it costs (bench/flood_probe.py measures the server's CPU per
 * datagram): here it is a set lookup and two deque calls, and the callback is not called.
 *
 * drain_answers(fd, pending, rounds, ignored) reads as drain does, from a connected socket to an
 * upstream (interkube.upstream.transport): a datagram that is a response (a header, QR set) whose
 * ID is a key of the dict `pending` (ID -> (sink, question, deadline)) and whose question section
 * begins with `question` (bytes; ASCII letter case aside; b"" matches any) takes its entry out of
 * `pending` and goes to sink.set_result(data); an exception of the class `ignored` from that
 * call (a future cancelled meanwhile) is dropped, any other reported as unraisable. Any other
 * datagram is dropped (late, spoofed, or not ours). It returns how many were read.
 * Why in C: that matching, in a Python callback per answer, was a Python frame, a dozen bytecodes
 * and an address tuple per forwarded query (callgrind: about 6% of the Python path's instructions).
 *
 * send_batch(fd, items) sends many datagrams with one sendmmsg per 64: items are bytes (for a
 * connected socket) or (bytes, (host, port, ...)) pairs. It returns how many were sent; it
 * stops early, without raising, when the send buffer is full (UDP may drop), and raises
 * OSError for other errors.
 *
 * merge_plain(wire, question_end, opt, answers, queries, local, types) writes the merge plugin's
 * answer where every cluster answered with the plain shape (see the function below); None
 * otherwise, and the Python code merges (interkube.plugins.merge.combine.merge_answers).
 * Why in C: reading three answers and writing their union was about 40% of a merged query's
 * user-space instructions in Python (callgrind: 125k -> 72k per merged query with it).
 *
 * The GIL: every system call here is non-blocking (MSG_DONTWAIT) and is made with the GIL held.
 * Releasing it around each was two hand-overs of the GIL per call for nothing (callgrind: the
 * GIL's mutex and condition work came to about 1% of a forwarded query's instructions), and
 * while another thread ran Python (a snapshot read in asyncio.to_thread) each release let that
 * thread keep the GIL for up to the switch interval, 5 ms, before the event loop had it back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define BUFSZ 4096
#define ADDR_MEMO_LIMIT 65536

static char bufs[BATCH][BUFSZ];
/* sockaddr bytes -> the (host, port[, flowinfo, scope_id]) tuple Python's socket module uses. */
static PyObject *addr_memo;

static PyObject *
addr_tuple(struct sockaddr_storage *ss, socklen_t len)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)ss, len);
    if (key == NULL)
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(addr_memo, key);
    if (hit != NULL) {
        Py_INCREF(hit);
        Py_DECREF(key);
        return hit;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    char host[INET6_ADDRSTRLEN];
    PyObject *t = NULL;
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        t = Py_BuildValue("(si)", host, (int)ntohs(sin->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        t = Py_BuildValue("(siII)", host, (int)ntohs(sin6->sin6_port),
                          (unsigned int)ntohl(sin6->sin6_flowinfo), (unsigned int)sin6->sin6_scope_id);
    } else {
        t = Py_BuildValue("(si)", "?", 0);
    }
    if (t != NULL) {
        if (PyDict_GET_SIZE(addr_memo) >= ADDR_MEMO_LIMIT)
            PyDict_Clear(addr_memo); /* a flood of sources costs CPU, never memory */
        if (PyDict_SetItem(addr_memo, key, t) < 0)
            PyErr_Clear();
    }
    Py_DECREF(key);
    return t;
}

/* Interned method names (PyInit__udpfast): a call by name without a bound method made per call. */
static PyObject *s_popleft, *s_append;

/* An int argument of a METH_FASTCALL function (what PyArg_Parse's "i" takes): 0, or -1 with an
 * error set. The functions called once or more per event-loop pass take their arguments so:
 * PyArg_ParseTuple, its format string read at every call, was some 600 instructions a call
 * (callgrind), several calls for each query forwarded one at a time. */
static int
int_arg(PyObject *o, int *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "int argument out of range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The arguments' count of a METH_FASTCALL function: 0, or -1 with TypeError set. */
static int
arg_count(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments (%zd given)", name, want, nargs);
    return -1;
}

/* The backlog a shedding drain feeds (see drain_shed); keys == NULL: no shedding. */
struct shed {
    PyObject *keys;     /* set of bytes: the bytes after the ID of queries to shed */
    PyObject *backlog;  /* collections.deque of (data, addr, arrived) */
    Py_ssize_t shed_from, limit;
    long dropped;
};

/* 1: the datagram went to the backlog; 0: the callback is to have it; -1: an error is set. */
static int
shed_one(struct shed *sh, const char *buf, Py_ssize_t len, struct sockaddr_storage *ss, socklen_t alen,
         PyObject **now)
{
    if (len < 12)
        return 0;
    Py_ssize_t waiting = PyObject_Size(sh->backlog);
    if (waiting < 0)
        return -1;
    if (waiting < sh->shed_from)
        return 0;
    PyObject *tail = PyBytes_FromStringAndSize(buf + 2, len - 2);
    if (tail == NULL)
        return -1;
    int hit = PySet_Contains(sh->keys, tail);
    Py_DECREF(tail);
    if (hit <= 0)
        return hit;
    if (*now == NULL) {
        /* One clock reading per batch: the datagrams of a batch arrived together. The clock
         * time.monotonic() reads on Linux, which the listener compares these with. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        *now = PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
        if (*now == NULL)
            return -1;
    }
    PyObject *data = PyBytes_FromStringAndSize(buf, len);
    PyObject *addr = data ? addr_tuple(ss, alen) : NULL;
    PyObject *entry = addr ? PyTuple_Pack(3, data, addr, *now) : NULL;
    Py_XDECREF(data);
    Py_XDECREF(addr);
    if (entry == NULL)
        return -1;
    /* Bytes, an address tuple and a float can be in no reference cycle: left tracked, every
     * collection of the youngest generation would walk the thousands of these waiting. */
    PyObject_GC_UnTrack(entry);
    if (waiting >= sh->limit) {
        PyObject *old = PyObject_CallMethodNoArgs(sh->backlog, s_popleft);
        if (old == NULL) {
            Py_DECREF(entry);
            return -1;
        }
        Py_DECREF(old);
        sh->dropped++;
    }
    PyObject *res = PyObject_CallMethodOneArg(sh->backlog, s_append, entry);
    Py_DECREF(entry);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 1;
}

/* recvmmsg's headers into bufs, with the senders' addresses into rx_addrs (rx_named) or
 * without (rx_plain), made once: a recvmmsg changes only the msg_len, msg_flags, msg_controllen
 * and msg_namelen of what it fills, and the lengths of the addresses are put back before the
 * next (setting up all 64 headers at every call was ~550 instructions, for one datagram read
 * when queries come one at a time). Like bufs, for one batch at a time: a batch is done with
 * before the next recvmmsg, and no callback of a batch reads a socket with these. */
static struct mmsghdr rx_named[BATCH], rx_plain[BATCH];
static struct iovec rx_iov[BATCH];
static struct sockaddr_storage rx_addrs[BATCH];
static int rx_made, rx_named_used;

static struct mmsghdr *
rx_headers(int named)
{
    if (!rx_made) {
        for (int i = 0; i < BATCH; i++) {
            rx_iov[i].iov_base = bufs[i];
            rx_iov[i].iov_len = BUFSZ;
            rx_plain[i].msg_hdr.msg_iov = rx_named[i].msg_hdr.msg_iov = &rx_iov[i];
            rx_plain[i].msg_hdr.msg_iovlen = rx_named[i].msg_hdr.msg_iovlen = 1;
            rx_named[i].msg_hdr.msg_name = &rx_addrs[i];
        }
        rx_made = 1;
        rx_named_used = BATCH;
    }
    if (!named)
        return rx_plain;
    for (int i = 0; i < rx_named_used; i++)
        rx_named[i].msg_hdr.msg_namelen = sizeof rx_addrs[i];
    rx_named_used = 0;
    return rx_named;
}

/* One recvmmsg into bufs: how many datagrams were read, 0 when there is nothing more to read
 * (or the caller is to stop: an error after `total` datagrams, which comes back on the next
 * call), or -1 with OSError set. `named`: the senders' addresses are wanted (in rx_addrs). */
static int
recv_batch(int fd, int named, struct mmsghdr **in, long total)
{
    *in = rx_headers(named);
    /* With the GIL held: see "The GIL" at the top. */
    int n = recvmmsg(fd, *in, BATCH, MSG_DONTWAIT, NULL);
    if (named)
        rx_named_used = n >= 0 ? n : BATCH; /* (after an error: all of them, to be sure) */
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || total > 0)
        return 0;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* ---- Stamp and AnswerMemo: answers from memory sent without the Python callback ------------
 *
 * An AnswerMemo keeps, for the bytes after the ID of a UDP query, the response the Python fast
 * path gave it (everything after the ID), with the Stamp that says how long that answer holds.
 * The drain looks each datagram up before calling the callback: on a hit it sends the query's
 * ID and the kept bytes, and the callback is not called. The Python side puts an answer only
 * where every handler of the chain declared it a function of the query's bytes and of data
 * whose every change revokes the stamp (interkube.server.dispatch; interkube.plugin.handler's
 * memo_safe), so a hit sends what the callback would have.
 *
 * Stamp(parent=None, until=inf, counter=None, slot=0): holds while neither it nor any parent
 * is revoked (revoke()) and the clock (time.monotonic) is before every `until` on the way. A
 * hit adds 1 to counter[slot] (counter: a writable buffer of 64-bit ints, an array('q'), held
 * for the stamp's life) on the way to the root, so that the plugins' own counts (a cache's
 * hits) stay what the callback would have made them. An answer may also be put with a tally,
 * the prometheus plugin's entry for it (an array('d'): count, seconds, query and response
 * bytes), which each hit adds to as that plugin's count of the answer would.
 *
 * Why C: the callback's way to an answer from memory (a bytes object and an address tuple, the
 * call, the query's parse memo, a Request, the dispatcher, the chain, the template) was about
 * 2.5 us of the 8-9 us of CPU an answer costs in all (issue 18, S1-k8s and S2); a hit here is
 * a hash, a compare and a copy.
 *
 * The table has a fixed number of entries (a power of two, in sets of MEMO_WAYS): a key goes to
 * one set, in the place of an empty entry, else of one that no longer holds, else of one at
 * random. Memory stays bounded whatever the queries, and names asked in turn from more names
 * than a set holds still find most of theirs (forgetting the oldest would find none).
 */

#define MEMO_WAYS 4
#define MEMO_KEY_MAX 512 /* a query's bytes after the ID: a name, the question and an OPT with options */

typedef struct StampObject {
    PyObject_HEAD
    struct StampObject *parent;
    double until;
    PyObject *counter;
    Py_buffer view; /* counter's, held while the stamp lives (view.obj NULL: no counter) */
    Py_ssize_t slot;
    int revoked;
    int made;       /* __init__ ran: a second one would bring a revoked stamp back */
} StampObject;

static PyTypeObject StampType;

static int
Stamp_init(StampObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"parent", "until", "counter", "slot", NULL};
    PyObject *parent = Py_None, *counter = Py_None;
    double until = Py_HUGE_VAL;
    Py_ssize_t slot = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OdOn:Stamp", kwlist, &parent, &until, &counter, &slot))
        return -1;
    if (self->made) {
        PyErr_SetString(PyExc_TypeError, "Stamp: already initialised");
        return -1;
    }
    if (parent != Py_None && !PyObject_TypeCheck(parent, &StampType)) {
        PyErr_SetString(PyExc_TypeError, "Stamp: parent must be a Stamp or None");
        return -1;
    }
    if (counter != Py_None) {
        if (PyObject_GetBuffer(counter, &self->view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
            self->view.obj = NULL;
            if (PyErr_ExceptionMatches(PyExc_BufferError)) { /* (read-only bytes): as a wrong type */
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "Stamp: counter must be a writable buffer of 64-bit ints "
                                "(array('q')) with an item at slot");
            }
            return -1;
        }
        const char *f = self->view.format ? self->view.format : "B";
        if (self->view.itemsize != 8 || (strcmp(f, "q") != 0 && strcmp(f, "l") != 0)
            || slot < 0 || slot >= self->view.len / 8) {
            PyBuffer_Release(&self->view);
            self->view.obj = NULL;
            PyErr_SetString(PyExc_ValueError, "Stamp: counter must be a writable buffer of 64-bit ints "
                            "(array('q')) with an item at slot");
            return -1;
        }
    }
    if (parent != Py_None) {
        Py_INCREF(parent);
        self->parent = (StampObject *)parent;
    }
    self->until = until;
    self->slot = slot;
    self->revoked = 0;
    self->made = 1;
    return 0;
}

static void
Stamp_dealloc(StampObject *self)
{
    if (self->view.obj != NULL)
        PyBuffer_Release(&self->view);
    Py_XDECREF(self->parent);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Whether the stamp holds at `now` (see above). */
static inline int
stamp_holds(const StampObject *s, double now)
{
    for (; s != NULL; s = s->parent)
        if (s->revoked || now >= s->until)
            return 0;
    return 1;
}

static double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static PyObject *
Stamp_revoke(StampObject *self, PyObject *unused)
{
    self->revoked = 1;
    Py_RETURN_NONE;
}

static PyObject *
Stamp_live(StampObject *self, void *closure)
{
    return PyBool_FromLong(stamp_holds(self, monotonic_now()));
}

static PyObject *
Stamp_until(StampObject *self, void *closure)
{
    return PyFloat_FromDouble(self->until);
}

static PyMethodDef Stamp_methods[] = {
    {"revoke", (PyCFunction)Stamp_revoke, METH_NOARGS,
     "revoke(): from now on no answer put with this stamp (or a stamp below it) is sent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Stamp_getset[] = {
    {"live", (getter)Stamp_live, NULL, "Whether answers put with this stamp are sent now.", NULL},
    {"until", (getter)Stamp_until, NULL, "The time.monotonic() from which this stamp no longer holds.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StampType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "interkube._udpfast.Stamp",
    .tp_basicsize = sizeof(StampObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stamp(parent=None, until=inf, counter=None, slot=0): how long answers put in an "
              "AnswerMemo with it hold (see the module's source).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Stamp_init,
    .tp_dealloc = (destructor)Stamp_dealloc,
    .tp_methods = Stamp_methods,
    .tp_getset = Stamp_getset,
};

struct memo_entry {
    unsigned long long hash;
    unsigned char *blob;         /* key (klen bytes) then response after its ID (rlen bytes); NULL: empty */
    StampObject *stamp;
    PyObject *tally;             /* NULL, or a writable buffer of doubles: count, seconds, query and answer bytes */
    unsigned short klen, rlen;
};

typedef struct {
    PyObject_HEAD
    struct memo_entry *entries;
    Py_ssize_t capacity;         /* entries: a power of two, at least MEMO_WAYS */
    Py_ssize_t used;             /* entries holding a blob */
    unsigned long long hits;
    unsigned long long rng;      /* xorshift state: which way a full set gives up */
} AnswerMemoObject;

static PyTypeObject AnswerMemoType;

/* A 64-bit hash of the key, 8 bytes a step (FNV-1a a byte a step was a third of a hit's time). */
static inline unsigned long long
memo_hash(const unsigned char *p, Py_ssize_t n)
{
    unsigned long long h = 0x9E3779B97F4A7C15ULL ^ (unsigned long long)n;
    while (n >= 8) {
        unsigned long long w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    unsigned long long w = 0;
    memcpy(&w, p, (size_t)n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    return h;
}

static void
memo_forget(AnswerMemoObject *m, struct memo_entry *e)
{
    if (e->blob == NULL)
        return;
    free(e->blob);
    e->blob = NULL;
    StampObject *s = e->stamp;
    PyObject *tally = e->tally;
    e->stamp = NULL;
    e->tally = NULL;
    m->used--;
    /* (last: a stamp's dealloc releases a buffer, and runs no Python code; a tally is an array) */
    Py_DECREF(s);
    Py_XDECREF(tally);
}

/* The entry holding the answer to key at `now`, or NULL (one found that no longer holds is
 * forgotten on the way). */
static struct memo_entry *
memo_find(AnswerMemoObject *m, const unsigned char *key, Py_ssize_t klen, double now)
{
    if (klen > MEMO_KEY_MAX || m->entries == NULL)
        return NULL;
    unsigned long long h = memo_hash(key, klen);
    struct memo_entry *set = m->entries + ((h & (unsigned long long)(m->capacity / MEMO_WAYS - 1)) * MEMO_WAYS);
    for (int w = 0; w < MEMO_WAYS; w++) {
        struct memo_entry *e = &set[w];
        if (e->blob != NULL && e->hash == h && e->klen == klen && memcmp(e->blob, key, (size_t)klen) == 0) {
            if (stamp_holds(e->stamp, now))
                return e;
            memo_forget(m, e);
            return NULL;
        }
    }
    return NULL;
}

/* A tally's buffer: 1 with `view` filled (to release) where `o` is a writable buffer of four
 * doubles or more, else 0 with an error set. */
static int
tally_view(PyObject *o, Py_buffer *view)
{
    if (PyObject_GetBuffer(o, view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) { /* (read-only bytes): the same error as a wrong type */
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "tally must be a writable buffer of 4 doubles or more (array('d'))");
        }
        return 0;
    }
    if (view->itemsize == 8 && view->format != NULL && strcmp(view->format, "d") == 0 && view->len >= 32)
        return 1;
    PyBuffer_Release(view);
    PyErr_SetString(PyExc_ValueError, "tally must be a writable buffer of 4 doubles or more (array('d'))");
    return 0;
}

/* A hit: `out` gets the query's ID and the kept response (returns its length); the stamps'
 * counters get their count, and the tally (the prometheus plugin's entry) the answer, taken
 * `seconds` since its datagram was read. */
static Py_ssize_t
memo_answer(AnswerMemoObject *m, struct memo_entry *e, const char *query, char *out, double seconds)
{
    out[0] = query[0];
    out[1] = query[1];
    memcpy(out + 2, e->blob + e->klen, e->rlen);
    for (StampObject *s = e->stamp; s != NULL; s = s->parent)
        if (s->view.obj != NULL)
            ((long long *)s->view.buf)[s->slot] += 1;
    if (e->tally != NULL) {
        Py_buffer view;
        if (tally_view(e->tally, &view)) {
            double *t = (double *)view.buf;
            t[0] += 1;
            t[1] += seconds;
            t[2] += (double)(2 + e->klen);
            t[3] += (double)(2 + e->rlen);
            PyBuffer_Release(&view);
        } else {
            PyErr_Clear(); /* (checked when put: an array does not change its type) */
        }
    }
    m->hits++;
    return 2 + (Py_ssize_t)e->rlen;
}

static void
memo_clear(AnswerMemoObject *m)
{
    for (Py_ssize_t i = 0; i < m->capacity; i++)
        memo_forget(m, &m->entries[i]);
}

static int
memo_alloc(AnswerMemoObject *m, Py_ssize_t capacity)
{
    Py_ssize_t c = MEMO_WAYS;
    while (c < capacity && c < ((Py_ssize_t)1 << 24))
        c <<= 1;
    struct memo_entry *entries = PyMem_Calloc((size_t)c, sizeof *entries);
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (m->entries != NULL) {
        memo_clear(m);
        PyMem_Free(m->entries);
    }
    m->entries = entries;
    m->capacity = c;
    m->used = 0;
    if (m->rng == 0)
        m->rng = 0x9E3779B97F4A7C15ULL;
    return 0;
}

static int
AnswerMemo_init(AnswerMemoObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", NULL};
    Py_ssize_t capacity;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:AnswerMemo", kwlist, &capacity))
        return -1;
    return memo_alloc(self, capacity);
}

static void
AnswerMemo_dealloc(AnswerMemoObject *self)
{
    if (self->entries != NULL) {
        memo_clear(self);
        PyMem_Free(self->entries);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
AnswerMemo_put(AnswerMemoObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 4 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])
        || !PyObject_TypeCheck(args[2], &StampType)) {
        PyErr_SetString(PyExc_TypeError, "put(query: bytes, response: bytes, stamp: Stamp, tally=None)");
        return NULL;
    }
    PyObject *tally = nargs == 4 && args[3] != Py_None ? args[3] : NULL;
    if (tally != NULL) {
        Py_buffer view;
        if (!tally_view(tally, &view))
            return NULL;
        PyBuffer_Release(&view);
    }
    Py_ssize_t qlen = PyBytes_GET_SIZE(args[0]), rlen = PyBytes_GET_SIZE(args[1]);
    StampObject *stamp = (StampObject *)args[2];
    /* Kept: a query of a header and more, a response of a header and more that fits a datagram
     * the drain sends, and a stamp that holds now. */
    if (self->entries == NULL || qlen < 13 || qlen - 2 > MEMO_KEY_MAX || rlen < 12 || rlen > BUFSZ || !stamp_holds(stamp, monotonic_now()))
        Py_RETURN_FALSE;
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[0]) + 2;
    Py_ssize_t klen = qlen - 2;
    unsigned long long h = memo_hash(key, klen);
    struct memo_entry *set = self->entries + ((h & (unsigned long long)(self->capacity / MEMO_WAYS - 1)) * MEMO_WAYS);
    struct memo_entry *into = NULL;
    for (int w = 0; w < MEMO_WAYS && into == NULL; w++) {
        struct memo_entry *e = &set[w];
        if (e->blob != NULL && e->hash == h && e->klen == klen && memcmp(e->blob, key, (size_t)klen) == 0)
            into = e; /* the same question: its new answer replaces the old */
    }
    for (int w = 0; w < MEMO_WAYS && into == NULL; w++)
        if (set[w].blob == NULL)
            into = &set[w];
    double now = into == NULL ? monotonic_now() : 0.0;
    for (int w = 0; w < MEMO_WAYS && into == NULL; w++)
        if (!stamp_holds(set[w].stamp, now))
            into = &set[w];
    if (into == NULL) {
        /* A way at random (xorshift): the oldest would make names asked in turn, more than a
         * set holds, push each other out before each comes back (none would ever be found). */
        self->rng ^= self->rng << 13;
        self->rng ^= self->rng >> 7;
        self->rng ^= self->rng << 17;
        into = &set[self->rng % MEMO_WAYS];
    }
    unsigned char *blob = malloc((size_t)(klen + rlen - 2));
    if (blob == NULL)
        return PyErr_NoMemory();
    memcpy(blob, key, (size_t)klen);
    memcpy(blob + klen, PyBytes_AS_STRING(args[1]) + 2, (size_t)(rlen - 2));
    memo_forget(self, into);
    Py_INCREF(stamp);
    Py_XINCREF(tally);
    into->blob = blob;
    into->stamp = stamp;
    into->tally = tally;
    into->hash = h;
    into->klen = (unsigned short)klen;
    into->rlen = (unsigned short)(rlen - 2);
    self->used++;
    Py_RETURN_TRUE;
}

static PyObject *
AnswerMemo_get(AnswerMemoObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "get(query: bytes)");
        return NULL;
    }
    Py_ssize_t qlen = PyBytes_GET_SIZE(arg);
    if (qlen < 13)
        Py_RETURN_NONE;
    const char *q = PyBytes_AS_STRING(arg);
    struct memo_entry *e = memo_find(self, (const unsigned char *)q + 2, qlen - 2, monotonic_now());
    if (e == NULL)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 2 + (Py_ssize_t)e->rlen);
    if (out != NULL)
        memo_answer(self, e, q, PyBytes_AS_STRING(out), 0.0);
    return out;
}

static PyObject *
AnswerMemo_clear(AnswerMemoObject *self, PyObject *unused)
{
    memo_clear(self);
    Py_RETURN_NONE;
}

static PyObject *
AnswerMemo_resize(AnswerMemoObject *self, PyObject *arg)
{
    Py_ssize_t capacity = PyLong_AsSsize_t(arg);
    if (capacity == -1 && PyErr_Occurred())
        return NULL;
    if (memo_alloc(self, capacity) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static Py_ssize_t
AnswerMemo_len(AnswerMemoObject *self)
{
    return self->used;
}

static PyObject *
AnswerMemo_get_capacity(AnswerMemoObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->capacity);
}

static PyObject *
AnswerMemo_get_hits(AnswerMemoObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->hits);
}

static PyMethodDef AnswerMemo_methods[] = {
    {"put", (PyCFunction)(void (*)(void))AnswerMemo_put, METH_FASTCALL,
     "put(query, response, stamp, tally=None) -> bool: send response (with each query's ID) to the "
     "queries with query's bytes after the ID while stamp holds, adding each to tally (an array('d'): "
     "count, seconds, query and response bytes); False: not kept (too long, or the stamp does not hold)."},
    {"get", (PyCFunction)AnswerMemo_get, METH_O,
     "get(query) -> bytes | None: what a drain would send for query now (counted as a hit)."},
    {"clear", (PyCFunction)AnswerMemo_clear, METH_NOARGS, "clear(): forget every answer."},
    {"resize", (PyCFunction)AnswerMemo_resize, METH_O,
     "resize(capacity): forget every answer and hold up to capacity (rounded up to a power of two)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef AnswerMemo_getset[] = {
    {"capacity", (getter)AnswerMemo_get_capacity, NULL, "Entries the table has.", NULL},
    {"hits", (getter)AnswerMemo_get_hits, NULL, "Answers sent from the table.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods AnswerMemo_as_sequence = {
    .sq_length = (lenfunc)AnswerMemo_len,
};

static PyTypeObject AnswerMemoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "interkube._udpfast.AnswerMemo",
    .tp_basicsize = sizeof(AnswerMemoObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AnswerMemo(capacity): answers from memory the UDP drain sends itself (see the module's source).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)AnswerMemo_init,
    .tp_dealloc = (destructor)AnswerMemo_dealloc,
    .tp_methods = AnswerMemo_methods,
    .tp_getset = AnswerMemo_getset,
    .tp_as_sequence = &AnswerMemo_as_sequence,
};

/* Answers the drain sends from an AnswerMemo: a batch's are copied here (the table may change
 * in a callback later in the batch). */
static char txbufs[BATCH][BUFSZ];

static PyObject *
drain_impl(int fd, PyObject *callback, int rounds, struct shed *sh, AnswerMemoObject *memo)
{
    struct mmsghdr *in, out[BATCH];
    struct iovec out_iov[BATCH];
    struct sockaddr_storage *addrs = rx_addrs;
    PyObject *keep[BATCH];
    long total = 0;

    for (int round = 0; round < rounds; round++) {
        int n = recv_batch(fd, 1, &in, total);
        if (n < 0)
            return NULL;
        if (n == 0)
            break;
        total += n;

        int k = 0;
        PyObject *now = NULL;
        /* One clock reading per batch for the memo too (its stamps' `until`). */
        double memo_now = memo != NULL && memo->used > 0 ? monotonic_now() : 0.0;
        for (int i = 0; i < n; i++) {
            if (in[i].msg_hdr.msg_flags & MSG_TRUNC)
                continue;
            if (memo_now > 0.0 && in[i].msg_len >= 13 && !(bufs[i][2] & 0x80)) {
                struct memo_entry *e = memo_find(memo, (const unsigned char *)bufs[i] + 2, in[i].msg_len - 2, memo_now);
                if (e != NULL) {
                    out_iov[k].iov_base = txbufs[i];
                    double taken = e->tally != NULL ? monotonic_now() - memo_now : 0.0;
                    out_iov[k].iov_len = (size_t)memo_answer(memo, e, bufs[i], txbufs[i], taken);
                    keep[k] = NULL;
                    memset(&out[k].msg_hdr, 0, sizeof out[k].msg_hdr);
                    out[k].msg_hdr.msg_name = &addrs[i];
                    out[k].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
                    out[k].msg_hdr.msg_iov = &out_iov[k];
                    out[k].msg_hdr.msg_iovlen = 1;
                    k++;
                    continue;
                }
            }
            if (sh != NULL) {
                int done = shed_one(sh, bufs[i], in[i].msg_len, &addrs[i], in[i].msg_hdr.msg_namelen, &now);
                if (done < 0) {
                    PyErr_WriteUnraisable(sh->backlog); /* as a callback's error: go on with the batch */
                    done = 0;
                }
                if (done)
                    continue;
            }
            PyObject *data = PyBytes_FromStringAndSize(bufs[i], in[i].msg_len);
            PyObject *addr = data ? addr_tuple(&addrs[i], in[i].msg_hdr.msg_namelen) : NULL;
            PyObject *res = NULL;
            if (addr != NULL)
                res = PyObject_CallFunctionObjArgs(callback, data, addr, NULL);
            Py_XDECREF(data);
            Py_XDECREF(addr);
            if (res == NULL) {
                /* The callback must not raise; if it does, report it and go on with the batch. */
                PyErr_WriteUnraisable(callback);
                continue;
            }
            if (PyBytes_Check(res) && PyBytes_GET_SIZE(res) > 0) {
                keep[k] = res;
                out_iov[k].iov_base = PyBytes_AS_STRING(res);
                out_iov[k].iov_len = (size_t)PyBytes_GET_SIZE(res);
                memset(&out[k].msg_hdr, 0, sizeof out[k].msg_hdr);
                out[k].msg_hdr.msg_name = &addrs[i];
                out[k].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
                out[k].msg_hdr.msg_iov = &out_iov[k];
                out[k].msg_hdr.msg_iovlen = 1;
                k++;
            } else {
                Py_DECREF(res);
            }
        }
        int sent = 0;
        while (sent < k) {
            int m = sendmmsg(fd, out + sent, (unsigned int)(k - sent), MSG_DONTWAIT);
            if (m < 0) {
                if (errno == EINTR)
                    continue;
                /* A full send buffer or an address the kernel refuses: drop that one answer, as
                 * a UDP server must, and keep going with the rest. */
                sent += 1;
                continue;
            }
            sent += m;
        }
        for (int j = 0; j < k; j++)
            Py_XDECREF(keep[j]);
        Py_XDECREF(now);
        if (n < BATCH)
            break;
    }
    return PyLong_FromLong(total);
}

static PyObject *
drain(PyObject *self, PyObject *args)
{
    int fd, rounds = 4;
    PyObject *callback;
    if (!PyArg_ParseTuple(args, "iO|i:drain", &fd, &callback, &rounds))
        return NULL;
    return drain_impl(fd, callback, rounds, NULL, NULL);
}

static PyObject *
drain_shed(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, rounds;
    struct shed sh = {NULL, NULL, 0, 0, 0};
    if (arg_count("drain_shed", nargs, 8) < 0 || int_arg(args[0], &fd) < 0 || int_arg(args[2], &rounds) < 0)
        return NULL;
    AnswerMemoObject *memo = NULL;
    if (args[7] != Py_None) {
        if (!PyObject_TypeCheck(args[7], &AnswerMemoType)) {
            PyErr_SetString(PyExc_TypeError, "drain_shed: memo must be an AnswerMemo or None");
            return NULL;
        }
        memo = (AnswerMemoObject *)args[7];
    }
    PyObject *callback = args[1];
    sh.keys = args[3];
    sh.backlog = args[4];
    if (!PySet_Check(sh.keys)) {
        PyErr_SetString(PyExc_TypeError, "drain_shed: keys must be a set");
        return NULL;
    }
    if ((sh.shed_from = PyLong_AsSsize_t(args[5])) == -1 && PyErr_Occurred())
        return NULL;
    if ((sh.limit = PyLong_AsSsize_t(args[6])) == -1 && PyErr_Occurred())
        return NULL;
    if (sh.shed_from < 1)
        sh.shed_from = 1;
    PyObject *read;
    if (sh.limit < 1) { /* no backlog to shed into: a plain drain */
        read = drain_impl(fd, callback, rounds, NULL, memo);
        if (read == NULL)
            return NULL;
        Py_DECREF(read);
        return PyLong_FromLong(0);
    }
    read = drain_impl(fd, callback, rounds, &sh, memo);
    if (read == NULL)
        return NULL;
    Py_DECREF(read);
    return PyLong_FromLong(sh.dropped);
}

static PyObject *s_set_result;

/* Whether the question section at q (n bytes) begins with want (wn bytes), ASCII case aside. */
static int
same_question(const unsigned char *q, Py_ssize_t n, const unsigned char *want, Py_ssize_t wn)
{
    if (n < wn)
        return 0;
    for (Py_ssize_t j = 0; j < wn; j++) {
        unsigned char a = q[j], b = want[j];
        if (a == b)
            continue;
        if (a >= 'A' && a <= 'Z')
            a += 'a' - 'A';
        if (b >= 'A' && b <= 'Z')
            b += 'a' - 'A';
        if (a != b)
            return 0;
    }
    return 1;
}

/* One datagram read by drain_answers: to its entry's sink, if it answers one. */
static void
answer_one(const unsigned char *buf, Py_ssize_t len, PyObject *pending, PyObject *ignored)
{
    if (len < 12 || !(buf[2] & 0x80))
        return;
    PyObject *key = PyLong_FromLong(((long)buf[0] << 8) | buf[1]);
    if (key == NULL) {
        PyErr_WriteUnraisable(pending);
        return;
    }
    PyObject *entry = PyDict_GetItemWithError(pending, key); /* borrowed */
    if (entry == NULL || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 2
        || !PyBytes_Check(PyTuple_GET_ITEM(entry, 1))) {
        if (PyErr_Occurred())
            PyErr_WriteUnraisable(pending);
        Py_DECREF(key);
        return; /* late, or not ours */
    }
    PyObject *question = PyTuple_GET_ITEM(entry, 1);
    if (!same_question(buf + 12, len - 12, (const unsigned char *)PyBytes_AS_STRING(question),
                       PyBytes_GET_SIZE(question))) {
        Py_DECREF(key);
        return; /* right ID, wrong question: a spoof or a confused upstream; the query waits on */
    }
    Py_INCREF(entry);
    int gone = PyDict_DelItem(pending, key);
    Py_DECREF(key);
    if (gone < 0) {
        PyErr_WriteUnraisable(pending);
        Py_DECREF(entry);
        return;
    }
    PyObject *sink = PyTuple_GET_ITEM(entry, 0);
    PyObject *data = PyBytes_FromStringAndSize((const char *)buf, len);
    PyObject *res = data ? PyObject_CallMethodOneArg(sink, s_set_result, data) : NULL;
    Py_XDECREF(data);
    if (res != NULL)
        Py_DECREF(res);
    else if (PyErr_ExceptionMatches(ignored))
        PyErr_Clear();
    else
        PyErr_WriteUnraisable(sink);
    Py_DECREF(entry);
}

static PyObject *
drain_answers(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, rounds;
    if (arg_count("drain_answers", nargs, 4) < 0 || int_arg(args[0], &fd) < 0 || int_arg(args[2], &rounds) < 0)
        return NULL;
    PyObject *pending = args[1], *ignored = args[3];
    if (!PyDict_Check(pending)) {
        PyErr_SetString(PyExc_TypeError, "drain_answers: pending must be a dict");
        return NULL;
    }
    struct mmsghdr *in;
    long total = 0;
    for (int round = 0; round < rounds; round++) {
        int n = recv_batch(fd, 0, &in, total);
        if (n < 0)
            return NULL;
        if (n == 0)
            break;
        total += n;
        /* Each answer out of the batch's buffers before the next recvmmsg reuses them (a sink
         * may hold the bytes, never the buffer: they are copied). */
        for (int i = 0; i < n; i++) {
            if (!(in[i].msg_hdr.msg_flags & MSG_TRUNC))
                answer_one((const unsigned char *)bufs[i], in[i].msg_len, pending, ignored);
        }
        if (n < BATCH)
            break;
    }
    return PyLong_FromLong(total);
}

/* Fill a sockaddr from Python's (host, port[, flowinfo, scope_id]) tuple. */
static int
sockaddr_from(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    if (!PyArg_ParseTuple(addr, "si|II", &host, &port, &flowinfo, &scope_id))
        return -1;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        *len = sizeof *sin;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        sin6->sin6_flowinfo = htonl(flowinfo);
        sin6->sin6_scope_id = scope_id;
        *len = sizeof *sin6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
    return -1;
}

/* The addresses send_batch read lately, by identity (see sockaddr_memo). */
#define SEND_MEMO 64
static PyObject *send_memo_obj[SEND_MEMO];
static struct sockaddr_storage send_memo_ss[SEND_MEMO];
static socklen_t send_memo_len[SEND_MEMO];

/* sockaddr_from, remembered by the tuple's identity. Answers go to the tuples drain made (one
 * object per client address, addr_memo's), so most are found here without parsing the host and
 * port again (callgrind: 2% of the instructions of a forwarded query). A remembered tuple is
 * held, so that its memory cannot become another tuple's; a tuple of str and ints cannot change. */
static int
sockaddr_memo(PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!PyTuple_CheckExact(addr))
        return sockaddr_from(addr, ss, len);
    size_t slot = ((uintptr_t)addr >> 4) % SEND_MEMO;
    if (send_memo_obj[slot] == addr) {
        *len = send_memo_len[slot];
        memcpy(ss, &send_memo_ss[slot], *len);
        return 0;
    }
    if (sockaddr_from(addr, ss, len) < 0)
        return -1;
    Py_INCREF(addr);
    Py_XSETREF(send_memo_obj[slot], addr);
    memcpy(&send_memo_ss[slot], ss, *len);
    send_memo_len[slot] = *len;
    return 0;
}

static PyObject *
send_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (arg_count("send_batch", nargs, 2) < 0 || int_arg(args[0], &fd) < 0)
        return NULL;
    PyObject *items = args[1];
    if (!PyList_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "send_batch: items must be a list");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    struct mmsghdr out[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage addrs[BATCH];
    long sent = 0;
    for (Py_ssize_t start = 0; start < count; start += BATCH) {
        int k = 0;
        for (Py_ssize_t i = start; i < count && k < BATCH; i++, k++) {
            PyObject *item = PyList_GET_ITEM(items, i);
            PyObject *data = item;
            memset(&out[k].msg_hdr, 0, sizeof out[k].msg_hdr);
            if (PyTuple_Check(item)) {
                if (PyTuple_GET_SIZE(item) != 2) {
                    PyErr_SetString(PyExc_TypeError, "send_batch: items are bytes or (bytes, address)");
                    return NULL;
                }
                data = PyTuple_GET_ITEM(item, 0);
                socklen_t alen;
                if (sockaddr_memo(PyTuple_GET_ITEM(item, 1), &addrs[k], &alen) < 0)
                    return NULL;
                out[k].msg_hdr.msg_name = &addrs[k];
                out[k].msg_hdr.msg_namelen = alen;
            }
            if (!PyBytes_Check(data)) {
                PyErr_SetString(PyExc_TypeError, "send_batch: data must be bytes");
                return NULL;
            }
            iov[k].iov_base = PyBytes_AS_STRING(data);
            iov[k].iov_len = (size_t)PyBytes_GET_SIZE(data);
            out[k].msg_hdr.msg_iov = &iov[k];
            out[k].msg_hdr.msg_iovlen = 1;
        }
        int done = 0;
        while (done < k) {
            int m = sendmmsg(fd, out + done, (unsigned int)(k - done), MSG_DONTWAIT);
            if (m < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return PyLong_FromLong(sent + done);
                if (sent + done == 0)
                    return PyErr_SetFromErrno(PyExc_OSError);
                return PyLong_FromLong(sent + done);
            }
            done += m;
        }
        sent += done;
    }
    return PyLong_FromLong(sent);
}

/*
 * tally(by_route, plugins, req, resp) -> bool: the prometheus plugin's per-answer count.
 *
 * Why C: in Python the dozen small steps (clock, label slots, an integer key, a dict lookup, four
 * additions) cost about 1 us per answer, 16% of the fast path's QPS end to end (measured with
 * bench/metrics_overhead.py) against a 10% budget. The key layout and the entries (array('d')
 * of count, seconds, request bytes, response bytes) are interkube.plugins.prometheus.store's;
 * this returns False, counting nothing, whenever that code must run instead (a route, plugin
 * or key seen for the first time).
 */
static unsigned char type_slot[65536];
static unsigned char size_bucket[65536];
static double duration_bounds[64];
static int n_duration_bounds = 0;
static PyObject *s_route, *s_answered_by, *s_query, *s_qtype, *s_proto, *s_client, *s_wire, *s_started;

static PyObject *
tally_setup(PyObject *self, PyObject *args)
{
    Py_buffer types, sizes;
    PyObject *bounds;
    if (!PyArg_ParseTuple(args, "y*y*O!:tally_setup", &types, &sizes, &PyTuple_Type, &bounds))
        return NULL;
    int ok = types.len == 65536 && sizes.len == 65536 && PyTuple_GET_SIZE(bounds) <= 64;
    if (ok) {
        memcpy(type_slot, types.buf, 65536);
        memcpy(size_bucket, sizes.buf, 65536);
        n_duration_bounds = (int)PyTuple_GET_SIZE(bounds);
        for (int i = 0; i < n_duration_bounds; i++)
            duration_bounds[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
    }
    PyBuffer_Release(&types);
    PyBuffer_Release(&sizes);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "tally_setup: tables must be 65536 bytes, bounds at most 64");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tally(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "tally(by_route: dict, plugins: dict, req, resp: bytes)");
        return NULL;
    }
    if (n_duration_bounds == 0)
        Py_RETURN_FALSE;
    PyObject *req = args[2], *resp = args[3];
    PyObject *route = NULL, *answered = NULL, *query = NULL, *qtype_o = NULL, *proto = NULL;
    PyObject *client = NULL, *wire = NULL, *started = NULL, *result = Py_False;
    if (!(route = PyObject_GetAttr(req, s_route)) || !(answered = PyObject_GetAttr(req, s_answered_by))
        || !(query = PyObject_GetAttr(req, s_query)) || !(qtype_o = PyObject_GetAttr(query, s_qtype))
        || !(proto = PyObject_GetAttr(req, s_proto)) || !(client = PyObject_GetAttr(req, s_client))
        || !(wire = PyObject_GetAttr(req, s_wire)) || !(started = PyObject_GetAttr(req, s_started))) {
        result = NULL;
        goto done;
    }
    PyObject *counts = PyDict_GetItemWithError(args[0], route);
    PyObject *plugin_o = counts ? PyDict_GetItemWithError(args[1], answered) : NULL;
    if (plugin_o == NULL || !PyBytes_Check(wire) || !PyTuple_Check(client))
        goto done; /* first sighting, or an error: the Python code takes over */
    long qtype = PyLong_AsLong(qtype_o), plugin = PyLong_AsLong(plugin_o);
    long proto_idx;
    if (PyUnicode_CompareWithASCIIString(proto, "udp") == 0)
        proto_idx = 0;
    else if (PyUnicode_CompareWithASCIIString(proto, "tcp") == 0)
        proto_idx = 1;
    else
        proto_idx = 2;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double d = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - PyFloat_AsDouble(started);
    int db = 0;
    while (db < n_duration_bounds && d > duration_bounds[db])
        db++;
    Py_ssize_t lw = PyBytes_GET_SIZE(wire), lr = PyBytes_GET_SIZE(resp);
    if (lr < 4 || qtype < 0 || qtype > 65535 || lw > 65535 || lr > 65535 || PyErr_Occurred()) {
        PyErr_Clear();
        goto done;
    }
    unsigned long long key = ((unsigned long long)type_slot[qtype] << 40)
        | ((unsigned long long)(((unsigned char)PyBytes_AS_STRING(resp)[3]) & 0x0F) << 32)
        | ((unsigned long long)plugin << 24) | ((unsigned long long)proto_idx << 22)
        | ((unsigned long long)(PyTuple_GET_SIZE(client) == 4) << 21)
        | ((unsigned long long)size_bucket[lw] << 16) | ((unsigned long long)size_bucket[lr] << 8)
        | (unsigned long long)db;
    PyObject *k = PyLong_FromUnsignedLongLong(key);
    if (k == NULL) {
        result = NULL;
        goto done;
    }
    PyObject *entry = PyDict_GetItemWithError(counts, k);
    Py_DECREF(k);
    if (entry == NULL)
        goto done;
    Py_buffer view;
    if (PyObject_GetBuffer(entry, &view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        goto done;
    }
    if (view.len >= (Py_ssize_t)(4 * sizeof(double))) {
        double *e = (double *)view.buf;
        e[0] += 1;
        e[1] += d;
        e[2] += (double)lw;
        e[3] += (double)lr;
        result = Py_True;
    }
    PyBuffer_Release(&view);
done:
    Py_XDECREF(route);
    Py_XDECREF(answered);
    Py_XDECREF(query);
    Py_XDECREF(qtype_o);
    Py_XDECREF(proto);
    Py_XDECREF(client);
    Py_XDECREF(wire);
    Py_XDECREF(started);
    if (result == NULL)
        return NULL;
    Py_INCREF(result);
    return result;
}

/* ---- merge_plain: the merge plugin's union of plain answers -------------------------------
 *
 * merge_plain(wire, question_end, opt, answers, queries, local, types) -> bytes | None: the
 * response combine.merge_answers writes from plain answers, to the same bytes. `wire` is the
 * client's query and `question_end` where its question ends; `answers[i]` is cluster i's answer
 * (bytes) to the question `queries[i][1]` (lower-cased wire); `opt` the response's OPT record (b""
 * for none); `local` the index of the local cluster under policy local-first, else -1; `types`
 * is records.plain_type_table(). Every answer must be bytes of the plain shape (as
 * interkube.dns.records.read_plain_answer takes them), NOERROR or NXDOMAIN, and some NOERROR one
 * must have records: then the response is the client's ID, QR and AA and the client's RD, its
 * question, and the union of the NOERROR answers' records (of the local cluster's alone if it has
 * some), each RRset (type and class) with the smallest TTL given for it, each record (RDLENGTH
 * and rdata) once, in the order first seen, owned by a pointer to the question name; then `opt`.
 * Anything else (a failure, a negative answer, another shape, more than MERGE_MAX_RECORDS
 * records in all) returns None.
 */

/* The records merged here at most, all answers together: records are compared pairwise (fine for
 * the few an address question gets; the Python code's dicts take the rest, and the clusters). */
#define MERGE_MAX_RECORDS 64

struct plain_record {
    const unsigned char *tc;   /* type and class, 4 bytes as sent */
    unsigned long ttl;
    const unsigned char *rdata; /* RDLENGTH and rdata, as sent */
    Py_ssize_t rdata_len;       /* 2 + RDLENGTH */
    int set;                    /* index of its RRset (type and class) */
};

static inline unsigned
u16_at(const unsigned char *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}

/* read_plain_answer (interkube.dns.records) in C: 1 and the records appended at recs[*count...]
 * with *rcode set where `w` is of the plain shape for the lower-cased question `q`; 0 for any
 * other message, and where more than `room` records would be taken. The same checks, in the same
 * terms: types[rtype] is 255 for a type that is not plain, else the fixed RDLENGTH of class IN
 * (0: any). */
static int
read_plain(const unsigned char *w, Py_ssize_t n, const unsigned char *q, Py_ssize_t qlen,
           const unsigned char *types, struct plain_record *recs, int room, int *count, unsigned *rcode)
{
    if (qlen < 5 || n < 12)
        return 0;
    unsigned an = u16_at(w + 6), ar = u16_at(w + 10);
    if (u16_at(w + 4) != 1 || u16_at(w + 8) != 0 || ar > 1)
        return 0;
    Py_ssize_t off = 12 + qlen;
    if (off > n)
        return 0;
    for (Py_ssize_t i = 0; i < qlen; i++) {
        unsigned char c = w[12 + i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != q[i])
            return 0;
    }
    if ((int)an > room - *count)
        return 0;
    for (unsigned i = 0; i < an; i++) {
        if (off + 12 > n)
            return 0;
        unsigned rtype = u16_at(w + off + 2), rclass = u16_at(w + off + 4), rdlen = u16_at(w + off + 10);
        Py_ssize_t end = off + 12 + rdlen;
        unsigned char kind = types[rtype];
        if (u16_at(w + off) != 0xC00C || end > n || kind == 255 || (rclass == 1 && kind != 0 && kind != rdlen))
            return 0;
        struct plain_record *r = &recs[(*count)++];
        r->tc = w + off + 2;
        r->ttl = ((unsigned long)w[off + 6] << 24) | ((unsigned long)w[off + 7] << 16)
            | ((unsigned long)w[off + 8] << 8) | w[off + 9];
        r->rdata = w + off + 10;
        r->rdata_len = 2 + rdlen;
        off = end;
    }
    *rcode = u16_at(w + 2) & 0x0F;
    if (ar) {
        if (off + 11 > n || w[off] != 0 || u16_at(w + off + 1) != 41)
            return 0;
        unsigned long opt_ttl = ((unsigned long)w[off + 5] << 24) | ((unsigned long)w[off + 6] << 16)
            | ((unsigned long)w[off + 7] << 8) | w[off + 8];
        off += 11 + u16_at(w + off + 9);
        *rcode |= (opt_ttl >> 20) & 0xFF0; /* the extended rcode's upper 8 bits (RFC 6891) */
    }
    return off == n;
}

static PyObject *
merge_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1]) || !PyBytes_Check(args[2])
        || !PyList_Check(args[3]) || !PyList_Check(args[4]) || !PyLong_Check(args[5]) || !PyBytes_Check(args[6])
        || PyBytes_GET_SIZE(args[6]) != 65536) {
        PyErr_SetString(PyExc_TypeError, "merge_plain(wire: bytes, question_end: int, opt: bytes, answers: list, "
                        "queries: list, local: int, types: bytes of 65536)");
        return NULL;
    }
    const unsigned char *wire = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t wire_len = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t question_end = PyLong_AsSsize_t(args[1]);
    long local = PyLong_AsLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *answers = args[3], *queries = args[4];
    const unsigned char *types = (const unsigned char *)PyBytes_AS_STRING(args[6]);
    Py_ssize_t clusters = PyList_GET_SIZE(answers);
    if (question_end < 12 || question_end > wire_len || clusters != PyList_GET_SIZE(queries) || clusters < 1)
        Py_RETURN_NONE;
    struct plain_record recs[MERGE_MAX_RECORDS];
    int count = 0;
    /* The records of each NOERROR answer with some: recs[first[i]] to recs[first[i + 1]]. */
    int first[MERGE_MAX_RECORDS + 1];
    int noerror_with_data[MERGE_MAX_RECORDS];
    int any_data = 0;
    if (clusters > MERGE_MAX_RECORDS)
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < clusters; i++) {
        PyObject *answer = PyList_GET_ITEM(answers, i), *query = PyList_GET_ITEM(queries, i);
        if (!PyBytes_CheckExact(answer) || !PyTuple_Check(query) || PyTuple_GET_SIZE(query) != 2
            || !PyBytes_Check(PyTuple_GET_ITEM(query, 1)))
            Py_RETURN_NONE;
        PyObject *question = PyTuple_GET_ITEM(query, 1);
        unsigned rcode = 0;
        first[i] = count;
        if (!read_plain((const unsigned char *)PyBytes_AS_STRING(answer), PyBytes_GET_SIZE(answer),
                        (const unsigned char *)PyBytes_AS_STRING(question), PyBytes_GET_SIZE(question), types,
                        recs, MERGE_MAX_RECORDS, &count, &rcode))
            Py_RETURN_NONE;
        if (rcode != 0 && rcode != 3)
            Py_RETURN_NONE; /* combine() leaves it out, and counts it */
        noerror_with_data[i] = rcode == 0 && count > first[i];
        any_data |= noerror_with_data[i];
    }
    first[clusters] = count;
    if (!any_data)
        Py_RETURN_NONE; /* a negative answer: combine() writes its SOA */
    Py_ssize_t from = 0, to = clusters;
    if (local >= 0 && local < clusters && noerror_with_data[local]) {
        from = local; /* policy local-first, and the local cluster has data: its answer alone */
        to = local + 1;
    }
    /* The RRsets in the order first seen, each with its smallest TTL. */
    const unsigned char *set_tc[MERGE_MAX_RECORDS];
    unsigned long set_ttl[MERGE_MAX_RECORDS];
    int sets = 0;
    for (Py_ssize_t i = from; i < to; i++) {
        if (!noerror_with_data[i])
            continue;
        for (int k = first[i]; k < first[i + 1]; k++) {
            int s = 0;
            while (s < sets && memcmp(set_tc[s], recs[k].tc, 4) != 0)
                s++;
            if (s == sets) {
                set_tc[sets] = recs[k].tc;
                set_ttl[sets++] = recs[k].ttl;
            } else if (recs[k].ttl < set_ttl[s]) {
                set_ttl[s] = recs[k].ttl;
            }
            recs[k].set = s;
        }
    }
    /* Each record once: the first of equal ones (RDLENGTH and rdata) in its RRset. */
    int keep[MERGE_MAX_RECORDS];
    Py_ssize_t size = question_end + PyBytes_GET_SIZE(args[2]);
    int n_an = 0;
    for (Py_ssize_t i = from; i < to; i++) {
        for (int k = first[i]; k < first[i + 1]; k++) {
            keep[k] = 0;
            if (!noerror_with_data[i])
                continue;
            int dup = 0;
            for (Py_ssize_t j = from; j <= i && !dup; j++) {
                if (!noerror_with_data[j])
                    continue;
                for (int m = first[j]; m < first[j + 1] && m < k; m++) {
                    if (keep[m] && recs[m].set == recs[k].set && recs[m].rdata_len == recs[k].rdata_len
                        && memcmp(recs[m].rdata, recs[k].rdata, recs[k].rdata_len) == 0) {
                        dup = 1;
                        break;
                    }
                }
            }
            if (!dup) {
                keep[k] = 1;
                n_an++;
                size += 10 + recs[k].rdata_len;
            }
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned flags = 0x8000 | 0x0400 | (u16_at(wire + 2) & 0x0100); /* QR, AA and the client's RD */
    unsigned n_ar = PyBytes_GET_SIZE(args[2]) ? 1 : 0;
    o[0] = wire[0];
    o[1] = wire[1];
    o[2] = flags >> 8;
    o[3] = flags & 0xFF;
    o[4] = 0;
    o[5] = 1;
    o[6] = n_an >> 8;
    o[7] = n_an & 0xFF;
    o[8] = o[9] = 0;
    o[10] = 0;
    o[11] = n_ar;
    memcpy(o + 12, wire + 12, question_end - 12);
    o += question_end;
    for (int s = 0; s < sets; s++) {
        for (Py_ssize_t i = from; i < to; i++) {
            if (!noerror_with_data[i])
                continue;
            for (int k = first[i]; k < first[i + 1]; k++) {
                if (!keep[k] || recs[k].set != s)
                    continue;
                o[0] = 0xC0; /* owned by the question name: a pointer to it */
                o[1] = 0x0C;
                memcpy(o + 2, recs[k].tc, 4);
                o[6] = (set_ttl[s] >> 24) & 0xFF;
                o[7] = (set_ttl[s] >> 16) & 0xFF;
                o[8] = (set_ttl[s] >> 8) & 0xFF;
                o[9] = set_ttl[s] & 0xFF;
                memcpy(o + 10, recs[k].rdata, recs[k].rdata_len);
                o += 10 + recs[k].rdata_len;
            }
        }
    }
    memcpy(o, PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]));
    return out;
}

static PyMethodDef methods[] = {
    {"drain", drain, METH_VARARGS,
     "drain(fd, callback, rounds=4) -> int: read datagrams in batches, answer via callback."},
    {"drain_shed", (PyCFunction)(void (*)(void))drain_shed, METH_FASTCALL,
     "drain_shed(fd, callback, rounds, keys, backlog, shed_from, limit, memo) -> int: drain, answering "
     "from memo (an AnswerMemo or None) first, queueing known slow queries while the backlog holds "
     "shed_from or more; how many older ones that dropped."},
    {"drain_answers", (PyCFunction)(void (*)(void))drain_answers, METH_FASTCALL,
     "drain_answers(fd, pending, rounds, ignored) -> int: read an upstream's answers, each to the "
     "sink of its ID and question in pending."},
    {"tally_setup", tally_setup, METH_VARARGS, "tally_setup(type_slots, size_buckets, duration_bounds)"},
    {"tally", (PyCFunction)(void (*)(void))tally, METH_FASTCALL,
     "tally(by_route, plugins, req, resp) -> bool: count one answer (see store.py)."},
    {"send_batch", (PyCFunction)(void (*)(void))send_batch, METH_FASTCALL,
     "send_batch(fd, items) -> int: send bytes (connected) or (bytes, addr) items with sendmmsg."},
    {"merge_plain", (PyCFunction)(void (*)(void))merge_plain, METH_FASTCALL,
     "merge_plain(wire, question_end, opt, answers, queries, local, types) -> bytes | None: the merge "
     "plugin's union of plain answers (see combine.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "interkube._udpfast",
    "Batched UDP I/O (recvmmsg/sendmmsg) for interkube's DNS listeners.", -1, methods,
};

PyMODINIT_FUNC
PyInit__udpfast(void)
{
    addr_memo = PyDict_New();
    if (addr_memo == NULL)
        return NULL;
    if (!(s_route = PyUnicode_InternFromString("route")) || !(s_answered_by = PyUnicode_InternFromString("answered_by"))
        || !(s_query = PyUnicode_InternFromString("query")) || !(s_qtype = PyUnicode_InternFromString("qtype"))
        || !(s_proto = PyUnicode_InternFromString("proto")) || !(s_client = PyUnicode_InternFromString("client"))
        || !(s_wire = PyUnicode_InternFromString("wire")) || !(s_started = PyUnicode_InternFromString("started"))
        || !(s_set_result = PyUnicode_InternFromString("set_result"))
        || !(s_popleft = PyUnicode_InternFromString("popleft")) || !(s_append = PyUnicode_InternFromString("append")))
        return NULL;
    if (PyType_Ready(&StampType) < 0 || PyType_Ready(&AnswerMemoType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BATCH", BATCH) < 0
        || PyModule_AddObjectRef(m, "Stamp", (PyObject *)&StampType) < 0
        || PyModule_AddObjectRef(m, "AnswerMemo", (PyObject *)&AnswerMemoType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
