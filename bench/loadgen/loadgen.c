/*
 * loadgen - a light DNS load generator (and a trivial upstream responder) for interkube's bench.
 *
 * Why our own: dnsperf saturates its own core near 165k QPS on the bench machines, below what
 * unbound and a lean Python server reach. This program does the least per query: the query
 * wire is built once per name, only the ID is patched in, and datagrams go out and come back
 * in batches (sendmmsg/recvmmsg) over several connected UDP sockets, or pipelined over TCP.
 *
 *   loadgen udp|tcp -s ADDR -p PORT -f QUERYFILE [-c CONNS] [-w WINDOW] [-r RATE]
 *                   [-d SECONDS] [-n COUNT] [-t TIMEOUT_MS] [-b BATCH] [-e] [-q]
 *       -r 0 (default): closed loop, WINDOW queries outstanding per socket/connection (max QPS)
 *       -r RATE:        open loop, RATE queries/s offered whatever the server does (latency)
 *       The run ends after SECONDS or COUNT queries, whichever is first; queries still
 *       outstanding then get up to TIMEOUT_MS to come back. One JSON object goes to stdout.
 *       -e adds an EDNS0 OPT record (1232 bytes) to every query; -q (TCP) acknowledges
 *       every read at once (TCP_QUICKACK) instead of letting the kernel delay the ACK.
 *
 *   loadgen respond -s ADDR -p PORT [-T TTL] [-d SECONDS]
 *       An upstream for forwarding scenarios: answers every UDP query for type A with one A
 *       record in 198.18.0.0/15 (RFC 2544 benchmark space; never contacted) derived from the
 *       name, other types with NODATA. SIGUSR1 prints its counters as a JSON line; SIGTERM
 *       prints them and exits; it exits by itself after SECONDS (default 3600).
 *
 * The query file has dnsperf's format: one "NAME TYPE" per line, cycled through in order.
 * Only loopback is expected; the caller checks the address.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define MAX_BATCH 256
#define MAX_QUERY 300         /* a query: 12 header + 255 name + 4 + 11 OPT, rounded up */
#define RESP_BUF 4096
#define NIDS 65536
#define RING_CAP (1u << 17)   /* per-connection FIFO of sends, for timeouts; compacted when full */
#define TCP_RBUF (256 * 1024)
#define TCP_WBUF (256 * 1024)

/* Latency histogram: 1 us buckets below 10 ms, 100 us buckets below 1 s, then one overflow. */
#define H_FINE 10000
#define H_COARSE 9900
#define H_N (H_FINE + H_COARSE + 1)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void fail(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

/* ---------------------------------------------------------------- queries */

typedef struct {
    uint8_t wire[MAX_QUERY];
    uint16_t len;
} query_t;

static query_t *queries;
static size_t nqueries;

static int type_code(const char *t) {
    static const struct { const char *n; int c; } tab[] = {
        {"A", 1}, {"NS", 2}, {"CNAME", 5}, {"SOA", 6}, {"PTR", 12}, {"MX", 15}, {"TXT", 16},
        {"AAAA", 28}, {"SRV", 33}, {"NAPTR", 35}, {"DS", 43}, {"DNSKEY", 48}, {"HTTPS", 65},
        {"ANY", 255}, {NULL, 0}};
    for (int i = 0; tab[i].n; i++)
        if (!strcasecmp(tab[i].n, t)) return tab[i].c;
    if (!strncasecmp(t, "TYPE", 4)) return atoi(t + 4);
    return -1;
}

/* Encode NAME (dotted, absolute or not) as wire labels; returns bytes written or -1. */
static int encode_name(const char *name, uint8_t *out, size_t cap) {
    size_t o = 0;
    const char *p = name;
    if (!strcmp(name, ".")) {
        if (cap < 1) return -1;
        out[0] = 0;
        return 1;
    }
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l == 0 || l > 63 || o + 1 + l + 1 > cap) return -1;
        out[o++] = (uint8_t)l;
        memcpy(out + o, p, l);
        o += l;
        p += l;
        if (*p == '.') p++;
    }
    out[o++] = 0;
    return o > 255 ? -1 : (int)o;
}

static void load_queries(const char *path, int edns) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    size_t cap = 1024;
    queries = calloc(cap, sizeof *queries);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char name[512], type[32];
        if (line[0] == '#' || line[0] == ';') continue;
        if (sscanf(line, "%511s %31s", name, type) != 2) continue;
        int code = type_code(type);
        if (code < 0) { fprintf(stderr, "loadgen: unknown type %s\n", type); exit(2); }
        if (nqueries == cap) {
            cap *= 2;
            queries = realloc(queries, cap * sizeof *queries);
            if (!queries) die("realloc");
        }
        query_t *q = &queries[nqueries];
        uint8_t *w = q->wire;
        memset(w, 0, 12);
        w[2] = 0x01;  /* RD: forwarders need it; authoritative answers ignore it */
        w[5] = 1;     /* QDCOUNT */
        int n = encode_name(name, w + 12, MAX_QUERY - 12 - 4 - 11);
        if (n < 0) { fprintf(stderr, "loadgen: bad name %s\n", name); exit(2); }
        size_t o = 12 + (size_t)n;
        w[o++] = (uint8_t)(code >> 8); w[o++] = (uint8_t)code;
        w[o++] = 0; w[o++] = 1;  /* IN */
        if (edns) {
            w[11] = 1;  /* ARCOUNT */
            static const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
            memcpy(w + o, opt, sizeof opt);
            o += sizeof opt;
        }
        q->len = (uint16_t)o;
        nqueries++;
    }
    fclose(f);
    if (nqueries == 0) fail("query file has no queries");
}

/* ---------------------------------------------------------------- connections */

typedef struct {
    uint64_t sent_ns;  /* 0: free */
    uint32_t seq;
} slot_t;

typedef struct {
    uint16_t id;
    uint32_t seq;
} ring_t;

typedef struct {
    int fd;
    slot_t *slots;
    uint32_t outstanding;
    uint16_t next_id;
    uint32_t seq;
    ring_t *ring;
    uint32_t rhead, rtail;  /* monotonically increasing; index & (RING_CAP-1) */
    /* TCP only */
    uint8_t *rbuf, *wbuf;
    size_t rlen, wlen, woff;
    uint32_t fruitless;  /* reconnects in a row with no answer in between */
} conn_t;

typedef struct {
    uint64_t sent, received, answered, timeouts, unmatched, truncated, send_errors,
        short_msgs, reconnects, id_exhausted;
    uint64_t rcodes[16];
    uint64_t hist[H_N];
    uint64_t lat_sum_ns, lat_max_ns;
    uint64_t received_in_window;  /* responses that arrived before the end of the load phase */
} stats_t;

static stats_t st;
static conn_t conns[MAX_CONNS];
static int nconns;
static int tcp_mode;
static int quickack;  /* TCP: acknowledge at once instead of delaying (see -q) */
static struct sockaddr_in server_addr;

static void hist_add(uint64_t ns) {
    size_t i;
    if (ns < 10000000ull) i = ns / 1000;
    else if (ns < 1000000000ull) i = H_FINE + (ns - 10000000ull) / 100000;
    else i = H_N - 1;
    st.hist[i]++;
    st.lat_sum_ns += ns;
    if (ns > st.lat_max_ns) st.lat_max_ns = ns;
}

/* Upper edge of the bucket holding quantile q, in microseconds. */
static double hist_quantile(double q) {
    uint64_t total = 0;
    for (size_t i = 0; i < H_N; i++) total += st.hist[i];
    if (total == 0) return -1;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total) want = total - 1;
    uint64_t acc = 0;
    for (size_t i = 0; i < H_N; i++) {
        acc += st.hist[i];
        if (acc > want) {
            if (i < H_FINE) return (double)(i + 1);
            if (i < H_FINE + H_COARSE) return 10000.0 + (double)(i - H_FINE + 1) * 100.0;
            return (double)st.lat_max_ns / 1000.0;
        }
    }
    return -1;
}

static void conn_open(conn_t *c) {
    int fd = socket(AF_INET, tcp_mode ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int buf = 4 << 20;
    /* Large buffers so that a burst of answers is not dropped on our side of the socket. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (tcp_mode) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0) die("connect");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd;
    c->rlen = c->wlen = c->woff = 0;
}

static void conn_init(conn_t *c) {
    c->slots = calloc(NIDS, sizeof *c->slots);
    c->ring = calloc(RING_CAP, sizeof *c->ring);
    if (!c->slots || !c->ring) die("calloc");
    c->next_id = (uint16_t)(rand() & 0xffff);
    if (tcp_mode) {
        c->rbuf = malloc(TCP_RBUF);
        c->wbuf = malloc(TCP_WBUF);
        if (!c->rbuf || !c->wbuf) die("malloc");
    }
    conn_open(c);
}

/* Drop answered entries from the send FIFO so that it has room again. */
static void ring_compact(conn_t *c) {
    uint32_t w = c->rhead;
    for (uint32_t r = c->rhead; r != c->rtail; r++) {
        ring_t e = c->ring[r & (RING_CAP - 1)];
        slot_t *s = &c->slots[e.id];
        if (s->sent_ns && s->seq == e.seq) c->ring[(w++) & (RING_CAP - 1)] = e;
    }
    c->rtail = w;
}

/* Reserve an ID and note the send time; returns -1 when all 65536 IDs are in flight. */
static int take_id(conn_t *c, uint64_t t) {
    if (c->outstanding >= NIDS) return -1;
    if (c->rtail - c->rhead >= RING_CAP) ring_compact(c);
    uint16_t id = c->next_id;
    while (c->slots[id].sent_ns) id++;
    c->next_id = (uint16_t)(id + 1);
    slot_t *s = &c->slots[id];
    s->sent_ns = t;
    s->seq = ++c->seq;
    c->ring[(c->rtail++) & (RING_CAP - 1)] = (ring_t){id, s->seq};
    c->outstanding++;
    return id;
}

static void release_id(conn_t *c, uint16_t id) {
    c->slots[id].sent_ns = 0;
    c->outstanding--;
}

/* Count queries older than the timeout as lost, oldest first. */
static void expire(conn_t *c, uint64_t t, uint64_t timeout_ns) {
    while (c->rhead != c->rtail) {
        ring_t e = c->ring[c->rhead & (RING_CAP - 1)];
        slot_t *s = &c->slots[e.id];
        if (s->sent_ns && s->seq == e.seq) {
            if (t - s->sent_ns < timeout_ns) break;
            release_id(c, e.id);
            st.timeouts++;
        }
        c->rhead++;
    }
}

static void on_response(conn_t *c, const uint8_t *m, size_t len, uint64_t t, int in_window) {
    if (len < 12 || !(m[2] & 0x80)) { st.short_msgs++; return; }
    uint16_t id = (uint16_t)(m[0] << 8 | m[1]);
    slot_t *s = &c->slots[id];
    if (!s->sent_ns) { st.unmatched++; return; }  /* late (already timed out) or duplicate */
    hist_add(t - s->sent_ns);
    release_id(c, id);
    c->fruitless = 0;
    st.received++;
    if (in_window) st.received_in_window++;
    st.rcodes[m[3] & 0x0f]++;
    if (m[2] & 0x02) st.truncated++;
    if (m[6] | m[7]) st.answered++;
}

/* Fail everything outstanding on a TCP connection that closed, and open a new one. */
static void tcp_reconnect(conn_t *c) {
    close(c->fd);
    for (uint32_t r = c->rhead; r != c->rtail; r++) {
        ring_t e = c->ring[r & (RING_CAP - 1)];
        slot_t *s = &c->slots[e.id];
        if (s->sent_ns && s->seq == e.seq) { release_id(c, e.id); st.timeouts++; }
    }
    c->rhead = c->rtail = 0;
    st.reconnects++;
    /* Servers may close after N queries (dnsmasq: 100); that is normal. A server that closes
     * every connection before answering anything is not worth hammering. */
    if (++c->fruitless > 100) fail("100 TCP reconnects in a row without an answer; giving up");
    conn_open(c);
}

/* ---------------------------------------------------------------- UDP I/O */

static uint8_t sbuf[MAX_BATCH][MAX_QUERY];
static struct iovec siov[MAX_BATCH];
static struct mmsghdr smsg[MAX_BATCH];
static uint8_t rbufs[MAX_BATCH][RESP_BUF];
static struct iovec riov[MAX_BATCH];
static struct mmsghdr rmsg[MAX_BATCH];
static size_t qnext;  /* next query in the list, cycled */

/* Send up to n queries on c; returns how many went out. */
static int udp_send(conn_t *c, int n, uint64_t t) {
    int k = 0;
    uint16_t ids[MAX_BATCH];
    for (; k < n; k++) {
        int id = take_id(c, t);
        if (id < 0) { st.id_exhausted++; break; }
        const query_t *q = &queries[qnext];
        qnext = qnext + 1 == nqueries ? 0 : qnext + 1;
        memcpy(sbuf[k], q->wire, q->len);
        sbuf[k][0] = (uint8_t)(id >> 8);
        sbuf[k][1] = (uint8_t)id;
        siov[k].iov_len = q->len;
        ids[k] = (uint16_t)id;
    }
    int done = 0;
    while (done < k) {
        int r = sendmmsg(c->fd, smsg + done, (unsigned)(k - done), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            /* EAGAIN (our buffer is full) or ECONNREFUSED (nothing listening): unsent. */
            st.send_errors++;
            break;
        }
        done += r;
    }
    for (int i = done; i < k; i++) release_id(c, ids[i]);
    st.sent += (uint64_t)done;
    return done;
}

static void udp_recv(conn_t *c, int batch, int in_window) {
    for (;;) {
        int r = recvmmsg(c->fd, rmsg, (unsigned)batch, MSG_DONTWAIT, NULL);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return;  /* EAGAIN, or ECONNREFUSED reported by a previous ICMP */
        }
        uint64_t t = now_ns();
        for (int i = 0; i < r; i++) on_response(c, rbufs[i], rmsg[i].msg_len, t, in_window);
        if (r < batch) return;
    }
}

/* ---------------------------------------------------------------- TCP I/O */

static void tcp_flush(conn_t *c) {
    while (c->woff < c->wlen) {
        ssize_t w = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            tcp_reconnect(c);
            return;
        }
        c->woff += (size_t)w;
    }
    c->woff = c->wlen = 0;
}

static int tcp_send(conn_t *c, int n, uint64_t t) {
    int k = 0;
    if (c->woff > 0 && c->woff == c->wlen) c->woff = c->wlen = 0;
    for (; k < n; k++) {
        const query_t *q = &queries[qnext];
        if (c->wlen + 2u + q->len > TCP_WBUF) break;  /* let the socket drain first */
        int id = take_id(c, t);
        if (id < 0) { st.id_exhausted++; break; }
        qnext = qnext + 1 == nqueries ? 0 : qnext + 1;
        uint8_t *p = c->wbuf + c->wlen;
        p[0] = (uint8_t)(q->len >> 8);
        p[1] = (uint8_t)q->len;
        memcpy(p + 2, q->wire, q->len);
        p[2] = (uint8_t)(id >> 8);
        p[3] = (uint8_t)id;
        c->wlen += 2u + q->len;
    }
    st.sent += (uint64_t)k;
    tcp_flush(c);
    return k;
}

static void tcp_recv(conn_t *c, int in_window) {
    for (;;) {
        ssize_t r = read(c->fd, c->rbuf + c->rlen, TCP_RBUF - c->rlen);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            tcp_reconnect(c);
            return;
        }
        if (r == 0) { tcp_reconnect(c); return; }
        if (quickack) {
            /* Linux clears TCP_QUICKACK by itself; set it again after every read. */
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        }
        c->rlen += (size_t)r;
        uint64_t t = now_ns();
        size_t off = 0;
        while (c->rlen - off >= 2) {
            size_t flen = (size_t)(c->rbuf[off] << 8 | c->rbuf[off + 1]);
            if (c->rlen - off < 2 + flen) break;
            on_response(c, c->rbuf + off + 2, flen, t, in_window);
            off += 2 + flen;
        }
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
}

/* ---------------------------------------------------------------- client main loop */

static void print_report(const char *mode, int conns_n, int window, double rate, double elapsed,
                         double drain, double cpu_s) {
    static const char *names[16] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",
                                    "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
                                    "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14",
                                    "RCODE15"};
    printf("{\"generator\": \"loadgen\", \"mode\": \"%s\", \"loop\": \"%s\", \"conns\": %d, "
           "\"window\": %d, \"rate\": %.0f, \"queries_in_list\": %zu, ",
           mode, rate > 0 ? "open" : "closed", conns_n, window, rate, nqueries);
    printf("\"elapsed_s\": %.6f, \"drain_s\": %.6f, \"cpu_s\": %.6f, ", elapsed, drain, cpu_s);
    printf("\"sent\": %lu, \"received\": %lu, \"answered\": %lu, \"timeouts\": %lu, "
           "\"unmatched\": %lu, \"truncated\": %lu, \"send_errors\": %lu, \"bad_messages\": %lu, "
           "\"reconnects\": %lu, \"id_exhausted\": %lu, ",
           st.sent, st.received, st.answered, st.timeouts, st.unmatched, st.truncated,
           st.send_errors, st.short_msgs, st.reconnects, st.id_exhausted);
    printf("\"qps\": %.1f, ", elapsed > 0 ? (double)st.received_in_window / elapsed : 0.0);
    printf("\"rcodes\": {");
    int first = 1;
    for (int i = 0; i < 16; i++) {
        if (!st.rcodes[i]) continue;
        printf("%s\"%s\": %lu", first ? "" : ", ", names[i], st.rcodes[i]);
        first = 0;
    }
    printf("}, ");
    printf("\"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, "
           "\"max\": %.1f, \"mean\": %.1f}}\n",
           hist_quantile(0.50), hist_quantile(0.90), hist_quantile(0.99), hist_quantile(0.999),
           (double)st.lat_max_ns / 1000.0,
           st.received ? (double)st.lat_sum_ns / (double)st.received / 1000.0 : -1.0);
}

static int client(int argc, char **argv, int tcp) {
    const char *addr = "127.0.0.1", *file = NULL;
    int port = 53, window = 16, batch = 32, edns = 0;
    double rate = 0, duration = 5, timeout_ms = 1000;
    uint64_t count = 0;
    nconns = 8;
    tcp_mode = tcp;
    int opt;
    while ((opt = getopt(argc, argv, "s:p:f:c:w:r:d:n:t:b:eq")) != -1) {
        switch (opt) {
        case 's': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'f': file = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 't': timeout_ms = atof(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'e': edns = 1; break;
        case 'q': quickack = 1; break;
        default: fail("bad option (see the comment at the top of loadgen.c)");
        }
    }
    if (!file) fail("-f QUERYFILE is required");
    if (nconns < 1 || nconns > MAX_CONNS) fail("-c out of range");
    if (window < 1 || window > NIDS) fail("-w out of range");
    if (batch < 1 || batch > MAX_BATCH) fail("-b out of range");
    if (duration <= 0 || duration > 3600) fail("-d must be in (0, 3600]");
    if (inet_pton(AF_INET, addr, &server_addr.sin_addr) != 1) fail("-s must be an IPv4 address");
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)port);
    load_queries(file, edns);

    /* Finer sleeps than the default 50 us slack: open-loop pacing wants them. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)now_ns());
    for (int i = 0; i < MAX_BATCH; i++) {
        siov[i].iov_base = sbuf[i];
        smsg[i].msg_hdr.msg_iov = &siov[i];
        smsg[i].msg_hdr.msg_iovlen = 1;
        riov[i].iov_base = rbufs[i];
        riov[i].iov_len = RESP_BUF;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    for (int i = 0; i < nconns; i++) conn_init(&conns[i]);

    struct pollfd pfd[MAX_CONNS];
    const uint64_t timeout_ns = (uint64_t)(timeout_ms * 1e6);
    const uint64_t t0 = now_ns();
    const uint64_t t_end = t0 + (uint64_t)(duration * 1e9);
    uint64_t t_load_end = t_end;
    uint64_t last_expire = t0;
    int rr = 0, loading = 1;

    for (;;) {
        uint64_t t = now_ns();
        if (loading && (t >= t_end || (count && st.sent >= count))) {
            loading = 0;
            t_load_end = t;
        }
        uint64_t outstanding = 0;
        for (int i = 0; i < nconns; i++) outstanding += conns[i].outstanding;
        if (!loading && (outstanding == 0 || t >= t_load_end + timeout_ns)) break;

        /* Send. */
        if (loading) {
            if (rate > 0) {
                uint64_t due = (uint64_t)((double)(t - t0) * rate / 1e9) + 1;
                if (count && due > count) due = count;
                while (st.sent < due) {
                    conn_t *c = &conns[rr];
                    rr = rr + 1 == nconns ? 0 : rr + 1;
                    uint64_t want = due - st.sent;
                    int n = want > (uint64_t)batch ? batch : (int)want;
                    int got = tcp ? tcp_send(c, n, t) : udp_send(c, n, t);
                    if (got < n) break;  /* socket full: the rest stays due */
                }
            } else {
                for (int i = 0; i < nconns; i++) {
                    conn_t *c = &conns[i];
                    while (c->outstanding < (uint32_t)window) {
                        int n = window - (int)c->outstanding;
                        if (n > batch) n = batch;
                        if (count && st.sent + (uint64_t)n > count) n = (int)(count - st.sent);
                        if (n <= 0) break;
                        int got = tcp ? tcp_send(c, n, t) : udp_send(c, n, t);
                        if (got < n) break;
                    }
                }
            }
        }

        /* Wait for answers, the next send slot, or the next timeout check. */
        uint64_t wake = t + 10000000ull;  /* 10 ms: timeouts are checked at least this often */
        if (loading && rate > 0) {
            uint64_t next = t0 + (uint64_t)((double)(st.sent + 1) * 1e9 / rate);
            if (next < wake) wake = next;
        }
        if (loading && wake > t_end) wake = t_end;
        if (!loading && wake > t_load_end + timeout_ns) wake = t_load_end + timeout_ns;
        for (int i = 0; i < nconns; i++) {
            pfd[i].fd = conns[i].fd;
            pfd[i].events = POLLIN | (tcp && conns[i].woff < conns[i].wlen ? POLLOUT : 0);
            pfd[i].revents = 0;
        }
        uint64_t t2 = now_ns();
        struct timespec ts = {0, 0};
        if (wake > t2) {
            ts.tv_sec = (time_t)((wake - t2) / 1000000000ull);
            ts.tv_nsec = (long)((wake - t2) % 1000000000ull);
        }
        int pr = ppoll(pfd, (nfds_t)nconns, &ts, NULL);
        if (pr < 0 && errno != EINTR) die("ppoll");
        uint64_t t3 = now_ns();
        int in_window = t3 <= t_load_end || loading;
        for (int i = 0; pr > 0 && i < nconns; i++) {
            if (!pfd[i].revents) continue;
            if (tcp) {
                if (pfd[i].revents & POLLOUT) tcp_flush(&conns[i]);
                if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) tcp_recv(&conns[i], in_window);
            } else {
                udp_recv(&conns[i], batch > 64 ? batch : 64, in_window);
            }
        }
        if (t3 - last_expire >= 10000000ull || !loading) {
            for (int i = 0; i < nconns; i++) expire(&conns[i], t3, timeout_ns);
            last_expire = t3;
        }
    }
    uint64_t t_done = now_ns();
    for (int i = 0; i < nconns; i++) {
        /* Whatever is still outstanding after the drain is lost. */
        conn_t *c = &conns[i];
        for (uint32_t r = c->rhead; r != c->rtail; r++) {
            ring_t e = c->ring[r & (RING_CAP - 1)];
            slot_t *s = &c->slots[e.id];
            if (s->sent_ns && s->seq == e.seq) { release_id(c, e.id); st.timeouts++; }
        }
        close(c->fd);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    print_report(tcp ? "tcp" : "udp", nconns, window, rate, (double)(t_load_end - t0) / 1e9,
                 (double)(t_done - t_load_end) / 1e9, cpu);
    return 0;
}

/* ---------------------------------------------------------------- responder */

static volatile sig_atomic_t got_usr1, got_term;
static void on_signal(int sig) {
    if (sig == SIGUSR1) got_usr1 = 1;
    else got_term = 1;
}

static uint64_t r_received, r_answered, r_dropped;

static void responder_report(void) {
    printf("{\"received\": %lu, \"answered\": %lu, \"dropped\": %lu}\n", r_received, r_answered,
           r_dropped);
    fflush(stdout);
}

/* Turn query m (len bytes, buffer cap bytes) into its answer in place; returns the new length
 * or 0 to drop it. */
static size_t answer(uint8_t *m, size_t len, size_t cap, uint32_t ttl) {
    if (len < 12 || (m[2] & 0x80) || ((m[2] >> 3) & 0x0f) != 0) return 0;
    if (m[4] != 0 || m[5] != 1) return 0;
    size_t o = 12;
    uint32_t h = 2166136261u;  /* FNV-1a over the lower-cased name: a stable address per name */
    while (o < len && m[o] != 0) {
        size_t l = m[o];
        if (l > 63 || o + 1 + l >= len) return 0;
        for (size_t i = 0; i <= l; i++) {
            uint8_t ch = m[o + i];
            if (ch >= 'A' && ch <= 'Z') ch = (uint8_t)(ch + 32);
            h = (h ^ ch) * 16777619u;
        }
        o += 1 + l;
    }
    if (o + 5 > len) return 0;
    o++;
    uint16_t qtype = (uint16_t)(m[o] << 8 | m[o + 1]);
    o += 4;
    int had_opt = m[10] == 0 && m[11] >= 1 && o + 11 <= len && m[o] == 0 && m[o + 1] == 0 &&
                  m[o + 2] == 41;
    int with_a = qtype == 1;
    if (o + 16 + 11 > cap) return 0;
    m[2] = (uint8_t)(0x80 | 0x04 | (m[2] & 0x01));  /* QR, AA, RD copied */
    m[3] = 0x80;                                   /* RA, NOERROR */
    m[6] = 0; m[7] = (uint8_t)with_a;
    m[8] = m[9] = 0;
    m[10] = 0; m[11] = (uint8_t)had_opt;
    if (with_a) {
        uint8_t rr[16] = {0xc0, 0x0c, 0, 1, 0, 1,
                          (uint8_t)(ttl >> 24), (uint8_t)(ttl >> 16), (uint8_t)(ttl >> 8),
                          (uint8_t)ttl, 0, 4, 198, (uint8_t)(18 + ((h >> 16) & 1)),
                          (uint8_t)(h >> 8), (uint8_t)h};
        memcpy(m + o, rr, sizeof rr);
        o += sizeof rr;
    }
    if (had_opt) {
        static const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
        memcpy(m + o, opt, sizeof opt);
        o += sizeof opt;
    }
    return o;
}

static int responder(int argc, char **argv) {
    const char *addr = "127.0.0.1";
    int port = 0;
    uint32_t ttl = 0;
    double lifetime = 3600;
    int opt;
    while ((opt = getopt(argc, argv, "s:p:T:d:")) != -1) {
        switch (opt) {
        case 's': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'T': ttl = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'd': lifetime = atof(optarg); break;
        default: fail("bad option (see the comment at the top of loadgen.c)");
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) fail("-s must be an IPv4 address");
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");

    /* No SA_RESTART: a signal must interrupt the blocking receive. */
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGUSR1, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    alarm((unsigned)lifetime);
    sigaction(SIGALRM, &act, NULL);

    enum { B = 64 };
    static uint8_t bufs[B][RESP_BUF];
    static struct iovec iov[B];
    static struct mmsghdr msgs[B];
    static struct sockaddr_in from[B];
    for (int i = 0; i < B; i++) {
        iov[i].iov_base = bufs[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    printf("{\"ready\": true}\n");
    fflush(stdout);
    while (!got_term) {
        if (got_usr1) { got_usr1 = 0; responder_report(); }
        for (int i = 0; i < B; i++) {
            iov[i].iov_len = RESP_BUF;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int r = recvmmsg(fd, msgs, B, MSG_WAITFORONE, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        int k = 0;
        for (int i = 0; i < r; i++) {
            r_received++;
            size_t n = answer(bufs[i], msgs[i].msg_len, RESP_BUF, ttl);
            if (!n) { r_dropped++; continue; }
            iov[i].iov_len = n;
            if (k != i) {
                memcpy(bufs[k], bufs[i], n);
                iov[k].iov_len = n;
                from[k] = from[i];
                msgs[k].msg_hdr.msg_namelen = msgs[i].msg_hdr.msg_namelen;
            }
            k++;
        }
        int done = 0;
        while (done < k) {
            int s = sendmmsg(fd, msgs + done, (unsigned)(k - done), 0);
            if (s < 0) {
                if (errno == EINTR) continue;
                r_dropped += (uint64_t)(k - done);
                break;
            }
            done += s;
        }
        r_answered += (uint64_t)done;
    }
    responder_report();
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: loadgen udp|tcp|respond [options]");
    const char *mode = argv[1];
    argv[1] = argv[0];
    if (!strcmp(mode, "udp")) return client(argc - 1, argv + 1, 0);
    if (!strcmp(mode, "tcp")) return client(argc - 1, argv + 1, 1);
    if (!strcmp(mode, "respond")) return responder(argc - 1, argv + 1);
    fail("mode must be udp, tcp or respond");
    return 2;
}
