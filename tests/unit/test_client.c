/*
 * client/: requests over a real ring and timer heap against scripted loopback servers:
 * Content-Length, chunked and close-delimited bodies, pooling and reuse, a stale pooled
 * connection replaced, the body bound, deadlines, connect failures retried on another
 * target, no target, cancellation.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "client/client.h"
#include "common/clock.h"
#include "config/config.h"
#include "loop/ring.h"
#include "loop/timer.h"
#include "upstream/upstream.h"

/* ---- a scripted server: one connection at a time, answers each request with `reply` ---- */

struct server {
	int lfd;
	int port;
	pthread_t thread;
	atomic_bool stop;
	const char *reply;  /* NULL: never answers */
	bool close_after;   /* closes the connection after each answer */
	atomic_int delay_ms; /* answers this long after the request arrived */
	atomic_int accepted;
	atomic_int requests;
	atomic_int closed;
	char last[4096];
};

static bool read_request(int fd, char *out, size_t cap, atomic_bool *stop)
{
	size_t n = 0;

	while (!atomic_load(stop)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *end;
		ssize_t r;

		if (poll(&p, 1, 50) <= 0)
			continue;
		r = recv(fd, out + n, cap - 1 - n, 0);
		if (r <= 0)
			return false;
		n += r;
		out[n] = '\0';
		end = strstr(out, "\r\n\r\n");
		if (end) {
			const char *cl = strcasestr(out, "content-length:");
			size_t want = (end + 4 - out) + (cl ? strtoul(cl + 15, NULL, 10) : 0);

			if (n >= want)
				return true;
		}
	}
	return false;
}

static void *server_main(void *arg)
{
	struct server *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		atomic_fetch_add(&s->accepted, 1);
		while (read_request(fd, s->last, sizeof(s->last), &s->stop)) {
			atomic_fetch_add(&s->requests, 1);
			if (!s->reply) {
				while (!atomic_load(&s->stop))
					usleep(10000);
				break;
			}
			if (s->delay_ms)
				usleep(atomic_load(&s->delay_ms) * 1000);
			if (send(fd, s->reply, strlen(s->reply), MSG_NOSIGNAL) < 0 || s->close_after)
				break;
		}
		close(fd);
		atomic_fetch_add(&s->closed, 1);
	}
	return NULL;
}

static void server_start(struct server *s, const char *reply, bool close_after)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->reply = reply;
	s->close_after = close_after;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	bind(s->lfd, (struct sockaddr *)&a, sizeof(a));
	listen(s->lfd, 16);
	getsockname(s->lfd, (struct sockaddr *)&a, &len);
	s->port = ntohs(a.sin_port);
	pthread_create(&s->thread, NULL, server_main, s);
}

static void server_stop(struct server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
}

/* A port nothing listens on (bound, then closed). */
static int dead_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* ---- the loop: a ring, a timer heap and a client, driven until a call completes ---- */

struct env {
	struct io_uring ring;
	struct timer_heap timers;
	struct http_client *cl;
	struct xg_config *cfg;
};

struct result {
	int calls;
	enum client_error err;
	int status;
	char body[70000];
	size_t body_len;
	char ctype[64];
	char target[64];
};

static void on_done(void *arg, const struct client_response *r)
{
	struct result *res = arg;
	const struct http_header *h;

	res->calls++;
	res->err = r->err;
	res->status = r->status;
	res->body_len = r->body_len < sizeof(res->body) ? r->body_len : sizeof(res->body);
	if (r->body_len)
		memcpy(res->body, r->body, res->body_len);
	snprintf(res->target, sizeof(res->target), "%s", r->target);
	h = r->head ? http_find_header(r->head->headers, r->head->nheaders, "content-type") : NULL;
	snprintf(res->ctype, sizeof(res->ctype), "%.*s", h ? (int)h->value.len : 0,
		 h ? h->value.p : "");
}

static void env_open(struct env *e, const char *targets, const char *extra)
{
	char json[1024];
	struct cfg_errs errs = { 0 };
	int n = snprintf(json, sizeof(json),
			 "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:1\"}], "
			 "\"upstreams\": [{\"name\": \"u\", \"targets\": [%s], \"keepalive\": 4, "
			 "\"retries\": 1, \"timeouts_ms\": {\"connect\": 500, \"read\": 1000}%s}]}",
			 targets, extra ? extra : "");

	memset(e, 0, sizeof(*e));
	CHECK_EQ(io_uring_queue_init(64, &e->ring, 0), 0);
	e->cfg = config_load_buffer(json, n, "test.json", &errs);
	if (!e->cfg)
		fprintf(stderr, "%s", errs.text);
	cfg_errs_free(&errs);
	e->cl = client_new(&e->ring, &e->timers, NULL);
}

static void env_close(struct env *e)
{
	client_free(e->cl);
	io_uring_queue_exit(&e->ring);
	timer_heap_free(&e->timers);
	config_put(e->cfg);
}

/* Runs completions and timers until *calls reaches want or limit_ms passes. */
static void run_until(struct env *e, int *calls, int want, uint64_t limit_ms)
{
	uint64_t end = clock_mono_ms() + limit_ms;

	while (*calls < want && clock_mono_ms() < end) {
		struct __kernel_timespec ts = { .tv_nsec = 5 * 1000000L };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe(&e->ring, head, cqe) {
			if ((cqe->user_data & RING_TAG_MASK) == RING_TAG_CALLBACK)
				ring_op_dispatch(cqe);
			n++;
		}
		io_uring_cq_advance(&e->ring, n);
		timer_run(&e->timers, clock_mono_ms());
	}
}

/* Lets cancelled operations complete so closed connections are freed (ASan checks). */
static void settle(struct env *e)
{
	int never = 0;

	run_until(e, &never, 1, 30);
}

static struct client_call *get(struct env *e, const char *path, struct result *res,
			       uint32_t timeout_ms, size_t max_body)
{
	struct client_request_opts o = { .cfg = e->cfg, .upstream = 0, .path = path,
					 .timeout_ms = timeout_ms, .max_body_bytes = max_body,
					 .headers = "X-Request-Id: r1\r\n" };

	return client_request(e->cl, &o, on_done, res);
}

static char targets_buf[256];

static const char *target_list(int a, int b)
{
	if (b)
		snprintf(targets_buf, sizeof(targets_buf),
			 "{\"address\": \"127.0.0.1:%d\"}, {\"address\": \"127.0.0.1:%d\"}", a, b);
	else
		snprintf(targets_buf, sizeof(targets_buf), "{\"address\": \"127.0.0.1:%d\"}", a);
	return targets_buf;
}

static void test_content_length_and_reuse(void)
{
	struct server s;
	struct env e;
	struct result r1 = { 0 }, r2 = { 0 };

	server_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: 11\r\n\r\n{\"a\": true}", false);
	env_open(&e, target_list(s.port, 0), NULL);
	CHECK(get(&e, "/x?y=1", &r1, 1000, 0) != NULL);
	CHECK_EQ(r1.calls, 0); /* never from inside client_request */
	run_until(&e, &r1.calls, 1, 2000);
	CHECK_EQ(r1.calls, 1);
	CHECK_EQ(r1.err, CLIENT_OK);
	CHECK_EQ(r1.status, 200);
	CHECK_EQ(r1.body_len, 11);
	CHECK(!memcmp(r1.body, "{\"a\": true}", 11));
	CHECK_STR(r1.ctype, "application/json");
	CHECK(strstr(s.last, "GET /x?y=1 HTTP/1.1\r\n") == s.last);
	CHECK(strstr(s.last, "\r\nHost: 127.0.0.1:") != NULL);
	CHECK(strstr(s.last, "\r\nX-Request-Id: r1\r\n") != NULL);
	CHECK_EQ(client_idle_count(e.cl), 1);
	get(&e, "/again", &r2, 1000, 0);
	run_until(&e, &r2.calls, 1, 2000);
	CHECK_EQ(r2.err, CLIENT_OK);
	CHECK_EQ(atomic_load(&s.accepted), 1); /* the pooled connection was reused */
	CHECK_EQ(atomic_load(&s.requests), 2);
	env_close(&e);
	server_stop(&s);
}

static void test_chunked_body(void)
{
	struct server s;
	struct env e;
	struct result r = { 0 };

	server_start(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "4\r\n{\"k\"\r\n3;ext=1\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n", false);
	env_open(&e, target_list(s.port, 0), NULL);
	get(&e, "/c", &r, 1000, 0);
	run_until(&e, &r.calls, 1, 2000);
	CHECK_EQ(r.err, CLIENT_OK);
	CHECK_EQ(r.body_len, 8);
	CHECK(!memcmp(r.body, "{\"k\": 1}", 8));
	CHECK_EQ(client_idle_count(e.cl), 1);
	env_close(&e);
	server_stop(&s);
}

static void test_close_delimited_body(void)
{
	struct server s;
	struct env e;
	struct result r = { 0 };

	server_start(&s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", true);
	env_open(&e, target_list(s.port, 0), NULL);
	get(&e, "/e", &r, 1000, 0);
	run_until(&e, &r.calls, 1, 2000);
	CHECK_EQ(r.err, CLIENT_OK);
	CHECK_EQ(r.body_len, 11);
	CHECK(!memcmp(r.body, "until close", 11));
	CHECK_EQ(client_idle_count(e.cl), 0); /* its end was the close */
	settle(&e);
	env_close(&e);
	server_stop(&s);
}

static void test_body_bound(void)
{
	struct server s;
	struct env e;
	struct result r = { 0 }, c = { 0 };

	server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789",
		     false);
	env_open(&e, target_list(s.port, 0), NULL);
	get(&e, "/big", &r, 1000, 10);
	run_until(&e, &r.calls, 1, 2000);
	CHECK_EQ(r.err, CLIENT_ERR_TOO_LARGE);
	settle(&e);
	env_close(&e);
	server_stop(&s);
	/* chunked: counted as it is decoded */
	server_start(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n", false);
	env_open(&e, target_list(s.port, 0), NULL);
	get(&e, "/big", &c, 1000, 10);
	run_until(&e, &c.calls, 1, 2000);
	CHECK_EQ(c.err, CLIENT_ERR_TOO_LARGE);
	settle(&e);
	env_close(&e);
	server_stop(&s);
}

static void test_deadline(void)
{
	struct server s;
	struct env e;
	struct result r = { 0 };
	uint64_t t0;

	server_start(&s, NULL, false);
	env_open(&e, target_list(s.port, 0), NULL);
	t0 = clock_mono_ms();
	get(&e, "/slow", &r, 150, 0);
	run_until(&e, &r.calls, 1, 3000);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.err, CLIENT_ERR_TIMEOUT);
	CHECK(clock_mono_ms() - t0 >= 150 && clock_mono_ms() - t0 < 1000);
	settle(&e);
	env_close(&e);
	server_stop(&s);
}

static void test_connect_failure_retried_elsewhere(void)
{
	struct server s;
	struct env e;
	struct result r = { 0 }, d = { 0 };
	int dead = dead_port();

	server_start(&s, "HTTP/1.1 204 No Content\r\n\r\n", false);
	env_open(&e, target_list(dead, s.port), NULL);
	/* Round robin starts at the first target, which refuses: the retry goes on. */
	get(&e, "/r", &r, 1000, 0);
	run_until(&e, &r.calls, 1, 2000);
	CHECK_EQ(r.err, CLIENT_OK);
	CHECK_EQ(r.status, 204);
	CHECK(strstr(r.target, "127.0.0.1:") != NULL);
	env_close(&e);
	server_stop(&s);
	/* only a dead target: connect error */
	env_open(&e, target_list(dead, 0), NULL);
	get(&e, "/r", &d, 1000, 0);
	run_until(&e, &d.calls, 1, 2000);
	CHECK_EQ(d.err, CLIENT_ERR_CONNECT);
	settle(&e);
	env_close(&e);
}

static void test_stale_pooled_connection_replaced(void)
{
	struct server s;
	struct env e;
	struct result r1 = { 0 }, r2 = { 0 };

	/* The server closes after each answer without saying so: the pooled connection is
	 * dead when the second request takes it. */
	server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true);
	env_open(&e, target_list(s.port, 0), NULL);
	get(&e, "/1", &r1, 1000, 0);
	run_until(&e, &r1.calls, 1, 2000);
	CHECK_EQ(r1.err, CLIENT_OK);
	/* the server closed it (on loopback its FIN is then already queued for us) */
	for (int i = 0; i < 1000 && atomic_load(&s.closed) < 1; i++)
		usleep(1000);
	CHECK_EQ(atomic_load(&s.closed), 1);
	get(&e, "/2", &r2, 1000, 0);
	run_until(&e, &r2.calls, 1, 2000);
	CHECK_EQ(r2.err, CLIENT_OK);
	CHECK_EQ(r2.body_len, 2);
	CHECK_EQ(atomic_load(&s.accepted), 2);
	settle(&e);
	env_close(&e);
	server_stop(&s);
}

static void test_no_target_and_bad_response(void)
{
	struct server s;
	struct env e;
	struct result r = { 0 }, b = { 0 };

	/* a target health checks marked down is never picked */
	env_open(&e, "{\"address\": \"127.0.0.1:1\"}", NULL);
	atomic_store(&e.cfg->upstreams[0].targets[0].state->up, false);
	CHECK(get(&e, "/n", &r, 1000, 0) != NULL);
	CHECK_EQ(r.calls, 0);
	run_until(&e, &r.calls, 1, 1000);
	CHECK_EQ(r.err, CLIENT_ERR_NO_TARGET);
	atomic_store(&e.cfg->upstreams[0].targets[0].state->up, true);
	env_close(&e);
	server_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		     false);
	env_open(&e, target_list(s.port, 0), NULL);
	get(&e, "/b", &b, 1000, 0);
	run_until(&e, &b.calls, 1, 2000);
	CHECK_EQ(b.err, CLIENT_ERR_PROTOCOL);
	settle(&e);
	env_close(&e);
	server_stop(&s);
}

static void test_cancel_and_post_body(void)
{
	struct server s, q;
	struct env e;
	struct result r = { 0 }, p = { 0 };
	struct client_call *call;
	struct client_request_opts o;

	server_start(&s, NULL, false);
	env_open(&e, target_list(s.port, 0), NULL);
	call = get(&e, "/c", &r, 1000, 0);
	run_until(&e, &r.calls, 1, 50);
	client_cancel(call);
	run_until(&e, &r.calls, 1, 100);
	CHECK_EQ(r.calls, 0);
	settle(&e);
	env_close(&e);
	server_stop(&s);
	server_start(&q, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", false);
	env_open(&e, target_list(q.port, 0), NULL);
	o = (struct client_request_opts){ .cfg = e.cfg, .upstream = 0, .method = "POST",
					  .path = "/p", .host = "svc.internal",
					  .body = "{\"x\":1}", .body_len = 7 };
	CHECK(client_request(e.cl, &o, on_done, &p) != NULL);
	run_until(&e, &p.calls, 1, 2000);
	CHECK_EQ(p.err, CLIENT_OK);
	CHECK_EQ(p.status, 201);
	CHECK(strstr(q.last, "POST /p HTTP/1.1\r\nHost: svc.internal\r\n") == q.last);
	CHECK(strstr(q.last, "Content-Length: 7\r\n") != NULL);
	CHECK(strstr(q.last, "\r\n\r\n{\"x\":1}") != NULL);
	/* bad options: refused, no callback */
	o.path = "no-slash";
	CHECK(client_request(e.cl, &o, on_done, &p) == NULL);
	env_close(&e);
	server_stop(&q);
}

/* Requests in flight at once overlap: two 300 ms answers take about 300 ms, not 600. */
static void test_parallel_requests_overlap(void)
{
	static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct server a, b;
	struct env e;
	struct result ra = { 0 }, rb = { 0 };
	struct client_request_opts o = { .upstream = 0, .path = "/slow", .timeout_ms = 2000 };
	char json[512];
	struct cfg_errs errs = { 0 };
	struct xg_config *two;
	uint64_t t0, took;

	server_start(&a, reply, false);
	server_start(&b, reply, false);
	atomic_store(&a.delay_ms, 300);
	atomic_store(&b.delay_ms, 300);
	env_open(&e, target_list(a.port, 0), NULL);
	snprintf(json, sizeof(json),
		 "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:1\"}], "
		 "\"upstreams\": [{\"name\": \"a\", \"targets\": [{\"address\": \"127.0.0.1:%d\"}]},"
		 " {\"name\": \"b\", \"targets\": [{\"address\": \"127.0.0.1:%d\"}]}]}",
		 a.port, b.port);
	two = config_load_buffer(json, strlen(json), "two.json", &errs);
	CHECK(two != NULL);
	cfg_errs_free(&errs);
	o.cfg = two;
	t0 = clock_mono_ms();
	CHECK(client_request(e.cl, &o, on_done, &ra) != NULL);
	o.upstream = 1;
	CHECK(client_request(e.cl, &o, on_done, &rb) != NULL);
	run_until(&e, &ra.calls, 1, 3000);
	run_until(&e, &rb.calls, 1, 3000);
	took = clock_mono_ms() - t0;
	CHECK_EQ(ra.err, CLIENT_OK);
	CHECK_EQ(rb.err, CLIENT_OK);
	CHECK(took >= 300 && took < 550);
	env_close(&e);
	config_put(two);
	server_stop(&a);
	server_stop(&b);
}

/* max_conns_per_target: a call that finds every target full waits for a slot (counted in
 * the upstream's queue stats), or fails after queue_timeout_ms. */
static void test_max_conns_per_target(void)
{
	static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct server s;
	struct env e;
	struct result r1 = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 };
	struct upstream_queue_stats *qs;
	long depth0;
	uint64_t deq0, to0;

	server_start(&s, reply, false);
	atomic_store(&s.delay_ms, 200);
	env_open(&e, target_list(s.port, 0),
		 ", \"max_conns_per_target\": 1, \"queue_timeout_ms\": 2000");
	qs = e.cfg->upstreams[0].queue;
	depth0 = atomic_load(&qs->depth);
	deq0 = atomic_load(&qs->dequeued);
	to0 = atomic_load(&qs->timeouts);
	CHECK(get(&e, "/1", &r1, 3000, 0) != NULL);
	CHECK(get(&e, "/2", &r2, 3000, 0) != NULL);
	CHECK_EQ(atomic_load(&e.cfg->upstreams[0].targets[0].state->active), 1);
	CHECK_EQ(atomic_load(&qs->depth), depth0 + 1);
	run_until(&e, &r1.calls, 1, 3000);
	CHECK_EQ(r1.err, CLIENT_OK);
	CHECK_EQ(r2.calls, 0); /* still waiting or just sent: never two in flight */
	CHECK(atomic_load(&e.cfg->upstreams[0].targets[0].state->active) <= 1);
	run_until(&e, &r2.calls, 1, 3000);
	CHECK_EQ(r2.err, CLIENT_OK);
	CHECK_EQ(r2.status, 200);
	CHECK_EQ(atomic_load(&qs->depth), depth0);
	CHECK_EQ(atomic_load(&qs->dequeued), deq0 + 1);
	CHECK_EQ(atomic_load(&e.cfg->upstreams[0].targets[0].state->active), 0);
	settle(&e);
	env_close(&e);

	env_open(&e, target_list(s.port, 0),
		 ", \"max_conns_per_target\": 1, \"queue_timeout_ms\": 50");
	atomic_store(&s.delay_ms, 300);
	CHECK(get(&e, "/3", &r3, 3000, 0) != NULL);
	CHECK(get(&e, "/4", &r4, 3000, 0) != NULL);
	run_until(&e, &r4.calls, 1, 3000);
	CHECK_EQ(r4.err, CLIENT_ERR_QUEUE_TIMEOUT);
	CHECK_EQ(r3.calls, 0);
	CHECK_EQ(atomic_load(&qs->timeouts), to0 + 1);
	CHECK_EQ(atomic_load(&qs->depth), depth0);
	run_until(&e, &r3.calls, 1, 3000);
	CHECK_EQ(r3.err, CLIENT_OK);
	settle(&e);
	env_close(&e);
	server_stop(&s);
}

int main(void)
{
	RUN(test_content_length_and_reuse);
	RUN(test_chunked_body);
	RUN(test_close_delimited_body);
	RUN(test_body_bound);
	RUN(test_deadline);
	RUN(test_connect_failure_retried_elsewhere);
	RUN(test_stale_pooled_connection_replaced);
	RUN(test_no_target_and_bad_response);
	RUN(test_cancel_and_post_body);
	RUN(test_parallel_requests_overlap);
	RUN(test_max_conns_per_target);
	return CHECK_DONE();
}
