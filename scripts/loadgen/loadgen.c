/*
 * loadgen.c -- single-threaded epoll load generator for the chatroom binary
 * protocol (spec/contract.md) and for plain IRC (to measure ngircd on the same
 * workload).
 *
 * Scenarios
 *   relay  C clients u0..u{C-1} in pairs (u0<->u1, u2<->u3, ...; an odd last
 *          client talks to itself), each keeping up to W messages in flight.
 *   fanin  C senders u1..uC, each keeping up to W in flight to one receiver u0.
 *   hold   C clients log in, "READY n" is printed, they stay idle D seconds.
 *   room   C clients in C/M rooms #r0, #r1, ... of M members (u0..u{M-1} in
 *          #r0, ...); the first S members of each room keep up to W messages
 *          in flight to their room, which the server copies to the other M-1
 *          members. Sending starts once every client is in its room: irc, it
 *          has seen its own JOIN echoed and the channel's end of NAMES (366);
 *          chat, its HELLO 3, LOGIN and JOIN (0x0d) are answered OK. chatroom
 *          also hands the sender its own copy (ROOM-MESSAGE 0x89): counted as
 *          an echo, not a delivery, so that both servers' figures count the
 *          same M-1 copies.
 *
 * Window credit: chat -- a RESPONSE to one of our SENDTOs frees a slot;
 * irc -- the receiver getting the message frees the sender's slot (both ends
 * live in this process, so this is a counter on the sender). room -- one
 * designated member, the witness (the sender's next member in its room,
 * wrapping round), frees the slot; every other member's copy is only counted
 * and checked.
 *
 * Payload (P bytes, P >= 32): 16 hex digits sequence number, 16 hex digits
 * send time (ns since loadgen start, CLOCK_MONOTONIC), then a fill pattern
 * derived from the sequence number, so the receiver can check it byte for byte.
 *
 * --proto chat keeps two rules of the older shared/bench loadgen that callers
 * (compare.py) may rely on: a payload under 32 is raised to 32, and an odd relay
 * client count is rounded up to even, so that every client has a partner.
 * --proto irc refuses a payload under 32 and lets an odd last client talk to itself.
 *
 * --bind-ips A,B,...: connection i binds to source address i mod n before
 * connect (e.g. 127.0.0.2,127.0.0.3), for more connections to one server
 * address and port than one source address has ephemeral ports (~28,000).
 *
 * RESULT json: the nested objects (latency_us, errors, verify, ...) and, for
 * callers of the older shared loadgen (compare.py), its flat keys: seconds,
 * replies_ok, p50_us, p99_us, p999_us, max_us, failures, violations,
 * framing_errors, disconnects, connect_s, loadgen_cpu (1.0 = one core).
 *
 * Everything is non-blocking, edge-triggered epoll; output is appended to a
 * per-connection buffer and written once per loop iteration.
 *
 * chatroom's copy of shared/bench/loadgen.c, extended with the room scenario
 * over chatroom's own protocol (the shared one speaks IRC's rooms only).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24   /* Linux 4.2 */
#endif

#define MAX_BODY 262221u          /* contract: largest valid body */
#define FRAME_HDR 5u
#define RBUF_SIZE (1u << 20)      /* > FRAME_HDR + MAX_BODY, so a frame always fits */
#define IRC_MAX_LINE 8192u
#define PL_HDR 32u                /* payload prefix: hex seq + hex timestamp */
#define MAX_EVENTS 1024
#define IRC_MAX_PAYLOAD 400
#define CHAT_ROOM_VERSION 3       /* HELLO 3: rooms */
#define ROOM_SETUP_STEPS 3        /* chat room: HELLO, LOGIN and JOIN answered OK */

enum { PROTO_CHAT, PROTO_IRC };
enum { SC_RELAY, SC_FANIN, SC_HOLD, SC_ROOM };
/* CS_JOIN: room only, registered, waiting for our JOIN echo and 366 */
enum { CS_IDLE, CS_CONNECTING, CS_LOGIN, CS_JOIN, CS_READY, CS_CLOSED };
enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_HOLD, PH_DONE };

typedef struct conn {
    int fd;
    int id;                 /* name is prefix + id, e.g. "u7" */
    int peer;               /* id this client sends to (room: its witness), -1: none */
    uint8_t state;
    uint8_t dirty;          /* queued in the flush list */
    uint8_t namelen;
    char name[24];
    uint8_t chanlen;        /* room: channel length, 0 in the other scenarios */
    uint8_t joined;         /* room: irc, 1 = own JOIN echo seen, 2 = its 366 seen; chat, OKs so far */
    char chan[12];          /* room: "#rK" */
    uint32_t outstanding;   /* messages in flight (window in use) */
    uint8_t *in;            /* leftover partial frame/line */
    uint32_t inlen, incap;
    uint8_t *out;           /* pending output */
    uint32_t outoff, outlen, outcap;
    uint64_t tx_seq;        /* messages sent by this client = next sequence number */
    uint64_t tx_failed;     /* SENDTO answered FAILURE/MALFORMED */
    uint64_t rx_next;       /* next sequence number the receiver expects from this client */
    uint64_t rx_count;      /* messages from this client that arrived */
    struct conn *next_dirty;
} conn;

static struct {
    int proto, scenario;
    const char *host;
    int port;
    const char *ports;      /* --port as given: one port, or several */
    int clients, window, payload;
    int members, senders;   /* room: members per room, senders per room (0 = unset) */
    int delayed_ack;        /* room: keep the kernel's delayed ACKs (no TCP_QUICKACK) */
    double duration, warmup, drain, setup_timeout;
    int verify, conc, server_pid;
    const char *prefix;
    const char *bind_ips;   /* --bind-ips: comma-separated IPv4 source addresses, or NULL */
    const char *irc_caps;   /* --irc-caps: IRCv3 capabilities asked for before registering, or NULL */
} opt = {
    .proto = PROTO_CHAT, .scenario = SC_RELAY, .host = "127.0.0.1", .port = 5555, .ports = "5555",
    .clients = 2, .window = 1, .payload = 64, .duration = 5.0, .warmup = 1.0,
    .drain = 5.0, .setup_timeout = 60.0, .verify = 0, .conc = 0, .server_pid = 0, .prefix = "u",
};

static struct {
    /* measurement window */
    uint64_t sent, delivered, replies, replies_ok;
    /* whole run */
    uint64_t tot_sent, tot_delivered, tot_replies, tot_failed_send;
    /* room: every member's copy (window, whole run); delivered above counts witnesses */
    uint64_t deliveries, tot_deliveries;
    uint64_t echoes;        /* room, chat: the sender's own copies (whole run) */
    int64_t outstanding;
    int connected, ready, setup_inflight;
    /* errors */
    uint64_t failure, malformed, disconnects, framing, connect_fail, login_fail, unexpected, irc_err;
    /* verify */
    uint64_t wrong_sender, wrong_target, lost, dup_reorder, payload_bad;
    /* latency (window) */
    uint64_t lat_n, lat_sum_us, lat_max_us;
} st;

#define HIST_N (2048 + 30 * 1024)
static uint32_t hist[HIST_N];

static conn *conns;
static int N;                       /* number of connections */
static int next_conn;               /* next connection to open */
static int ep;
static uint8_t *rbuf;
static uint8_t *pattern;            /* fill pattern, payload + 26 bytes */
static uint64_t *room_next;         /* room --verify: next seq, [receiver id * S + sender's rank] */
static int phase = PH_SETUP;
static uint64_t t0, now, phase_end, setup_deadline;
static uint64_t t_setup_done, t_meas_start, t_meas_end, t_hold_start, t_hold_end;
static double cpu_meas_start, cpu_meas_end;
static double srv_cpu_start = -1, srv_cpu_end = -1;
static long srv_rss_start = -1, srv_rss_ready = -1, srv_rss_end = -1, srv_hwm_end = -1;
static unsigned long long host_start[3], host_end[3];
static int host_ok;
static conn *dirty_head;
static struct sockaddr_in addrs[8];  /* --port P1,P2,...: connection i connects to [i % naddrs] */
static int naddrs;
static struct sockaddr_in *bind_addrs;  /* --bind-ips: connection i binds to [i % nbind] */
static int nbind;
static double cpu_hold_start, cpu_hold_end;
static volatile sig_atomic_t g_stop;

/* ---------------------------------------------------------------- utils */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double proc_cpu(int pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long ut = 0, stt = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2) return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* machine-wide CPU ticks from /proc/stat: busy (all but idle+iowait), softirq, total */
static int host_ticks(unsigned long long v[3])
{
    unsigned long long f[10] = {0};
    FILE *fp = fopen("/proc/stat", "r");
    if (!fp) return 0;
    int n = fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3],
                   &f[4], &f[5], &f[6], &f[7], &f[8], &f[9]);
    fclose(fp);
    if (n < 7) return 0;
    unsigned long long total = f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
    v[0] = total - f[3] - f[4];
    v[1] = f[6];
    v[2] = total;
    return 1;
}

static long proc_status_kb(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) { v = strtol(line + kl, NULL, 10); break; }
    fclose(f);
    return v;
}

static const char HEX[] = "0123456789abcdef";

static void put_hex16(uint8_t *w, uint64_t v)
{
    for (int i = 15; i >= 0; i--) { w[i] = (uint8_t)HEX[v & 15]; v >>= 4; }
}

static int get_hex16(const uint8_t *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        unsigned c = r[i], d;
        if (c - '0' < 10) d = c - '0';
        else if (c - 'a' < 6) d = c - 'a' + 10;
        else return 0;
        v = (v << 4) | d;
    }
    *out = v;
    return 1;
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* log-linear histogram: exact below 2048 us, then 1024 sub-buckets per power of two (<0.1%) */
static inline unsigned hidx(uint64_t v)
{
    if (v < 2048) return (unsigned)v;
    int e = 63 - __builtin_clzll(v);
    if (e > 40) { e = 40; v = (1ull << 41) - 1; }
    return 2048 + (unsigned)(e - 11) * 1024 + (unsigned)((v >> (e - 10)) - 1024);
}

static inline uint64_t hval(unsigned i)
{
    if (i < 2048) return i;
    unsigned e = (i - 2048) / 1024 + 11, sub = (i - 2048) % 1024;
    return (uint64_t)(1024 + sub) << (e - 10);
}

static uint64_t hist_pct(double q)
{
    if (!st.lat_n) return 0;
    uint64_t target = (uint64_t)ceil(q * (double)st.lat_n), cum = 0;
    if (target < 1) target = 1;
    for (unsigned i = 0; i < HIST_N; i++) {
        cum += hist[i];
        if (cum >= target) return hval(i);
    }
    return st.lat_max_us;
}

/* ---------------------------------------------------------------- buffers */

static uint8_t *out_reserve(conn *c, uint32_t n)
{
    if (c->outlen + n > c->outcap) {
        if (c->outoff) {
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        if (c->outlen + n > c->outcap) {
            uint32_t cap = c->outcap ? c->outcap : 256;
            while (cap < c->outlen + n) cap *= 2;
            uint8_t *p = realloc(c->out, cap);
            if (!p) { perror("realloc"); exit(2); }
            c->out = p;
            c->outcap = cap;
        }
    }
    return c->out + c->outlen;
}

static void out_append(conn *c, const void *data, uint32_t n)
{
    memcpy(out_reserve(c, n), data, n);
    c->outlen += n;
}

static void mark_dirty(conn *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->next_dirty = dirty_head;
        dirty_head = c;
    }
}

/* ---------------------------------------------------------------- connections */

static void conn_close(conn *c, int count_as_disconnect)
{
    if (c->state == CS_CLOSED) return;
    if (c->state == CS_CONNECTING || c->state == CS_LOGIN || c->state == CS_JOIN) st.setup_inflight--;
    if (count_as_disconnect && phase != PH_DONE) st.disconnects++;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = CS_CLOSED;
    st.outstanding -= c->outstanding;
    c->outstanding = 0;
    free(c->in); c->in = NULL; c->inlen = c->incap = 0;
    free(c->out); c->out = NULL; c->outlen = c->outoff = c->outcap = 0;
}

static void framing_error(conn *c)
{
    st.framing++;
    conn_close(c, 0);
}

static void send_login(conn *c)
{
    if (opt.proto == PROTO_CHAT) {
        if (opt.scenario == SC_ROOM) {
            static const uint8_t hello[] = {0x05, 0, 0, 0, 1, CHAT_ROOM_VERSION};
            out_append(c, hello, sizeof hello);
        }
        uint8_t *w = out_reserve(c, FRAME_HDR + c->namelen);
        w[0] = 0x01;
        put_be32(w + 1, c->namelen);
        memcpy(w + FRAME_HDR, c->name, c->namelen);
        c->outlen += FRAME_HDR + c->namelen;
        if (opt.scenario == SC_ROOM) {
            w = out_reserve(c, FRAME_HDR + c->chanlen);
            w[0] = 0x0d;
            put_be32(w + 1, c->chanlen);
            memcpy(w + FRAME_HDR, c->chan, c->chanlen);
            c->outlen += FRAME_HDR + c->chanlen;
        }
    } else {
        char line[384];
        int n;
        if (opt.irc_caps)
            n = snprintf(line, sizeof line, "CAP REQ :%s\r\nNICK %s\r\nUSER %s 0 * :%s\r\nCAP END\r\n",
                         opt.irc_caps, c->name, c->name, c->name);
        else
            n = snprintf(line, sizeof line, "NICK %s\r\nUSER %s 0 * :%s\r\n", c->name, c->name, c->name);
        out_append(c, line, (uint32_t)n);
    }
    mark_dirty(c);
}

static void on_connected(conn *c)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
        st.connect_fail++;
        conn_close(c, 0);
        return;
    }
    st.connected++;
    c->state = CS_LOGIN;
    send_login(c);
}

static void start_connect(conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { st.connect_fail++; c->state = CS_CLOSED; return; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nbind) {
        /* the port is picked at connect(), per (source, destination) pair: without this,
         * bind() would pick it alone and could run out sooner */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        const struct sockaddr_in *b = &bind_addrs[c->id % nbind];
        if (bind(fd, (const struct sockaddr *)b, sizeof *b) < 0) {
            static int told;
            char ip[INET_ADDRSTRLEN];
            if (!told++)
                fprintf(stderr, "bind %s: %s\n", inet_ntop(AF_INET, &b->sin_addr, ip, sizeof ip), strerror(errno));
            close(fd); st.connect_fail++; c->state = CS_CLOSED; return;
        }
    }
    const struct sockaddr_in *to = &addrs[c->id % naddrs];
    int r = connect(fd, (const struct sockaddr *)to, sizeof *to);
    if (r < 0 && errno != EINPROGRESS) { close(fd); st.connect_fail++; c->state = CS_CLOSED; return; }
    c->fd = fd;
    c->state = CS_CONNECTING;
    st.setup_inflight++;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) { perror("epoll_ctl"); exit(2); }
    if (r == 0) on_connected(c);
}

static void login_done(conn *c, int ok)
{
    st.setup_inflight--;
    if (ok) {
        c->state = CS_READY;
        st.ready++;
    } else {
        st.login_fail++;
        c->state = CS_IDLE;       /* so conn_close does not count it twice */
        conn_close(c, 0);
    }
}

/* room: registered (001); the client counts as logged in only once it is in its channel,
 * so that no member misses the first messages */
static void start_join(conn *c)
{
    out_append(c, "JOIN ", 5);
    out_append(c, c->chan, c->chanlen);
    out_append(c, "\r\n", 2);
    mark_dirty(c);
    c->state = CS_JOIN;
}

/* room: the server refused the JOIN (e.g. 405 too many channels, 471 channel full);
 * the first refusal is printed because it names the server setting to change */
static void join_refused(conn *c, const uint8_t *line, size_t n)
{
    static int told;
    if (!told++) fprintf(stderr, "JOIN %s by %s refused: %.*s\n", c->chan, c->name, (int)n, line);
    login_done(c, 0);
}

/* ---------------------------------------------------------------- sending */

static inline int sending_phase(void) { return phase == PH_WARMUP || phase == PH_MEASURE; }

static void send_one(conn *c, conn *p)
{
    uint32_t P = (uint32_t)opt.payload;
    uint64_t seq = c->tx_seq++;
    uint64_t ts = now_ns() - t0;
    uint8_t *w;
    if (opt.proto == PROTO_CHAT) {
        /* room: to the room (p is only the witness); otherwise to p */
        const char *tn = c->chanlen ? c->chan : p->name;
        uint8_t tl = c->chanlen ? c->chanlen : p->namelen;
        uint32_t blen = 1 + tl + P;
        w = out_reserve(c, FRAME_HDR + blen);
        w[0] = 0x03;
        put_be32(w + 1, blen);
        w[5] = tl;
        memcpy(w + 6, tn, tl);
        w += 6 + tl;
        c->outlen += FRAME_HDR + blen;
    } else {
        /* room: to the channel (p is only the witness); otherwise to p's nick */
        const char *tn = c->chanlen ? c->chan : p->name;
        uint32_t tl = c->chanlen ? c->chanlen : p->namelen;
        uint32_t n = 8 + tl + 2 + P + 2;
        w = out_reserve(c, n);
        memcpy(w, "PRIVMSG ", 8);
        memcpy(w + 8, tn, tl);
        memcpy(w + 8 + tl, " :", 2);
        memcpy(w + 10 + tl + P, "\r\n", 2);
        w += 10 + tl;
        c->outlen += n;
    }
    put_hex16(w, seq);
    put_hex16(w + 16, ts);
    memcpy(w + PL_HDR, pattern + seq % 26 + PL_HDR, P - PL_HDR);
    c->outstanding++;
    st.outstanding++;
    st.tot_sent++;
    if (phase == PH_MEASURE) st.sent++;
}

static void fill_window(conn *c)
{
    if (!sending_phase() || c->state != CS_READY || c->peer < 0) return;
    conn *p = &conns[c->peer];
    if (p->state != CS_READY) return;
    if (c->outstanding >= (uint32_t)opt.window) return;
    while (c->outstanding < (uint32_t)opt.window) send_one(c, p);
    mark_dirty(c);
}

/* ---------------------------------------------------------------- receiving */

static int tok_eq(const uint8_t *p, size_t n, const char *s)
{
    size_t sl = strlen(s);
    return n == sl && !memcmp(p, s, n);
}

/* prefix + digits -> id, or -1 */
static int parse_name(const uint8_t *s, size_t n)
{
    size_t pl = strlen(opt.prefix);
    if (n <= pl || n > pl + 7 || memcmp(s, opt.prefix, pl)) return -1;
    long v = 0;
    for (size_t i = pl; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < N ? (int)v : -1;
}

/* one latency sample: receive time minus the send time carried in the payload */
static void lat_sample(uint64_t ts)
{
    uint64_t t = now - t0;
    uint64_t us = t > ts ? (t - ts) / 1000 : 0;
    hist[hidx(us)]++;
    st.lat_n++;
    st.lat_sum_us += us;
    if (us > st.lat_max_us) st.lat_max_us = us;
}

/* --verify: the text is the fill of its sequence number, which is the one *next expected */
static void verify_msg(uint64_t *next, uint64_t seq, const uint8_t *text, size_t tl)
{
    if (tl != (size_t)opt.payload || memcmp(text + PL_HDR, pattern + seq % 26 + PL_HDR, tl - PL_HDR))
        st.payload_bad++;
    if (seq == *next) (*next)++;
    else if (seq > *next) { st.lost += seq - *next; *next = seq + 1; }
    else st.dup_reorder++;
}

/* A relayed message from `name` arrived at r. */
static void on_delivery(conn *r, const uint8_t *name, size_t nl, const uint8_t *text, size_t tl)
{
    st.tot_delivered++;
    int sid = parse_name(name, nl);
    conn *s = sid >= 0 ? &conns[sid] : NULL;
    if (!s || s->peer != r->id) {
        st.wrong_sender++;
        if (!s) return;
    }
    uint64_t seq, ts;
    int ok = tl >= PL_HDR && get_hex16(text, &seq) && get_hex16(text + 16, &ts);
    if (!ok) {
        st.payload_bad++;
    } else {
        if (phase == PH_MEASURE) {
            st.delivered++;
            lat_sample(ts);
        }
        if (opt.verify) verify_msg(&s->rx_next, seq, text, tl);
    }
    s->rx_count++;
    if (opt.proto == PROTO_IRC) {
        if (s->outstanding) { s->outstanding--; st.outstanding--; }
        fill_window(s);
    }
}

/* room: r's copy of a channel message from `name`. Every copy is counted and (--verify)
 * checked per receiver and sender; only the witness (s->peer == r) frees the sender's
 * slot and gives the latency sample, so one slow member cannot stall a sender by itself. */
static void on_room_delivery(conn *r, const uint8_t *name, size_t nl, const uint8_t *text, size_t tl)
{
    int M = opt.members, sid = parse_name(name, nl);
    /* a sender of r's own room, never r (IRC does not echo a channel message to its sender;
     * chatroom's echo is counted apart before this) */
    if (sid < 0 || sid == r->id || sid / M != r->id / M || sid % M >= opt.senders) {
        st.wrong_sender++;
        return;
    }
    conn *s = &conns[sid];
    int witness = s->peer == r->id;
    st.tot_deliveries++;
    if (phase == PH_MEASURE) st.deliveries++;
    uint64_t seq, ts;
    if (!(tl >= PL_HDR && get_hex16(text, &seq) && get_hex16(text + 16, &ts))) {
        st.payload_bad++;
    } else {
        if (witness && phase == PH_MEASURE) {
            st.delivered++;
            lat_sample(ts);
        }
        if (opt.verify) verify_msg(&room_next[(size_t)r->id * (size_t)opt.senders + (size_t)(sid % M)], seq, text, tl);
    }
    if (!witness) return;
    st.tot_delivered++;
    if (s->outstanding) { s->outstanding--; st.outstanding--; }
    fill_window(s);
}

/* room, chat: a RESPONSE while setting up (to HELLO, LOGIN, JOIN) or to a SENDTO to the room.
 * A FAILURE carries a reason byte and maybe a detail (HELLO 3); the first refusal in the
 * setup is printed, since it names what to change (e.g. --members-per-room). A SENDTO's OK
 * frees nothing (the witness does); a failed one will reach nobody, so it frees its slot. */
static void on_room_response(conn *c, const uint8_t *b, uint32_t len)
{
    if (len < 1) { framing_error(c); return; }
    uint8_t code = b[0];
    if (c->state == CS_LOGIN) {
        if (code == 0) {
            if (++c->joined == ROOM_SETUP_STEPS) login_done(c, 1);
            return;
        }
        static int told;
        if (!told++)
            fprintf(stderr, "setup step %d of %s (%s) refused: status %u, reason %u\n", c->joined + 1, c->name, c->chan,
                    code, len > 1 ? b[1] : 0);
        login_done(c, 0);
        return;
    }
    st.tot_replies++;
    if (phase == PH_MEASURE) { st.replies++; if (code == 0) st.replies_ok++; }
    if (code == 0) return;
    if (code == 2) st.malformed++;
    else st.failure++;
    c->tx_failed++;
    st.tot_failed_send++;
    if (c->outstanding) { c->outstanding--; st.outstanding--; }
    fill_window(c);
}

/* room, chat: ROOM-MESSAGE: name field (room), name field (sender), u64 id, u64 time, text */
static void on_room_message(conn *c, const uint8_t *b, uint32_t len)
{
    if (len < 1 || 1u + b[0] + 1u > len) { framing_error(c); return; }
    const uint8_t *room = b + 1, *sender = b + 2 + b[0];
    uint8_t rl = b[0], sl = b[1 + rl];
    uint32_t head = 2u + rl + sl + 16u;
    if (head > len) { framing_error(c); return; }
    if (c->state != CS_READY) { st.unexpected++; return; }
    if (!tok_eq(room, rl, c->chan)) st.wrong_target++;
    if (sl == c->namelen && !memcmp(sender, c->name, sl)) { st.echoes++; return; }
    on_room_delivery(c, sender, sl, b + head, len - head);
}

static void on_chat_frame(conn *c, uint8_t type, const uint8_t *b, uint32_t len)
{
    switch (type) {
    case 0x89:
        on_room_message(c, b, len);
        return;
    case 0x8c:      /* ROOM-EVENT: members joining while the rooms fill up */
        return;
    case 0x86:      /* VERSION: the server speaks an older version than HELLO 3 asked for */
        if (c->state == CS_LOGIN) {
            static int told;
            if (!told++) fprintf(stderr, "the server speaks version %u, rooms need %d\n", len ? b[0] : 0,
                                 CHAT_ROOM_VERSION);
            login_done(c, 0);
        }
        return;
    case 0x82: {
        if (opt.scenario == SC_ROOM) { on_room_response(c, b, len); return; }
        if (len != 1 || b[0] > 2) { framing_error(c); return; }
        uint8_t code = b[0];
        if (c->state == CS_LOGIN) { login_done(c, code == 0); return; }
        st.tot_replies++;
        if (phase == PH_MEASURE) { st.replies++; if (code == 0) st.replies_ok++; }
        if (code == 1) st.failure++;
        if (code == 2) st.malformed++;
        if (code) { c->tx_failed++; st.tot_failed_send++; }
        if (c->outstanding) { c->outstanding--; st.outstanding--; }
        else st.unexpected++;
        fill_window(c);
        return;
    }
    case 0x83: {
        if (len < 1 || 1u + b[0] > len) { framing_error(c); return; }
        uint8_t n = b[0];
        if (c->state != CS_READY) { st.unexpected++; return; }
        on_delivery(c, b + 1, n, b + 1 + n, len - 1 - n);
        return;
    }
    case 0x81: {
        uint32_t off = 0;
        while (off < len) {
            if (off + 1 + b[off] > len) { framing_error(c); return; }
            off += 1 + b[off];
        }
        st.unexpected++;
        return;
    }
    default:
        framing_error(c);
    }
}

static size_t parse_chat(conn *c, const uint8_t *b, size_t len)
{
    size_t off = 0;
    while (len - off >= FRAME_HDR) {
        uint8_t t = b[off];
        uint32_t l = get_be32(b + off + 1);
        int known = t == 0x81 || t == 0x82 || t == 0x83 ||
                    (opt.scenario == SC_ROOM && (t == 0x86 || t == 0x89 || t == 0x8c));
        if (l > MAX_BODY || !known) { framing_error(c); return off; }
        if (len - off - FRAME_HDR < l) break;
        on_chat_frame(c, t, b + off + FRAME_HDR, l);
        if (c->state == CS_CLOSED) return off;
        off += FRAME_HDR + l;
    }
    return off;
}

/* the IRC parameter at *pp: up to the next space, or all the rest after a ':'; moves *pp past it */
static size_t irc_param(const uint8_t **pp, const uint8_t *end, const uint8_t **tok)
{
    const uint8_t *p = *pp;
    while (p < end && *p == ' ') p++;
    if (p < end && *p == ':') { *tok = p + 1; *pp = end; return (size_t)(end - p - 1); }
    const uint8_t *sp = memchr(p, ' ', (size_t)(end - p));
    const uint8_t *e = sp ? sp : end;
    *tok = p;
    *pp = e;
    return (size_t)(e - p);
}

/* room: what = 1 our JOIN echoed, 2 the channel's end of NAMES (366); with both we are a
 * member the server will copy channel messages to, and count as logged in */
static void room_joined(conn *c, uint8_t what)
{
    c->joined |= what;
    if (c->joined == 3) login_done(c, 1);
}

static void on_irc_line(conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *line = p, *end = p + n, *prefix = NULL, *sp, *tok;
    size_t tl;
    size_t plen = 0;
    if (n == 0) return;
    if (*p == '@') {                                /* IRCv3 tags (--irc-caps): skipped */
        sp = memchr(p, ' ', n);
        if (!sp) { framing_error(c); return; }
        n -= (size_t)(sp + 1 - p);
        p = line = sp + 1;
        if (n == 0) return;
    }
    if (*p == ':') {
        sp = memchr(p, ' ', n);
        if (!sp) { framing_error(c); return; }
        prefix = p + 1;
        plen = (size_t)(sp - prefix);
        p = sp + 1;
        while (p < end && *p == ' ') p++;
    }
    const uint8_t *cmd = p;
    sp = memchr(p, ' ', (size_t)(end - p));
    size_t cl = sp ? (size_t)(sp - p) : (size_t)(end - p);
    p = sp ? sp + 1 : end;

    if (tok_eq(cmd, cl, "PRIVMSG")) {
        if (c->state != CS_READY || !prefix) { st.unexpected++; return; }
        const uint8_t *tgt = p;
        sp = memchr(p, ' ', (size_t)(end - p));
        if (!sp) { framing_error(c); return; }
        if (!tok_eq(tgt, (size_t)(sp - tgt), c->chanlen ? c->chan : c->name)) st.wrong_target++;
        p = sp + 1;
        if (p < end && *p == ':') p++;
        const uint8_t *bang = memchr(prefix, '!', plen);
        size_t nl = bang ? (size_t)(bang - prefix) : plen;
        if (opt.scenario == SC_ROOM) on_room_delivery(c, prefix, nl, p, (size_t)(end - p));
        else on_delivery(c, prefix, nl, p, (size_t)(end - p));
    } else if (tok_eq(cmd, cl, "JOIN")) {
        /* room setup: only our own JOIN counts (later members' JOINs reach us too) */
        if (c->state != CS_JOIN || !prefix) return;
        const uint8_t *bang = memchr(prefix, '!', plen);
        tl = irc_param(&p, end, &tok);
        if (tok_eq(prefix, bang ? (size_t)(bang - prefix) : plen, c->name) && tok_eq(tok, tl, c->chan))
            room_joined(c, 1);
    } else if (tok_eq(cmd, cl, "PING")) {
        out_append(c, "PONG ", 5);
        out_append(c, p, (uint32_t)(end - p));
        out_append(c, "\r\n", 2);
        mark_dirty(c);
    } else if (cl == 3 && cmd[0] >= '0' && cmd[0] <= '9') {
        int num = (cmd[0] - '0') * 100 + (cmd[1] - '0') * 10 + (cmd[2] - '0');
        if (c->state == CS_LOGIN) {
            if (num == 1 && opt.scenario == SC_ROOM) start_join(c);
            else if (num == 1) login_done(c, 1);
            else if (num >= 400) login_done(c, 0);
        } else if (c->state == CS_JOIN) {           /* MOTD (or 422) may still arrive here */
            if (num == 366) {                       /* "<nick> <channel> :End of NAMES list" */
                irc_param(&p, end, &tok);
                tl = irc_param(&p, end, &tok);
                if (tok_eq(tok, tl, c->chan)) room_joined(c, 2);
            } else if (num >= 400 && num != 422) {
                join_refused(c, line, n);
            }
        } else if (num >= 400 && num != 422) {      /* 422: no MOTD, harmless */
            st.irc_err++;
        }
    } else if (tok_eq(cmd, cl, "ERROR")) {
        st.irc_err++;
    }
}

static size_t parse_irc(conn *c, const uint8_t *b, size_t len)
{
    size_t off = 0;
    while (off < len) {
        const uint8_t *nl = memchr(b + off, '\n', len - off);
        if (!nl) {
            if (len - off > IRC_MAX_LINE) { framing_error(c); return off; }
            break;
        }
        size_t ll = (size_t)(nl - (b + off));
        size_t l2 = ll;
        if (l2 && b[off + l2 - 1] == '\r') l2--;
        on_irc_line(c, b + off, l2);
        if (c->state == CS_CLOSED) return off;
        off += ll + 1;
    }
    return off;
}

/* room: ACK what was just read now, and the next segments too. ngircd never sets
 * TCP_NODELAY, so its next small write to a member waits (Nagle) for that member's ACK;
 * a member that mostly listens ACKs on the kernel's delayed-ACK timer (40 ms), and a run
 * can lock into measuring that timer (C=100 M=10: ~22 k msg/s, ngircd at 14% CPU, p99
 * ~47 ms). TCP_QUICKACK is not sticky, hence once per read. */
static void quick_ack(conn *c)
{
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static void handle_read(conn *c, uint32_t events)
{
    size_t len = c->inlen;
    if (len) memcpy(rbuf, c->in, len);
    c->inlen = 0;
    for (;;) {
        size_t space = RBUF_SIZE - len;
        ssize_t n = read(c->fd, rbuf + len, space);
        if (n > 0) {
            now = now_ns();
            len += (size_t)n;
            size_t used = opt.proto == PROTO_CHAT ? parse_chat(c, rbuf, len) : parse_irc(c, rbuf, len);
            if (c->state == CS_CLOSED) return;
            len -= used;
            if (len && used) memmove(rbuf, rbuf + used, len);
            /* A short read drained the socket; a later arrival raises a new edge.
             * With RDHUP pending we read on until EOF. */
            if ((size_t)n < space && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) break;
            continue;
        }
        if (n == 0) { conn_close(c, 1); return; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        conn_close(c, 1);
        return;
    }
    if (len) {
        if (len > c->incap) {
            uint8_t *p = realloc(c->in, len);
            if (!p) { perror("realloc"); exit(2); }
            c->in = p;
            c->incap = (uint32_t)len;
        }
        memcpy(c->in, rbuf, len);
        c->inlen = (uint32_t)len;
    }
    if (opt.scenario == SC_ROOM && !opt.delayed_ack) quick_ack(c);
}

static void flush_conn(conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (n > 0) { c->outoff += (uint32_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;      /* EPOLLOUT edge will follow */
        conn_close(c, 1);
        return;
    }
    c->outoff = c->outlen = 0;
}

static void flush_dirty(void)
{
    while (dirty_head) {
        conn *c = dirty_head;
        dirty_head = c->next_dirty;
        c->dirty = 0;
        if (c->state != CS_CLOSED && c->state != CS_CONNECTING) flush_conn(c);
    }
}

/* ---------------------------------------------------------------- phases */

/* room: every message sent should reach the other M-1 members of its room */
static uint64_t room_expected(void) { return (st.tot_sent - st.tot_failed_send) * (uint64_t)(opt.members - 1); }

static int drained(void)
{
    if (st.outstanding > 0) return 0;
    /* room: a witness's copy says nothing about the other members' copies */
    if (opt.scenario == SC_ROOM && st.tot_deliveries < room_expected()) return 0;
    return st.tot_delivered + st.tot_failed_send >= st.tot_sent;
}

static uint64_t secs(double s) { return (uint64_t)(s * 1e9); }

/* returns 1 when the phase changed */
static int advance_phase(void)
{
    uint64_t t = now_ns();
    switch (phase) {
    case PH_SETUP:
        if ((next_conn < N || st.setup_inflight > 0) && t < setup_deadline && !g_stop) return 0;
        t_setup_done = t;
        if (st.ready < N)
            fprintf(stderr, "setup %s: %d of %d logged in (connect failures %" PRIu64 ", login failures %" PRIu64 ")\n",
                    g_stop ? "interrupted" : next_conn < N || st.setup_inflight ? "timed out" : "done",
                    st.ready, N, st.connect_fail, st.login_fail);
        if (g_stop) { phase = PH_DONE; return 1; }
        if (opt.scenario == SC_HOLD) {
            printf("READY %d\n", st.ready);
            fflush(stdout);
            if (opt.server_pid) srv_rss_ready = proc_status_kb(opt.server_pid, "VmRSS:");
            phase = PH_HOLD;
            t_hold_start = t;
            cpu_hold_start = cpu_self();
            phase_end = t + secs(opt.duration);
        } else {
            phase = PH_WARMUP;
            phase_end = t + secs(opt.warmup);
            for (int i = 0; i < N; i++) fill_window(&conns[i]);
        }
        return 1;
    case PH_WARMUP:
        if (t < phase_end && !g_stop) return 0;
        st.sent = st.delivered = st.replies = st.replies_ok = st.deliveries = 0;
        st.lat_n = st.lat_sum_us = st.lat_max_us = 0;
        memset(hist, 0, sizeof hist);
        cpu_meas_start = cpu_self();
        host_ok = host_ticks(host_start);
        if (opt.server_pid) srv_cpu_start = proc_cpu(opt.server_pid);
        t_meas_start = now_ns();
        phase = PH_MEASURE;
        phase_end = t_meas_start + secs(opt.duration);
        return 1;
    case PH_MEASURE:
        if (t < phase_end && !g_stop) return 0;
        t_meas_end = now_ns();
        cpu_meas_end = cpu_self();
        host_ok = host_ok && host_ticks(host_end);
        if (opt.server_pid) {
            srv_cpu_end = proc_cpu(opt.server_pid);
            srv_rss_end = proc_status_kb(opt.server_pid, "VmRSS:");
            srv_hwm_end = proc_status_kb(opt.server_pid, "VmHWM:");
        }
        phase = PH_DRAIN;
        phase_end = t + secs(opt.drain);
        return 1;
    case PH_DRAIN:
        if (!drained() && t < phase_end && g_stop < 2) return 0;
        phase = PH_DONE;
        return 1;
    case PH_HOLD:
        if (t < phase_end && !g_stop) return 0;
        t_hold_end = t;
        cpu_hold_end = cpu_self();
        if (opt.server_pid) {
            srv_rss_end = proc_status_kb(opt.server_pid, "VmRSS:");
            srv_hwm_end = proc_status_kb(opt.server_pid, "VmHWM:");
        }
        phase = PH_DONE;
        return 1;
    }
    return 0;
}

static int wait_ms(void)
{
    uint64_t t = now_ns(), until = phase == PH_SETUP ? setup_deadline : phase_end;
    if (until <= t) return 0;
    uint64_t ms = (until - t) / 1000000 + 1;
    return ms > 1000 ? 1000 : (int)ms;
}

/* ---------------------------------------------------------------- report */

static const char *proto_name(void) { return opt.proto == PROTO_CHAT ? "chat" : "irc"; }
static const char *scen_name(void)
{
    return opt.scenario == SC_RELAY ? "relay" : opt.scenario == SC_FANIN ? "fanin"
         : opt.scenario == SC_ROOM ? "room" : "hold";
}

/* The flat keys of the older shared/bench loadgen, same meanings; compare.py reads
 * msgs_per_s (printed by the caller), p99_us, violations, framing_errors, disconnects.
 * seconds: the measured window (hold: idle time); failures: FAILURE or MALFORMED replies
 * to SENDTO; connect_s: connect + log in everyone; loadgen_cpu: 1.0 = one core. */
static void flat_keys(char *buf, size_t n, double seconds, uint64_t p50, uint64_t p99, uint64_t p999,
                      uint64_t violations, double setup_s, double cpu_pct)
{
    snprintf(buf, n, "\"seconds\":%.3f,\"replies_ok\":%" PRIu64 ",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
             ",\"p999_us\":%" PRIu64 ",\"max_us\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"violations\":%" PRIu64
             ",\"framing_errors\":%" PRIu64 ",\"disconnects\":%" PRIu64 ",\"connect_s\":%.3f,\"loadgen_cpu\":%.3f",
             seconds, st.replies_ok, p50, p99, p999, st.lat_max_us, st.failure + st.malformed, violations,
             st.framing, st.disconnects, setup_s, cpu_pct / 100.0);
}

/* prints the result; returns 1 when anything went wrong (errors, violations, nobody logged in) */
static int report(void)
{
    int alive = 0;
    for (int i = 0; i < N; i++) alive += conns[i].state == CS_READY;
    uint64_t errors = st.failure + st.malformed + st.disconnects + st.framing + st.connect_fail +
                      st.login_fail + st.unexpected + st.irc_err;
    double setup_s = t_setup_done ? (double)(t_setup_done - t0) / 1e9 : 0;
    char srv[512] = "null", flat[768];

    if (opt.scenario == SC_HOLD) {
        double held = t_hold_end > t_hold_start ? (double)(t_hold_end - t_hold_start) / 1e9 : 0;
        double per_conn = st.ready && srv_rss_ready >= 0 && srv_rss_start >= 0
                              ? (double)(srv_rss_ready - srv_rss_start) / st.ready : -1;
        if (opt.server_pid)
            snprintf(srv, sizeof srv, "{\"pid\":%d,\"rss_kb_start\":%ld,\"rss_kb_ready\":%ld,\"rss_kb_end\":%ld,"
                     "\"hwm_kb\":%ld,\"kb_per_conn\":%.2f}",
                     opt.server_pid, srv_rss_start, srv_rss_ready, srv_rss_end, srv_hwm_end, per_conn);
        printf("hold/%s C=%d: %d logged in (setup %.2fs), %d alive after %.1fs, errors %" PRIu64,
               proto_name(), opt.clients, st.ready, setup_s, alive, held, errors);
        if (opt.server_pid && srv_rss_ready >= 0)
            printf(", server RSS %.1f MB at READY (%.1f MB before connecting, %.2f KB/conn)", srv_rss_ready / 1024.0,
                   srv_rss_start / 1024.0, per_conn);
        printf("\n");
        flat_keys(flat, sizeof flat, held, 0, 0, 0,
                  st.wrong_sender + st.wrong_target + st.lost + st.dup_reorder + st.payload_bad, setup_s,
                  held > 0 ? 100.0 * (cpu_hold_end - cpu_hold_start) / held : 0);
        printf("RESULT {\"proto\":\"%s\",\"scenario\":\"hold\",\"clients\":%d,\"connected\":%d,"
               "\"logged_in\":%d,\"alive_end\":%d,\"setup_s\":%.3f,\"held_s\":%.3f,"
               "\"errors\":{\"total\":%" PRIu64 ",\"disconnects\":%" PRIu64 ",\"connect_fail\":%" PRIu64
               ",\"login_fail\":%" PRIu64 ",\"framing\":%" PRIu64 ",\"unexpected\":%" PRIu64 ",\"irc_error\":%" PRIu64
               "},\"server\":%s,\"window\":%d,\"payload\":%d,\"delivered\":0,\"msgs_per_s\":0.0,%s}\n",
               proto_name(), opt.clients, st.connected, st.ready, alive, setup_s, held, errors,
               st.disconnects, st.connect_fail, st.login_fail, st.framing, st.unexpected, st.irc_err, srv,
               opt.window, opt.payload, flat);
        fflush(stdout);
        return errors > 0 || alive < opt.clients;
    }

    double win = t_meas_end > t_meas_start ? (double)(t_meas_end - t_meas_start) / 1e9 : 0;
    double mps = win > 0 ? st.delivered / win : 0, rps = win > 0 ? st.replies / win : 0;
    double sps = win > 0 ? st.sent / win : 0;
    if (win < 1e-3) win = 0;
    double lg_cpu = win > 0 ? 100.0 * (cpu_meas_end - cpu_meas_start) / win : 0;
    double srv_cpu = -1;
    if (opt.server_pid && srv_cpu_start >= 0 && srv_cpu_end >= srv_cpu_start && win > 0)
        srv_cpu = 100.0 * (srv_cpu_end - srv_cpu_start) / win;
    /* machine-wide, in cores x 100 (2 cores = 200%): softirq is where loopback TCP work is
     * charged, and it is not in either process's own CPU time */
    double host_busy = -1, host_si = -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (host_ok && win > 0 && host_end[2] > host_start[2]) {
        double tot = (double)(host_end[2] - host_start[2]);
        host_busy = 100.0 * ncpu * (double)(host_end[0] - host_start[0]) / tot;
        host_si = 100.0 * ncpu * (double)(host_end[1] - host_start[1]) / tot;
    }
    uint64_t p50 = hist_pct(0.50), p90 = hist_pct(0.90), p99 = hist_pct(0.99), p999 = hist_pct(0.999);
    double mean = st.lat_n ? (double)st.lat_sum_us / st.lat_n : 0;
    int drained_ok = drained();
    uint64_t undelivered = st.tot_sent > st.tot_delivered + st.tot_failed_send
                               ? st.tot_sent - st.tot_delivered - st.tot_failed_send : 0;
    char room[512] = "";
    if (opt.scenario == SC_ROOM) {
        /* every member's missing copy counts, not only the witness's */
        uint64_t expect = room_expected();
        undelivered = expect > st.tot_deliveries ? expect - st.tot_deliveries : 0;
        snprintf(room, sizeof room, "\"room\":{\"rooms\":%d,\"members\":%d,\"senders\":%d,\"fanout\":%d,"
                 "\"deliveries\":%" PRIu64 ",\"deliveries_per_s\":%.1f,\"deliveries_total\":%" PRIu64
                 ",\"deliveries_expected\":%" PRIu64 ",\"echoes\":%" PRIu64 ",\"quick_ack\":%s},",
                 opt.clients / opt.members, opt.members, opt.senders, opt.members - 1, st.deliveries,
                 win > 0 ? st.deliveries / win : 0, st.tot_deliveries, expect, st.echoes,
                 opt.delayed_ack ? "false" : "true");
    }
    uint64_t violations = st.wrong_sender + st.wrong_target + st.lost + st.dup_reorder + st.payload_bad + undelivered;
    if (opt.server_pid)
        snprintf(srv, sizeof srv, "{\"pid\":%d,\"cpu_pct\":%.1f,\"rss_kb\":%ld,\"hwm_kb\":%ld}",
                 opt.server_pid, srv_cpu, srv_rss_end, srv_hwm_end);
    flat_keys(flat, sizeof flat, win, p50, p99, p999, violations, setup_s, lg_cpu);

    if (opt.scenario == SC_ROOM)
        printf("room/%s C=%d M=%d S=%d W=%d P=%d %.1fs: %.0f msg/s sent, %.0f deliveries/s (fan-out %d),"
               " witness latency us p50=%" PRIu64 " p99=%" PRIu64 " max=%" PRIu64 ", errors %" PRIu64 ", %s%" PRIu64
               ", loadgen cpu %.0f%%",
               proto_name(), opt.clients, opt.members, opt.senders, opt.window, opt.payload, win, sps,
               win > 0 ? st.deliveries / win : 0, opt.members - 1, p50, p99, st.lat_max_us, errors,
               opt.verify ? "verify violations " : "undelivered ", opt.verify ? violations : undelivered, lg_cpu);
    else
        printf("%s/%s C=%d W=%d P=%d %.1fs: %.0f msg/s delivered, %.0f replies/s, latency us p50=%" PRIu64
               " p99=%" PRIu64 " max=%" PRIu64 ", errors %" PRIu64 ", %s%" PRIu64 ", loadgen cpu %.0f%%",
               scen_name(), proto_name(), opt.clients, opt.window, opt.payload, win, mps, rps, p50, p99,
               st.lat_max_us, errors, opt.verify ? "verify violations " : "undelivered ",
               opt.verify ? violations : undelivered, lg_cpu);
    if (srv_cpu >= 0) printf(", server cpu %.0f%%", srv_cpu);
    if (host_busy >= 0) printf(", machine busy %.0f%% of %ld00%% (softirq %.0f%%)", host_busy, ncpu, host_si);
    printf("\n");
    printf("RESULT {\"proto\":\"%s\",\"scenario\":\"%s\",\"clients\":%d,\"window\":%d,\"payload\":%d,"
           "\"warmup_s\":%.3f,\"duration_s\":%.3f,\"setup_s\":%.3f,\"connected\":%d,\"logged_in\":%d,\"alive_end\":%d,"
           "\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"replies\":%" PRIu64 ","
           "\"sent_per_s\":%.1f,\"msgs_per_s\":%.1f,\"replies_per_s\":%.1f,"
           "\"latency_us\":{\"samples\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%" PRIu64 ",\"p90\":%" PRIu64
           ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 "},"
           "\"errors\":{\"total\":%" PRIu64 ",\"failure\":%" PRIu64 ",\"malformed\":%" PRIu64 ",\"disconnects\":%" PRIu64
           ",\"framing\":%" PRIu64 ",\"connect_fail\":%" PRIu64 ",\"login_fail\":%" PRIu64 ",\"unexpected\":%" PRIu64
           ",\"irc_error\":%" PRIu64 "},"
           "\"verify\":{\"enabled\":%s,\"violations\":%" PRIu64 ",\"wrong_sender\":%" PRIu64 ",\"wrong_target\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"dup_or_reorder\":%" PRIu64 ",\"payload_bad\":%" PRIu64 ",\"undelivered\":%" PRIu64
           ",\"drained\":%s},"
           "\"totals\":{\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"replies\":%" PRIu64 "},%s"
           "\"loadgen_cpu_pct\":%.1f,\"host_cpu\":{\"ncpu\":%ld,\"busy_pct\":%.1f,\"softirq_pct\":%.1f},"
           "\"server\":%s,%s}\n",
           proto_name(), scen_name(), opt.clients, opt.window, opt.payload, opt.warmup, win, setup_s,
           st.connected, st.ready, alive, st.sent, st.delivered, st.replies, sps, mps, rps,
           st.lat_n, mean, p50, p90, p99, p999, st.lat_max_us,
           errors, st.failure, st.malformed, st.disconnects, st.framing, st.connect_fail, st.login_fail,
           st.unexpected, st.irc_err,
           opt.verify ? "true" : "false", violations, st.wrong_sender, st.wrong_target, st.lost,
           st.dup_reorder, st.payload_bad, undelivered, drained_ok ? "true" : "false",
           st.tot_sent, st.tot_delivered, st.tot_replies, room, lg_cpu, ncpu, host_busy, host_si, srv, flat);
    fflush(stdout);
    return errors > 0 || violations > 0 || st.ready < N || st.delivered == 0;
}

/* ---------------------------------------------------------------- main */

static void on_signal(int sig) { (void)sig; g_stop++; }

/* room: defaults and checks; 1 = bad. Every room needs 2+ members: a channel message is
 * not echoed to its sender (IRC), and an echo frees no slot (chat), so a lone sender would
 * never get its credit back. A room's name is "#r" and up to 7 digits: 12 bytes hold it. */
static int room_options(void)
{
    if (!opt.members) opt.members = 10;
    if (!opt.senders) opt.senders = opt.members;
    if (opt.members < 2 || opt.clients % opt.members || opt.senders < 1 || opt.senders > opt.members) {
        fprintf(stderr, "--scenario room: --members M >= 2 dividing --clients C (%d), 1 <= --senders <= M\n",
                opt.clients);
        return 1;
    }
    return 0;
}

/* room k holds ids k*M .. k*M+M-1 in channel #rk; its first S members send, each one
 * credited by its witness, the next member in the room (the last wraps to the first) */
static void room_place(conn *c)
{
    int M = opt.members, k = c->id / M, j = c->id % M;
    c->chanlen = (uint8_t)snprintf(c->chan, sizeof c->chan, "#r%d", k);
    c->peer = j < opt.senders ? k * M + (j + 1) % M : -1;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: loadgen [options]\n"
        "  --proto chat|irc        protocol (default chat: the binary contract; irc: NICK/USER/PRIVMSG)\n"
        "  --scenario relay|fanin|hold|room   (default relay)\n"
        "  --host H --port P       server (default 127.0.0.1:5555); P1,P2,...: connection i at the\n"
        "                          (i mod n)th (a cluster's nodes: a room's members alternate)\n"
        "  --clients C             relay: C clients in pairs (chat: an odd C is rounded up to even);\n"
        "                          fanin: C senders + 1 receiver; hold: C idle;\n"
        "                          room: C members in all, a multiple of M (default 2)\n"
        "  --members M             room: members per room #r0, #r1, ... (default 10)\n"
        "  --senders S             room: how many members of each room send, 1..M (default M)\n"
        "  --delayed-ack           room: leave the kernel's delayed ACKs on (default: TCP_QUICKACK after\n"
        "                          each read, since a server without TCP_NODELAY stalls ~40 ms on them)\n"
        "  --window W              messages in flight per sender (default 1); room: a slot is freed\n"
        "                          when the witness (the sender's next member) receives the message\n"
        "  --payload P             text bytes per message, >= 32 (default 64; chat: less is raised to 32;\n"
        "                          irc: 32..%d)\n"
        "  --duration D            measured seconds (hold: idle seconds) (default 5)\n"
        "  --warmup S              seconds of load before measuring (default 1)\n"
        "  --drain S               max seconds to wait for in-flight messages after measuring (default 5)\n"
        "  --setup-timeout S       max seconds to connect and log everyone in (default 60)\n"
        "  --conc N                max connections connecting/logging in at once (default 64; irc 8)\n"
        "  --verify                check sender, payload bytes and per-sender sequence (no loss/dup/reorder);\n"
        "                          room: at every member, for every sender of its room\n"
        "  --server-pid PID        also report that process's CPU%% and RSS (from /proc)\n"
        "  --name-prefix S         user names are S0, S1, ... (default u); lets two loadgens share a server\n"
        "  --irc-caps \"A B\"        irc: ask for these IRCv3 capabilities before registering (server-time,\n"
        "                          message-tags ...); the tags lines then carry are read past\n"
        "  --bind-ips A,B,...      connection i connects from source address i mod n (IPv4, e.g.\n"
        "                          127.0.0.2,127.0.0.3): for more than ~28,000 connections to one address\n"
        "Output: one human line, then 'RESULT {json}' (nested objects plus the flat keys compare.py reads:\n"
        "msgs_per_s, p99_us, violations, framing_errors, disconnects, ...). hold prints 'READY <n>' once all\n"
        "are logged in.\n"
        "Exit status: 0 clean run; 1 errors, verify violations, undelivered messages or clients missing; 2 usage.\n",
        IRC_MAX_PAYLOAD);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"proto", 1, 0, 'p'}, {"scenario", 1, 0, 's'}, {"host", 1, 0, 'H'}, {"port", 1, 0, 'P'},
        {"clients", 1, 0, 'c'}, {"window", 1, 0, 'w'}, {"payload", 1, 0, 'l'}, {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'u'}, {"drain", 1, 0, 'D'}, {"setup-timeout", 1, 0, 'T'}, {"conc", 1, 0, 'n'},
        {"verify", 0, 0, 'v'}, {"server-pid", 1, 0, 'S'}, {"name-prefix", 1, 0, 'x'}, {"irc-caps", 1, 0, 'C'}, {"help", 0, 0, 'h'},
        {"members", 1, 0, 'm'}, {"senders", 1, 0, 'e'}, {"delayed-ack", 0, 0, 'A'}, {"bind-ips", 1, 0, 'b'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'p':
            if (!strcmp(optarg, "chat")) opt.proto = PROTO_CHAT;
            else if (!strcmp(optarg, "irc")) opt.proto = PROTO_IRC;
            else { fprintf(stderr, "bad --proto %s\n", optarg); return 2; }
            break;
        case 's':
            if (!strcmp(optarg, "relay")) opt.scenario = SC_RELAY;
            else if (!strcmp(optarg, "fanin")) opt.scenario = SC_FANIN;
            else if (!strcmp(optarg, "hold")) opt.scenario = SC_HOLD;
            else if (!strcmp(optarg, "room")) opt.scenario = SC_ROOM;
            else { fprintf(stderr, "bad --scenario %s\n", optarg); return 2; }
            break;
        case 'H': opt.host = optarg; break;
        case 'P': opt.ports = optarg; opt.port = atoi(optarg); break;
        case 'c': opt.clients = atoi(optarg); break;
        case 'w': opt.window = atoi(optarg); break;
        case 'l': opt.payload = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'u': opt.warmup = atof(optarg); break;
        case 'D': opt.drain = atof(optarg); break;
        case 'T': opt.setup_timeout = atof(optarg); break;
        case 'n': opt.conc = atoi(optarg); break;
        case 'v': opt.verify = 1; break;
        case 'S': opt.server_pid = atoi(optarg); break;
        case 'x': opt.prefix = optarg; break;
        case 'C': opt.irc_caps = optarg; break;
        case 'm': opt.members = atoi(optarg); break;
        case 'e': opt.senders = atoi(optarg); break;
        case 'A': opt.delayed_ack = 1; break;
        case 'b': opt.bind_ips = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) { usage(stderr); return 2; }
    /* --proto chat: the older shared loadgen's rules, kept for its callers */
    if (opt.proto == PROTO_CHAT && opt.payload < (int)PL_HDR) {
        fprintf(stderr, "--payload %d: raised to %u (sequence + timestamp)\n", opt.payload, PL_HDR);
        opt.payload = (int)PL_HDR;
    }
    if (opt.proto == PROTO_CHAT && opt.scenario == SC_RELAY && opt.clients > 0 && opt.clients % 2) {
        fprintf(stderr, "--clients %d: rounded up to %d so that every relay client has a partner\n", opt.clients,
                opt.clients + 1);
        opt.clients++;
    }
    int maxp = opt.proto == PROTO_IRC ? IRC_MAX_PAYLOAD : 65535;
    if (opt.clients < 1 || opt.window < 1 || opt.payload < (int)PL_HDR || opt.payload > maxp ||
        opt.port < 1 || opt.port > 65535 || opt.duration < 0 || opt.warmup < 0 || opt.drain < 0 || opt.conc < 0) {
        fprintf(stderr, "bad option value (clients>=1, window>=1, %u<=payload<=%d, 1<=port<=65535)\n", PL_HDR, maxp);
        return 2;
    }
    if (opt.clients > 999999) { fprintf(stderr, "too many clients\n"); return 2; }
    if (opt.scenario == SC_ROOM && room_options()) return 2;
    if (opt.scenario != SC_ROOM && (opt.members || opt.senders || opt.delayed_ack)) {
        fprintf(stderr, "--members/--senders/--delayed-ack: only with --scenario room\n");
        return 2;
    }
    size_t pl = strlen(opt.prefix);
    if (pl < 1 || pl > 8 || strspn(opt.prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != pl) {
        fprintf(stderr, "--name-prefix: 1..8 ASCII letters\n");
        return 2;
    }
    if (opt.irc_caps && (strlen(opt.irc_caps) > 200 || strpbrk(opt.irc_caps, "\r\n"))) {
        fprintf(stderr, "--irc-caps: at most 200 characters, on one line\n");   /* (the login line's buffer) */
        return 2;
    }
    /* connects + logins in progress at once: keep it under the server's listen backlog, or
     * dropped SYNs cost a 1 s retransmit each (ngircd listens with a backlog of 10) */
    if (!opt.conc) opt.conc = opt.proto == PROTO_IRC ? 8 : 64;
    /* several ports: the servers of one cluster, connection i at the (i mod n)th */
    for (const char *p = opt.ports; ; ) {
        char *end;
        long port = strtol(p, &end, 10);
        if (naddrs == (int)(sizeof addrs / sizeof *addrs) || port < 1 || port > 65535 || (*end && *end != ',')) {
            fprintf(stderr, "bad --port (1..65535, at most %d, comma-separated)\n", (int)(sizeof addrs / sizeof *addrs));
            return 2;
        }
        struct sockaddr_in *a = &addrs[naddrs++];
        memset(a, 0, sizeof *a);
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, opt.host, &a->sin_addr) != 1) { fprintf(stderr, "bad --host (IPv4 address)\n"); return 2; }
        if (!*end) break;
        p = end + 1;
    }
    if (opt.bind_ips) {
        char *list = strdup(opt.bind_ips), *save = NULL;
        bind_addrs = calloc(strlen(opt.bind_ips) / 2 + 1, sizeof *bind_addrs);  /* >= number of items */
        if (!list || !bind_addrs) { perror("malloc"); return 2; }
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            struct sockaddr_in *b = &bind_addrs[nbind++];
            b->sin_family = AF_INET;
            if (inet_pton(AF_INET, t, &b->sin_addr) != 1) { fprintf(stderr, "bad --bind-ips %s (IPv4)\n", t); return 2; }
        }
        free(list);
        if (!nbind) { fprintf(stderr, "--bind-ips: no address\n"); return 2; }
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    N = opt.scenario == SC_FANIN ? opt.clients + 1 : opt.clients;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)N + 16)
        fprintf(stderr, "warning: RLIMIT_NOFILE %llu < %d connections\n", (unsigned long long)rl.rlim_cur, N);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    conns = calloc((size_t)N, sizeof *conns);
    rbuf = malloc(RBUF_SIZE);
    pattern = malloc((size_t)opt.payload + 26);
    if (opt.scenario == SC_ROOM && opt.verify) room_next = calloc((size_t)N * (size_t)opt.senders, sizeof *room_next);
    if (!conns || !rbuf || !pattern || (opt.scenario == SC_ROOM && opt.verify && !room_next)) {
        perror("malloc");
        return 2;
    }
    for (int i = 0; i < opt.payload + 26; i++) pattern[i] = (uint8_t)('a' + i % 26);
    for (int i = 0; i < N; i++) {
        conn *c = &conns[i];
        c->fd = -1;
        c->id = i;
        c->namelen = (uint8_t)snprintf(c->name, sizeof c->name, "%s%d", opt.prefix, i);
        if (opt.scenario == SC_RELAY) c->peer = (i ^ 1) < N ? (i ^ 1) : i;
        else if (opt.scenario == SC_FANIN) c->peer = i == 0 ? -1 : 0;
        else if (opt.scenario == SC_ROOM) room_place(c);
        else c->peer = -1;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) { perror("epoll_create1"); return 2; }
    struct epoll_event evs[MAX_EVENTS];
    if (opt.server_pid) srv_rss_start = proc_status_kb(opt.server_pid, "VmRSS:");
    t0 = now = now_ns();
    setup_deadline = t0 + secs(opt.setup_timeout);

    while (phase != PH_DONE) {
        while (phase == PH_SETUP && next_conn < N && st.setup_inflight < opt.conc) start_connect(&conns[next_conn++]);
        flush_dirty();
        while (advance_phase()) {}
        if (phase == PH_DONE) break;
        flush_dirty();
        int n = epoll_wait(ep, evs, MAX_EVENTS, wait_ms());
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 2;
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (c->state == CS_CLOSED || c->state == CS_IDLE) continue;
            if (c->state == CS_CONNECTING) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                if (c->state == CS_CLOSED || !(e & EPOLLIN)) continue;
            }
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) handle_read(c, e);
            if (c->state != CS_CLOSED && (e & EPOLLOUT) && c->outoff < c->outlen) flush_conn(c);
        }
    }
    int bad = report();
    for (int i = 0; i < N; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    return bad ? 1 : 0;
}
