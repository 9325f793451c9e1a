/* bootstrap.c - the torchrun-style launch variables and rank 0's one-blob broadcast over
 * TCP. See bootstrap.h.
 *
 * The exchange, all integers big-endian:
 *   rank k -> rank 0   hello   magic "mobt", protocol version, k, WORLD_SIZE  (16 bytes)
 *   rank 0 -> rank k   header  magic, version, WORLD_SIZE, 0, blob length (64 bits) (24 bytes)
 *                      then the blob
 *   rank k -> rank 0   ack     magic "moak", k                                (8 bytes)
 * Rank 0 sends only once every rank has said hello, so a rank that was started wrong
 * (another WORLD_SIZE, a RANK taken twice) stops the start-up with a message before any
 * rank goes on with a half-formed world. Connections that do not open with the magic (a
 * port scanner, a health check) are dropped and do not count.
 *
 * Every socket is non-blocking and every wait is a poll bounded by the caller's deadline,
 * so nothing here can hang past timeout_s; sends use MSG_NOSIGNAL so a peer that went away
 * gives an error rather than SIGPIPE.
 */
#define _GNU_SOURCE
#include "bootstrap.h"
#include "moert.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAUNCH_VARS "RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
#define MAX_WORLD (1 << 20)

#define BS_MAGIC 0x6d6f6274u /* "mobt" */
#define BS_ACK 0x6d6f616bu   /* "moak" */
#define BS_VERSION 1u
#define HELLO_BYTES 16
#define HEADER_BYTES 24
#define ACK_BYTES 8
#define MAX_BLOB (1u << 20)
#define ADDR_LEN 128  /* a numeric address with its port: "[v6%scope]:port" */
#define ATTEMPT_S 3.0 /* one connect attempt at most, so one dead address cannot use up the timeout */

/* ---- the environment ---- */

/* Digits only: no sign, no spaces, no "0x"; a torchrun-style launcher writes plain numbers,
 * and anything else is more likely a mistake than a number. 1: set and in [lo, hi] (*out),
 * 0: unset, -1: set but bad (err says what is wrong and what the range is). */
static int env_int(const char *name, long lo, long hi, const char *range, int *out, char *err, size_t errlen)
{
	const char *v = getenv(name);
	if (!v)
		return 0;
	if (!*v) {
		moert_seterr(err, errlen, "%s is set but empty: it must be a whole number (%s)", name, range);
		return -1;
	}
	long x = 0;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9') {
			moert_seterr(err, errlen, "%s=\"%s\" is not a whole number (digits only; %s)", name, v, range);
			return -1;
		}
		if (x <= hi) /* past hi it is out of range anyway; stop before it can overflow */
			x = x * 10 + (*p - '0');
	}
	if (x < lo || x > hi) {
		moert_seterr(err, errlen, "%s=%s is out of range: %s", name, v, range);
		return -1;
	}
	*out = (int)x;
	return 1;
}

/* env_int for a variable that must be there when WORLD_SIZE is (world > 1, or always). */
static int env_required(const char *name, long lo, long hi, const char *range, int world, int *out, char *err,
			size_t errlen)
{
	int rc = env_int(name, lo, hi, range, out, err, errlen);
	if (rc == 0)
		moert_seterr(err, errlen,
			     "%s is not set but WORLD_SIZE=%d is: a torchrun-style launch sets " LAUNCH_VARS
			     " in every process's environment",
			     name, world);
	return rc == 1 ? 0 : -1;
}

/* MASTER_ADDR: a host name or an IPv4/IPv6 address ("[::1]", as in URLs, is taken too). */
static int env_addr(struct moert_bootstrap_env *e, int required, char *err, size_t errlen)
{
	const char *v = getenv("MASTER_ADDR");
	if (!v) {
		if (required)
			moert_seterr(err, errlen,
				     "MASTER_ADDR is not set but WORLD_SIZE=%d is: it must name rank 0's host, "
				     "and a torchrun-style launch sets " LAUNCH_VARS,
				     e->world);
		return required ? -1 : 0;
	}
	size_t n = strlen(v);
	const char *s = v;
	if (n >= 2 && v[0] == '[' && v[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n == 0) {
		moert_seterr(err, errlen, "MASTER_ADDR is set but empty: it must name rank 0's host (a name or an address)");
		return -1;
	}
	if (n >= sizeof e->master_addr) {
		moert_seterr(err, errlen, "MASTER_ADDR is %zu characters long, more than a host name can be", n);
		return -1;
	}
	int colons = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == 0x7f || c == '/') {
			moert_seterr(err, errlen, "MASTER_ADDR=\"%s\" is not a host name or address (it contains %s)", v,
				     c == '/' ? "'/'" : "a space or control character");
			return -1;
		}
		colons += c == ':';
	}
	/* IPv6 addresses have at least two colons; one is "host:port", a common slip */
	if (colons == 1) {
		moert_seterr(err, errlen, "MASTER_ADDR=\"%s\" looks like host:port: give the host alone and the port in MASTER_PORT",
			     v);
		return -1;
	}
	memcpy(e->master_addr, s, n);
	e->master_addr[n] = 0;
	return 0;
}

/* Is torchrun's agent serving its TCPStore on MASTER_PORT? (torch reads the variable as
 * the string "True"; the other spellings cost nothing.) */
static int agent_holds_master_port(void)
{
	const char *v = getenv("TORCHELASTIC_USE_AGENT_STORE");
	return v && (!strcmp(v, "True") || !strcmp(v, "true") || !strcmp(v, "1"));
}

/* The rendezvous's port (bootstrap.h says which). */
static int env_port(struct moert_bootstrap_env *e, char *err, size_t errlen)
{
	int rc = env_int("MOERT_BOOTSTRAP_PORT", 1, 65535, "1..65535", &e->port, err, errlen);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		snprintf(e->port_var, sizeof e->port_var, "MOERT_BOOTSTRAP_PORT");
		return 0;
	}
	if (!agent_holds_master_port()) {
		e->port = e->master_port;
		snprintf(e->port_var, sizeof e->port_var, "MASTER_PORT");
		return 0;
	}
	if (e->master_port == 65535) {
		moert_seterr(err, errlen, "MASTER_PORT=65535 is torchrun's own store, and moert's rendezvous takes the port after "
			     "it, which does not exist: choose a lower MASTER_PORT, or set MOERT_BOOTSTRAP_PORT to a free port");
		return -1;
	}
	e->port = e->master_port + 1;
	snprintf(e->port_var, sizeof e->port_var, "MASTER_PORT + 1");
	return 0;
}

int moert_bootstrap_env(struct moert_bootstrap_env *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->world = out->local_world = 1;
	int rc = env_int("WORLD_SIZE", 1, MAX_WORLD, "1..1048576", &out->world, err, errlen);
	if (rc <= 0)
		return rc;
	int w = out->world, many = w > 1;
	char range[96];
	snprintf(range, sizeof range, "0..%d with WORLD_SIZE=%d", w - 1, w);
	if (env_required("RANK", 0, w - 1, range, w, &out->rank, err, errlen))
		return -1;
	/* One rank needs no rendezvous and uses GPU 0 unless told otherwise, so only more
	 * than one requires the rest; what is set must still be right. */
	snprintf(range, sizeof range, "1..%d with WORLD_SIZE=%d", w, w);
	rc = many ? env_required("LOCAL_WORLD_SIZE", 1, w, range, w, &out->local_world, err, errlen)
		  : env_int("LOCAL_WORLD_SIZE", 1, w, range, &out->local_world, err, errlen);
	if (rc < 0)
		return -1;
	snprintf(range, sizeof range, "0..%d with LOCAL_WORLD_SIZE=%d", out->local_world - 1, out->local_world);
	rc = many ? env_required("LOCAL_RANK", 0, out->local_world - 1, range, w, &out->local_rank, err, errlen)
		  : env_int("LOCAL_RANK", 0, out->local_world - 1, range, &out->local_rank, err, errlen);
	if (rc < 0)
		return -1;
	rc = many ? env_required("MASTER_PORT", 1, 65535, "1..65535", w, &out->master_port, err, errlen)
		  : env_int("MASTER_PORT", 1, 65535, "1..65535", &out->master_port, err, errlen);
	if (rc < 0)
		return -1;
	if (env_addr(out, many, err, errlen))
		return -1;
	if (many && env_port(out, err, errlen))
		return -1;
	return 1;
}

/* ---- bytes on the wire ---- */

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---- waiting, bounded by a deadline on moert_seconds()'s clock ---- */

/* Milliseconds to the deadline, rounded up so a poll never spins at 0 just before it. */
static int ms_left(double deadline)
{
	double left = deadline - moert_seconds();
	if (left <= 0)
		return 0;
	return left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1;
}

static void nap(double seconds)
{
	struct timespec t = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
	while (nanosleep(&t, &t) && errno == EINTR) {
	}
}

enum io { IO_OK, IO_TIMEOUT, IO_CLOSED, IO_ERROR /* errno */ };

static const char *io_text(enum io r)
{
	switch (r) {
	case IO_OK:
		return "ok";
	case IO_TIMEOUT:
		return "timed out";
	case IO_CLOSED:
		return "the connection was closed";
	default:
		return strerror(errno);
	}
}

/* 1: fd is ready for events (or has an error the next call reports), 0: deadline, -1: errno.
 * Past the deadline it still looks once, so what already happened (a refused connection,
 * bytes that arrived) is reported as such rather than as a timeout. */
static int wait_fd(int fd, short events, double deadline)
{
	for (;;) {
		int ms = ms_left(deadline);
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, ms);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (r == 0 && !ms)
			return 0;
	}
}

static enum io send_all(int fd, const void *buf, size_t n, double deadline)
{
	const unsigned char *p = buf;
	while (n) {
		int w = wait_fd(fd, POLLOUT, deadline);
		if (w <= 0)
			return w ? IO_ERROR : IO_TIMEOUT;
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return errno == EPIPE || errno == ECONNRESET ? IO_CLOSED : IO_ERROR;
		}
		p += k;
		n -= (size_t)k;
	}
	return IO_OK;
}

static enum io recv_all(int fd, void *buf, size_t n, double deadline)
{
	unsigned char *p = buf;
	while (n) {
		int w = wait_fd(fd, POLLIN, deadline);
		if (w <= 0)
			return w ? IO_ERROR : IO_TIMEOUT;
		ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
		if (k == 0)
			return IO_CLOSED;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return errno == ECONNRESET ? IO_CLOSED : IO_ERROR;
		}
		p += k;
		n -= (size_t)k;
	}
	return IO_OK;
}

/* ---- addresses in messages ---- */

/* "10.0.0.1:29500", "[fe80::1]:29500"; an IPv4 peer of the dual-stack listener as IPv4. */
static void fmt_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf, size_t n)
{
	struct sockaddr_in v4;
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
	if (sa->sa_family == AF_INET6 && len >= sizeof *v6 && IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
		memset(&v4, 0, sizeof v4);
		v4.sin_family = AF_INET;
		v4.sin_port = v6->sin6_port;
		memcpy(&v4.sin_addr, v6->sin6_addr.s6_addr + 12, 4);
		sa = (const struct sockaddr *)&v4;
		len = sizeof v4;
	}
	char host[96], serv[16];
	if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, n, "(unknown address)");
		return;
	}
	snprintf(buf, n, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, serv);
}

/* The rendezvous's port, and what chose it. */
static int rdzv_port(const struct moert_bootstrap_env *e)
{
	return e->port ? e->port : e->master_port;
}

static const char *port_var(const struct moert_bootstrap_env *e)
{
	return e->port_var[0] ? e->port_var : "MASTER_PORT";
}

/* What to do about a port that is taken. */
static const char *port_fix(const struct moert_bootstrap_env *e)
{
	const char *v = port_var(e);
	return !strcmp(v, "MOERT_BOOTSTRAP_PORT") ? "choose another MOERT_BOOTSTRAP_PORT"
	       : !strcmp(v, "MASTER_PORT")        ? "choose another MASTER_PORT"
						  : "set MOERT_BOOTSTRAP_PORT to a free port";
}

/* MASTER_ADDR and the rendezvous's port: "node17:29501". */
static void fmt_master(const struct moert_bootstrap_env *e, char *buf, size_t n)
{
	snprintf(buf, n, strchr(e->master_addr, ':') ? "[%s]:%d" : "%s:%d", e->master_addr, rdzv_port(e));
}

/* ---- rank 0 ---- */

static int listen_failed(const struct moert_bootstrap_env *e, int why, char *err, size_t errlen)
{
	moert_seterr(err, errlen, "rank 0: cannot listen on port %d (%s): %s%s%s", rdzv_port(e), port_var(e), strerror(why),
		     why == EADDRINUSE ? "; another program or another job's rank 0 holds it: "
		     : why == EACCES   ? "; ports below 1024 need privileges: "
				       : "",
		     why == EADDRINUSE || why == EACCES ? port_fix(e) : "");
	return -1;
}

/* One listening socket for every interface: IPv6 taking IPv4-mapped addresses too where the
 * kernel has IPv6, else IPv4. SO_REUSEADDR lets a port an earlier run left in TIME_WAIT be
 * taken again at once; a port another process listens on still fails, and says so. */
static int listen_any(const struct moert_bootstrap_env *e, char *err, size_t errlen)
{
	const int one = 1, zero = 0, port = rdzv_port(e), backlog = e->world;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		struct sockaddr_in6 a; /* all zeros: in6addr_any */
		memset(&a, 0, sizeof a);
		a.sin6_family = AF_INET6;
		a.sin6_port = htons((uint16_t)port);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
		if (!bind(fd, (struct sockaddr *)&a, sizeof a) && !listen(fd, backlog))
			return fd;
		int e6 = errno;
		close(fd);
		errno = e6;
		if (e6 == EADDRINUSE || e6 == EACCES)
			goto fail;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		struct sockaddr_in a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)port);
		a.sin_addr.s_addr = htonl(INADDR_ANY);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (!bind(fd, (struct sockaddr *)&a, sizeof a) && !listen(fd, backlog))
			return fd;
		int e4 = errno;
		close(fd);
		errno = e4;
	}
fail:
	return listen_failed(e, errno, err, errlen);
}

struct member {
	int fd; /* -1: not arrived */
	char addr[ADDR_LEN];
};

/* An accepted connection that has not finished its hello yet. */
struct pending {
	int fd;
	size_t got;
	unsigned char hello[HELLO_BYTES];
	char addr[ADDR_LEN];
};

/* The ranks that never came: "2, 5, 7" (the first 16, then how many more). */
static void fmt_missing(const struct member *m, int world, char *buf, size_t n)
{
	size_t used = 0;
	int listed = 0, more = 0;
	buf[0] = 0;
	for (int r = 1; r < world; r++) {
		if (m[r].fd >= 0)
			continue;
		if (listed == 16) {
			more++;
			continue;
		}
		int k = snprintf(buf + used, n - used, "%s%d", listed ? ", " : "", r);
		if (k < 0 || (size_t)k >= n - used)
			break;
		used += (size_t)k;
		listed++;
	}
	if (more && used < n)
		snprintf(buf + used, n - used, " and %d more", more);
}

/* A complete hello: 1 it was a rank (now in m), 0 it was no moert rank (drop it), -1 a
 * rank that was started wrong (err; the start-up cannot go on). */
static int take_hello(const struct moert_bootstrap_env *e, struct member *m, struct pending *p, char *err, size_t errlen)
{
	if (get32(p->hello) != BS_MAGIC)
		return 0;
	uint32_t version = get32(p->hello + 4), rank = get32(p->hello + 8), world = get32(p->hello + 12);
	if (version != BS_VERSION) {
		moert_seterr(err, errlen,
			     "rank 0: rank %u at %s speaks bootstrap protocol %u, this rank %u: run the same trainer build on every rank",
			     rank, p->addr, version, BS_VERSION);
		return -1;
	}
	if (world != (uint32_t)e->world) {
		moert_seterr(err, errlen,
			     "rank 0: rank %u at %s was started with WORLD_SIZE=%u, this rank with %d: start every rank with the same "
			     "WORLD_SIZE",
			     rank, p->addr, world, e->world);
		return -1;
	}
	if (rank == 0 || rank >= world) {
		moert_seterr(err, errlen, "rank 0: the process at %s says RANK=%u; with WORLD_SIZE=%d the others must be 1..%d",
			     p->addr, rank, e->world, e->world - 1);
		return -1;
	}
	if (m[rank].fd >= 0) {
		moert_seterr(err, errlen, "rank 0: two processes say RANK=%u (at %s and at %s): give every process its own RANK",
			     rank, m[rank].addr, p->addr);
		return -1;
	}
	m[rank].fd = p->fd;
	memcpy(m[rank].addr, p->addr, sizeof m[rank].addr);
	p->fd = -1;
	return 1;
}

/* Reads what a pending connection has sent: 1 its hello is complete (or it was dropped;
 * p->fd is then -1 either way unless it became a member), 0 more to come, -1 fatal (err). */
static int read_hello(const struct moert_bootstrap_env *e, struct member *m, struct pending *p, int *arrived, char *err,
		      size_t errlen)
{
	ssize_t k = recv(p->fd, p->hello + p->got, HELLO_BYTES - p->got, MSG_DONTWAIT);
	if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (k > 0) {
		p->got += (size_t)k;
		if (p->got < HELLO_BYTES)
			return 0;
		int rc = take_hello(e, m, p, err, errlen);
		if (rc < 0)
			return -1;
		*arrived += rc;
	}
	if (p->fd >= 0) { /* closed early, failed, or not a moert rank */
		close(p->fd);
		p->fd = -1;
	}
	return 1;
}

/* 0, or -1 when rank 0 can take no more connections (err). */
static int accept_one(int lfd, struct pending *pend, int *npend, int arrived, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
		/* the connection stays queued and poll would wake for it forever: stop instead */
		struct rlimit rl = {0, 0};
		getrlimit(RLIMIT_NOFILE, &rl);
		moert_seterr(err, errlen,
			     "rank 0: out of file descriptors after %d ranks arrived (ulimit -n is %llu): rank 0 holds one "
			     "connection per rank until all have the blob; raise the limit (ulimit -n) where rank 0 runs",
			     arrived, (unsigned long long)rl.rlim_cur);
		return -1;
	}
	if (fd < 0)
		return 0; /* EAGAIN, or a connection reset before it was taken: that rank retries */
	struct pending *p = &pend[(*npend)++];
	memset(p, 0, sizeof *p);
	p->fd = fd;
	fmt_sockaddr((struct sockaddr *)&ss, len, p->addr, sizeof p->addr);
	return 0;
}

/* Accepts until every rank has said hello. */
static int gather_ranks(const struct moert_bootstrap_env *e, int lfd, struct member *m, double t0, double deadline,
			char *err, size_t errlen)
{
	const int cap = e->world + 16; /* connections half-way through their hello, strays included */
	struct pending *pend = calloc((size_t)cap, sizeof *pend);
	struct pollfd *pfd = calloc((size_t)cap + 1, sizeof *pfd);
	int npend = 0, arrived = 1, rc = -1; /* rank 0 is here */
	if (!pend || !pfd) {
		moert_seterr(err, errlen, "rank 0: out of memory for %d ranks", e->world);
		goto out;
	}
	while (arrived < e->world) {
		int ms = ms_left(deadline);
		if (!ms) {
			char missing[256], addr[300];
			fmt_missing(m, e->world, missing, sizeof missing);
			if (e->master_addr[0])
				snprintf(addr, sizeof addr, "MASTER_ADDR=%s", e->master_addr);
			else
				snprintf(addr, sizeof addr, "a MASTER_ADDR naming this node");
			moert_seterr(err, errlen,
				     "rank 0: timed out after %.1f s listening on port %d (%s): %d of %d ranks arrived, missing %s; "
				     "were they started, with %s and the same MASTER_PORT, and can they reach this node's port %d?",
				     moert_seconds() - t0, rdzv_port(e), port_var(e), arrived, e->world, missing, addr, rdzv_port(e));
			goto out;
		}
		pfd[0] = (struct pollfd){.fd = npend < cap ? lfd : -1, .events = POLLIN};
		for (int i = 0; i < npend; i++)
			pfd[i + 1] = (struct pollfd){.fd = pend[i].fd, .events = POLLIN};
		int r = poll(pfd, (nfds_t)npend + 1, ms);
		if (r < 0 && errno != EINTR) {
			moert_seterr(err, errlen, "rank 0: poll: %s", strerror(errno));
			goto out;
		}
		if (r <= 0)
			continue;
		/* backwards, so a finished one can be replaced by the last, already looked at */
		for (int i = npend - 1; i >= 0; i--) {
			if (!pfd[i + 1].revents)
				continue;
			int h = read_hello(e, m, &pend[i], &arrived, err, errlen);
			if (h < 0)
				goto out;
			if (h > 0)
				pend[i] = pend[--npend];
		}
		if ((pfd[0].revents & POLLIN) && accept_one(lfd, pend, &npend, arrived, err, errlen))
			goto out;
	}
	rc = 0;
out:
	for (int i = 0; pend && i < npend; i++)
		if (pend[i].fd >= 0)
			close(pend[i].fd);
	free(pend);
	free(pfd);
	return rc;
}

/* Every member gets the header and the blob, then every member must acknowledge. */
static int hand_out(const struct moert_bootstrap_env *e, const struct member *m, const void *blob, size_t n,
		    double deadline, char *err, size_t errlen)
{
	unsigned char head[HEADER_BYTES] = {0};
	put32(head, BS_MAGIC);
	put32(head + 4, BS_VERSION);
	put32(head + 8, (uint32_t)e->world);
	put64(head + 16, n);
	for (int r = 1; r < e->world; r++) {
		enum io io = send_all(m[r].fd, head, sizeof head, deadline);
		if (io == IO_OK)
			io = send_all(m[r].fd, blob, n, deadline);
		if (io != IO_OK) {
			moert_seterr(err, errlen, "rank 0: sending the blob to rank %d at %s failed: %s", r, m[r].addr, io_text(io));
			return -1;
		}
	}
	for (int r = 1; r < e->world; r++) {
		unsigned char ack[ACK_BYTES];
		enum io io = recv_all(m[r].fd, ack, sizeof ack, deadline);
		if (io == IO_OK && (get32(ack) != BS_ACK || get32(ack + 4) != (uint32_t)r)) {
			moert_seterr(err, errlen, "rank 0: rank %d at %s answered the blob with a bad acknowledgement", r, m[r].addr);
			return -1;
		}
		if (io != IO_OK) {
			moert_seterr(err, errlen, "rank 0: rank %d at %s did not acknowledge the blob: %s", r, m[r].addr, io_text(io));
			return -1;
		}
	}
	return 0;
}

/* Rank 0 holds a socket per rank until every rank has the blob: lift the soft limit on
 * open files towards the hard one where the default (often 1024) is too low for the world. */
static void raise_fd_limit(int world)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)world + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static int serve(const struct moert_bootstrap_env *e, const void *blob, size_t n, double t0, double deadline, char *err,
		 size_t errlen)
{
	raise_fd_limit(e->world);
	int lfd = listen_any(e, err, errlen);
	if (lfd < 0)
		return -1;
	struct member *m = calloc((size_t)e->world, sizeof *m);
	int rc = -1;
	if (!m) {
		moert_seterr(err, errlen, "rank 0: out of memory for %d ranks", e->world);
	} else {
		for (int r = 0; r < e->world; r++)
			m[r].fd = -1;
		rc = gather_ranks(e, lfd, m, t0, deadline, err, errlen);
		if (!rc)
			rc = hand_out(e, m, blob, n, deadline, err, errlen);
		for (int r = 0; r < e->world; r++)
			if (m[r].fd >= 0)
				close(m[r].fd);
	}
	free(m);
	close(lfd);
	return rc;
}

/* ---- every other rank ---- */

/* 0 with *out connected, else an errno value. */
static int connect_once(const struct addrinfo *ai, double deadline, int *out)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return e;
	}
	int w = wait_fd(fd, POLLOUT, deadline), soerr = 0;
	socklen_t len = sizeof soerr;
	if (w <= 0)
		soerr = w ? errno : ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len))
		soerr = errno;
	if (soerr) {
		close(fd);
		return soerr;
	}
	*out = fd;
	return 0;
}

/* One round over every address MASTER_ADDR resolves to: a connected fd, or -1 with what
 * went wrong in last. Resolving again each round lets a name that is not yet in DNS (a
 * node still coming up) work once it is. */
static int dial_round(const struct moert_bootstrap_env *e, double deadline, char *last, size_t lastlen)
{
	char port[16];
	snprintf(port, sizeof port, "%d", rdzv_port(e));
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int g = getaddrinfo(e->master_addr, port, &hints, &res);
	if (g) {
		snprintf(last, lastlen, "cannot resolve MASTER_ADDR=%s: %s", e->master_addr,
			 g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
		return -1;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		double until = moert_seconds() + ATTEMPT_S;
		int ce = connect_once(ai, until < deadline ? until : deadline, &fd);
		if (ce) {
			char addr[ADDR_LEN];
			fmt_sockaddr(ai->ai_addr, ai->ai_addrlen, addr, sizeof addr);
			snprintf(last, lastlen, "%s: %s", addr, strerror(ce));
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/* Connects to rank 0, which may start later than this rank: retried, backing off from
 * 20 ms to 0.5 s, until the deadline. */
static int dial(const struct moert_bootstrap_env *e, double t0, double deadline, char *err, size_t errlen)
{
	char last[512] = "no attempt was made";
	double pause = 0.02;
	for (int tries = 1;; tries++) {
		int fd = dial_round(e, deadline, last, sizeof last);
		if (fd >= 0)
			return fd;
		double left = deadline - moert_seconds();
		if (left <= 0) {
			char master[320];
			fmt_master(e, master, sizeof master);
			moert_seterr(err, errlen,
				     "rank %d: could not reach rank 0 at %s (MASTER_ADDR:%s) within %.1f s (%d tries; last: %s): "
				     "is rank 0 running, and is MASTER_ADDR an address of its node that this node can reach?",
				     e->rank, master, port_var(e), moert_seconds() - t0, tries, last);
			return -1;
		}
		nap(pause < left ? pause : left);
		pause = pause * 2 < 0.5 ? pause * 2 : 0.5;
	}
}

/* What rank 0's header says, checked against this rank's view: 0, or -1 (err). */
static int check_header(const struct moert_bootstrap_env *e, const unsigned char *h, size_t n, const char *master,
			char *err, size_t errlen)
{
	if (get32(h) != BS_MAGIC) {
		moert_seterr(err, errlen,
			     "rank %d: %s is not a moert rank 0 (it sent 0x%08x, not the bootstrap magic): another program listens "
			     "on port %d (%s): %s",
			     e->rank, master, get32(h), rdzv_port(e), port_var(e), port_fix(e));
		return -1;
	}
	if (get32(h + 4) != BS_VERSION) {
		moert_seterr(err, errlen, "rank %d: rank 0 at %s speaks bootstrap protocol %u, this rank %u: run the same trainer "
			     "build on every rank", e->rank, master, get32(h + 4), BS_VERSION);
		return -1;
	}
	if (get32(h + 8) != (uint32_t)e->world) {
		moert_seterr(err, errlen, "rank %d: rank 0 at %s has WORLD_SIZE=%u, this rank %d: start every rank with the same "
			     "WORLD_SIZE", e->rank, master, get32(h + 8), e->world);
		return -1;
	}
	if (get64(h + 16) != (uint64_t)n) {
		moert_seterr(err, errlen, "rank %d: rank 0 at %s sent a %llu-byte blob, this rank expects %zu: run the same "
			     "trainer build on every rank", e->rank, master, (unsigned long long)get64(h + 16), n);
		return -1;
	}
	return 0;
}

/* The message for a failed read from rank 0. */
static void recv_failed(const struct moert_bootstrap_env *e, enum io io, const char *master, double t0, char *err,
			size_t errlen)
{
	if (io == IO_TIMEOUT)
		moert_seterr(err, errlen,
			     "rank %d: connected to rank 0 at %s, but the blob did not come within %.1f s: rank 0 sends it once all "
			     "%d ranks have connected, and its own message names the missing ones",
			     e->rank, master, moert_seconds() - t0, e->world);
	else if (io == IO_CLOSED)
		moert_seterr(err, errlen, "rank %d: rank 0 at %s closed the connection before sending the blob: see rank 0's error",
			     e->rank, master);
	else
		moert_seterr(err, errlen, "rank %d: reading from rank 0 at %s: %s", e->rank, master, io_text(io));
}

static int fetch(const struct moert_bootstrap_env *e, void *blob, size_t n, double t0, double deadline, char *err,
		 size_t errlen)
{
	int fd = dial(e, t0, deadline, err, errlen);
	if (fd < 0)
		return -1;
	char master[320];
	fmt_master(e, master, sizeof master);
	unsigned char hello[HELLO_BYTES], head[HEADER_BYTES], ack[ACK_BYTES];
	put32(hello, BS_MAGIC);
	put32(hello + 4, BS_VERSION);
	put32(hello + 8, (uint32_t)e->rank);
	put32(hello + 12, (uint32_t)e->world);
	int rc = -1;
	enum io io = send_all(fd, hello, sizeof hello, deadline);
	if (io != IO_OK) {
		moert_seterr(err, errlen, "rank %d: saying hello to rank 0 at %s failed: %s", e->rank, master, io_text(io));
		goto out;
	}
	io = recv_all(fd, head, sizeof head, deadline);
	if (io != IO_OK) {
		recv_failed(e, io, master, t0, err, errlen);
		goto out;
	}
	if (check_header(e, head, n, master, err, errlen))
		goto out;
	io = recv_all(fd, blob, n, deadline);
	if (io != IO_OK) {
		recv_failed(e, io, master, t0, err, errlen);
		goto out;
	}
	put32(ack, BS_ACK);
	put32(ack + 4, (uint32_t)e->rank);
	io = send_all(fd, ack, sizeof ack, deadline);
	if (io != IO_OK) {
		moert_seterr(err, errlen, "rank %d: acknowledging the blob to rank 0 at %s failed: %s", e->rank, master,
			     io_text(io));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

int moert_bootstrap_broadcast(const struct moert_bootstrap_env *e, void *blob, size_t n, double timeout_s, char *err,
			      size_t errlen)
{
	if (e->world <= 1)
		return 0;
	if (e->rank < 0 || e->rank >= e->world) {
		moert_seterr(err, errlen, "bootstrap: rank %d is outside the world of %d", e->rank, e->world);
		return -1;
	}
	if (n > MAX_BLOB) {
		moert_seterr(err, errlen, "rank %d: a %zu-byte blob is more than the bootstrap hands out (1 MiB)", e->rank, n);
		return -1;
	}
	if (rdzv_port(e) < 1 || rdzv_port(e) > 65535 || (e->rank && !e->master_addr[0])) {
		moert_seterr(err, errlen, "rank %d: MASTER_ADDR and MASTER_PORT are needed for %d ranks", e->rank, e->world);
		return -1;
	}
	double t0 = moert_seconds(), deadline = t0 + (timeout_s > 0 ? timeout_s : 0);
	return e->rank == 0 ? serve(e, blob, n, t0, deadline, err, errlen) : fetch(e, blob, n, t0, deadline, err, errlen);
}
