/*
 * Sockmap splice on real loopback TCP connections (needs root):
 *   client C <-> A (proxy side)      B (proxy side) <-> server S
 * A and B are spliced; the test plays client, proxy and server in one thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "unit/check.h"
#include "maps/splice_maps.h"
#include "splice/splice.h"

static struct splice *sp;

struct flow {
	int c, a, b, srv;
};

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int listener(struct sockaddr_in *addr)
{
	socklen_t alen = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof(*addr)) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)addr, &alen)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Connects *out_client to a fresh listener and returns the accepted end in *out_server. */
static bool tcp_pair(int *out_client, int *out_server)
{
	struct sockaddr_in addr;
	int l = listener(&addr), c = -1, s = -1;

	if (l >= 0 && (c = socket(AF_INET, SOCK_STREAM, 0)) >= 0 &&
	    !connect(c, (struct sockaddr *)&addr, sizeof(addr)))
		s = accept(l, NULL, NULL);
	if (l >= 0)
		close(l);
	if (s < 0) {
		if (c >= 0)
			close(c);
		return false;
	}
	nonblock(c);
	nonblock(s);
	*out_client = c;
	*out_server = s;
	return true;
}

/* Opens both connections and enrols A and B before anything is read from them. */
static bool flow_open(struct flow *f)
{
	if (!tcp_pair(&f->c, &f->a))
		return false;
	if (!tcp_pair(&f->b, &f->srv)) {
		close(f->c);
		close(f->a);
		return false;
	}
	return !splice_add(sp, f->a) && !splice_add(sp, f->b);
}

static void flow_close(struct flow *f)
{
	splice_unpair(sp, f->a, f->b);
	close(f->c);
	close(f->a);
	close(f->b);
	close(f->srv);
}

static unsigned char pattern_byte(uint64_t off, unsigned seed)
{
	return (unsigned char)((off * 2654435761u) >> 13) ^ seed;
}

/*
 * Sends len pattern bytes on `from` while reading them on `to`, checking content and
 * order. Returns the number of bytes received intact (stops at the first mismatch).
 */
static uint64_t transfer(int from, int to, uint64_t len, unsigned seed, int timeout_ms)
{
	static unsigned char out[65536], in[65536];
	uint64_t sent = 0, got = 0;
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (got < len) {
		struct pollfd pfd[2] = {{.fd = to, .events = POLLIN},
					{.fd = from, .events = sent < len ? POLLOUT : 0}};
		ssize_t n;

		if (sent < len) {
			size_t chunk = len - sent < sizeof(out) ? len - sent : sizeof(out);

			for (size_t i = 0; i < chunk; i++)
				out[i] = pattern_byte(sent + i, seed);
			n = send(from, out, chunk, MSG_NOSIGNAL);
			if (n > 0)
				sent += n;
		}
		n = recv(to, in, sizeof(in), 0);
		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				if (in[i] != pattern_byte(got + i, seed))
					return got + i;
			got += n;
			continue;
		}
		if (n == 0)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >
		    timeout_ms)
			break;
		poll(pfd, 2, 50);
	}
	return got;
}

static ssize_t recv_wait(int fd, void *buf, size_t len, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
	ssize_t n;

	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		n = recv(fd, buf, len, 0);
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return n;
		poll(&pfd, 1, 10);
	}
	errno = EAGAIN;
	return -1;
}

static bool nothing_to_read(int fd)
{
	char b;

	return recv(fd, &b, 1, 0) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* ---- tests ---- */

static void test_both_directions(void)
{
	const uint64_t len = 16u << 20;
	struct splice_flow_stats fs;
	struct splice_stats before, after;
	struct flow f;

	CHECK(flow_open(&f));
	/* A loaded machine can make the reader slow enough to reach the default bound, which
	 * is a fallback (tested below), not what this test is about: no bound here. */
	splice_set_inflight_limit(sp, 2 * len);
	splice_stats_get(sp, &before);
	CHECK_EQ(splice_pair(sp, f.a, 0, f.b, 0), 0);
	CHECK_EQ(transfer(f.c, f.srv, len, 1, 20000), len);
	CHECK_EQ(transfer(f.srv, f.c, len, 2, 20000), len);
	CHECK(nothing_to_read(f.a));
	CHECK(nothing_to_read(f.b));
	CHECK_EQ(splice_flow_stats(sp, f.a, &fs), 0);
	CHECK_EQ(fs.bytes_a_to_b, len);
	CHECK_EQ(fs.bytes_b_to_a, len);
	splice_stats_get(sp, &after);
	CHECK_EQ(after.flows_total, before.flows_total + 1);
	CHECK_EQ(after.flows_active, before.flows_active + 1);
	CHECK_EQ(after.bytes, before.bytes + 2 * len);
	CHECK_EQ(after.fallbacks, before.fallbacks);
	flow_close(&f);
	splice_set_inflight_limit(sp, SPLICE_DEFAULT_INFLIGHT_LIMIT);
	splice_stats_get(sp, &after);
	CHECK_EQ(after.flows_active, before.flows_active);
}

/* Bytes that reach A after the proxy's last read but before pairing are not redirected
 * ahead of the proxy's copy: they wait for userspace, then redirection takes over. */
static void test_handover_order(void)
{
	char buf[64], got[64];
	size_t have = 0;
	ssize_t n;
	struct flow f;

	CHECK(flow_open(&f));
	CHECK(send(f.c, "hello", 5, 0) == 5);
	CHECK(recv_wait(f.a, buf, sizeof(buf), 1000) == 5); /* the proxy holds "hello" */
	CHECK(send(f.c, "world", 5, 0) == 5);		    /* arrives while unpaired */
	usleep(50000);
	CHECK(send(f.b, buf, 5, 0) == 5); /* proxy forwards what it holds, then pairs */
	CHECK_EQ(splice_pair(sp, f.a, 5, f.b, 0), 0);
	CHECK(send(f.c, "!!!", 3, 0) == 3); /* must not overtake "world" */
	usleep(50000);
	n = recv_wait(f.a, buf, sizeof(buf), 1000); /* leftovers: "world!!!" */
	CHECK_EQ(n, 8);
	CHECK(n == 8 && !memcmp(buf, "world!!!", 8));
	if (n > 0) {
		CHECK(send(f.b, buf, n, 0) == n);
		CHECK_EQ(splice_handled(sp, f.a, 5 + n), 0);
	}
	CHECK(send(f.c, "tail", 4, 0) == 4);
	while (have < 17 && (n = recv_wait(f.srv, got + have, sizeof(got) - have, 1000)) > 0)
		have += n;
	CHECK_EQ(have, 17);
	CHECK(have == 17 && !memcmp(got, "helloworld!!!tail", 17));
	CHECK(nothing_to_read(f.a));
	flow_close(&f);
}

/* What userspace sees on spliced sockets when an end half-closes or resets. */
static void test_half_close(void)
{
	struct splice_status st;
	struct pollfd pfd;
	char b[16];
	struct flow f;

	CHECK(flow_open(&f));
	CHECK_EQ(splice_pair(sp, f.a, 0, f.b, 0), 0);
	CHECK_EQ(transfer(f.c, f.srv, 1 << 20, 3, 5000), 1 << 20);
	shutdown(f.c, SHUT_WR);
	pfd = (struct pollfd){.fd = f.a, .events = POLLIN | POLLRDHUP};
	CHECK_EQ(poll(&pfd, 1, 2000), 1);
	CHECK(pfd.revents & POLLIN);
	CHECK(pfd.revents & POLLRDHUP);
	CHECK_EQ(recv(f.a, b, sizeof(b), 0), 0);
	/* Proxy: once nothing redirected is still queued, forward the FIN. */
	CHECK_EQ(splice_poll(sp, f.a, f.b, &st), 0);
	CHECK_EQ(st.state, SPLICE_KERNEL);
	CHECK_EQ(st.queued, 0);
	CHECK_EQ(st.redirected, 1 << 20);
	shutdown(f.b, SHUT_WR);
	CHECK_EQ(recv_wait(f.srv, b, sizeof(b), 2000), 0);
	/* The other direction keeps flowing through the kernel. */
	CHECK_EQ(transfer(f.srv, f.c, 1 << 20, 4, 5000), 1 << 20);
	CHECK(nothing_to_read(f.b));
	shutdown(f.srv, SHUT_WR);
	CHECK_EQ(recv_wait(f.b, b, sizeof(b), 2000), 0);
	shutdown(f.a, SHUT_WR);
	CHECK_EQ(recv_wait(f.c, b, sizeof(b), 2000), 0);
	flow_close(&f);
}

static void test_reset(void)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct pollfd pfd;
	char b[16];
	struct flow f;

	CHECK(flow_open(&f));
	CHECK_EQ(splice_pair(sp, f.a, 0, f.b, 0), 0);
	CHECK_EQ(transfer(f.c, f.srv, 4096, 5, 5000), 4096);
	setsockopt(f.c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(f.c);
	pfd = (struct pollfd){.fd = f.a, .events = POLLIN | POLLRDHUP};
	CHECK_EQ(poll(&pfd, 1, 2000), 1);
	CHECK(pfd.revents & (POLLERR | POLLHUP));
	errno = 0;
	CHECK_EQ(recv(f.a, b, sizeof(b), 0), -1);
	CHECK_EQ(errno, ECONNRESET);
	/* Proxy: reset the other side too, then both leave the map. */
	setsockopt(f.b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	splice_unpair(sp, f.a, f.b);
	close(f.a);
	close(f.b);
	errno = 0;
	CHECK_EQ(recv_wait(f.srv, b, sizeof(b), 2000), -1);
	CHECK_EQ(errno, ECONNRESET);
	close(f.srv);
}

/* A server that stops reading: redirected bytes stay bounded, the direction falls back,
 * and once the server reads again the proxy relays the rest in order. */
static void test_bound_and_fallback(void)
{
	const uint64_t limit = 256 << 10, total = 48u << 20;
	static unsigned char buf[65536];
	struct splice_stats before, after;
	struct splice_status st = {0};
	uint64_t sent = 0, got = 0, relayed = 0, max_queued = 0;
	int small = 64 << 10;
	struct flow f;
	bool ok = true;

	CHECK(flow_open(&f));
	/* Small buffers on the stalled path so the bound, not the buffers, is what shows. */
	setsockopt(f.srv, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	setsockopt(f.b, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	splice_set_inflight_limit(sp, limit);
	splice_stats_get(sp, &before);
	CHECK_EQ(splice_pair(sp, f.a, 0, f.b, 0), 0);
	/* Client writes as fast as it can for a while; nobody reads on the server. */
	for (int idle = 0; idle < 40 && sent < total;) {
		size_t chunk = sizeof(buf);
		ssize_t n;

		for (size_t i = 0; i < chunk; i++)
			buf[i] = pattern_byte(sent + i, 9);
		n = send(f.c, buf, chunk, MSG_NOSIGNAL);
		if (n > 0) {
			sent += n;
			idle = 0;
		} else {
			struct pollfd pfd = {.fd = f.c, .events = POLLOUT};

			poll(&pfd, 1, 10);
			idle++;
		}
		if (!splice_poll(sp, f.a, f.b, &st) && st.queued > max_queued)
			max_queued = st.queued;
	}
	CHECK(sent < total); /* the client was backpressured: the kernel did not absorb it all */
	CHECK_EQ(splice_poll(sp, f.a, f.b, &st), 0);
	CHECK(st.state != SPLICE_KERNEL);
	printf("stalled receiver: client sent %lu KiB, redirected %lu KiB, queued max %lu KiB "
	       "(limit %lu KiB), passed to userspace %lu KiB\n",
	       (unsigned long)(sent >> 10), (unsigned long)(st.redirected >> 10),
	       (unsigned long)(max_queued >> 10), (unsigned long)(limit >> 10),
	       (unsigned long)(st.passed >> 10));
	CHECK(max_queued <= limit);
	/* Kernel memory for the direction: bound + the peer's send buffer + receiver window. */
	CHECK(st.redirected < limit + (1u << 20));
	splice_stats_get(sp, &after);
	CHECK_EQ(after.fallbacks, before.fallbacks + 1);
	/* The server reads again; the proxy relays once the kernel queue is drained. */
	for (int idle = 0, stalled = 0; ok && got < sent && idle < 300 && stalled < 100;) {
		static unsigned char relay[65536];
		static size_t relay_len, relay_off;
		struct pollfd pfd[2] = {{.fd = f.srv, .events = POLLIN},
					{.fd = f.a, .events = POLLIN}};
		ssize_t n = recv(f.srv, buf, sizeof(buf), 0);
		bool progress = false;

		if (n > 0) {
			for (ssize_t i = 0; i < n && ok; i++)
				ok = buf[i] == pattern_byte(got + i, 9);
			got += n;
			progress = true;
		}
		if (!splice_poll(sp, f.a, f.b, &st) && st.state == SPLICE_STALLED)
			stalled++;
		else
			stalled = 0;
		if (st.state == SPLICE_RELAY) {
			if (relay_off == relay_len) {
				n = recv(f.a, relay, sizeof(relay), 0);
				relay_off = 0;
				relay_len = n > 0 ? n : 0;
			}
			n = relay_off < relay_len
				? send(f.b, relay + relay_off, relay_len - relay_off, MSG_NOSIGNAL)
				: 0;
			if (n > 0) {
				relay_off += n;
				relayed += n;
				progress = true;
			}
		}
		if (progress) {
			idle = 0;
		} else {
			poll(pfd, 2, 10);
			idle++;
		}
	}
	/* Whatever arrived is an intact, in-order prefix. Then either the relay delivered
	 * everything, or the kernel stopped pushing and the proxy would reset the flow. */
	CHECK(ok);
	printf("after the receiver resumed: %s, server got %lu of %lu KiB, relayed %lu KiB\n",
	       st.state == SPLICE_RELAY ? "relay took over" : "kernel queue stalled (reset)",
	       (unsigned long)(got >> 10), (unsigned long)(sent >> 10),
	       (unsigned long)(relayed >> 10));
	CHECK(st.state == SPLICE_RELAY || st.state == SPLICE_STALLED);
	if (st.state == SPLICE_RELAY) {
		CHECK_EQ(got, sent);
		CHECK(relayed > 0);
	} else {
		CHECK(st.queued > 0);
		CHECK_EQ(got, st.redirected - st.queued);
	}
	splice_set_inflight_limit(sp, SPLICE_DEFAULT_INFLIGHT_LIMIT);
	flow_close(&f);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (geteuid() != 0) {
		printf("test_splice: needs root (BPF), skipped\n");
		return 0;
	}
	CHECK_EQ(splice_supported(), true);
	sp = splice_open();
	if (!sp) {
		fprintf(stderr, "splice_open failed\n");
		return 1;
	}
	RUN(test_both_directions);
	RUN(test_handover_order);
	RUN(test_half_close);
	RUN(test_reset);
	RUN(test_bound_and_fallback);
	splice_close(sp);
	return CHECK_DONE();
}
