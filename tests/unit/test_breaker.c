/*
 * Target state: registry, circuit breaker (fake clock), half-open probe admission, and the
 * active health checker against a real loopback server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "upstream/upstream.h"
#include "unit/check.h"

static struct target_state *fresh_state(const char *tag)
{
	static int seq;
	char name[64];

	snprintf(name, sizeof(name), "breaker-test-%s-%d", tag, ++seq);
	return target_state_get(name, "192.0.2.1:80");
}

static void test_registry(void)
{
	struct target_state *a = target_state_get("reg", "127.0.0.1:1");
	struct target_state *b = target_state_get("reg", "127.0.0.1:2");
	struct target_state *c = target_state_get("reg2", "127.0.0.1:1");

	CHECK(a && b && c);
	CHECK(a != b && a != c && b != c);
	CHECK(target_state_get("reg", "127.0.0.1:1") == a);
	CHECK(atomic_load(&a->up));
	CHECK_EQ(atomic_load(&a->breaker), BREAKER_CLOSED);
}

struct racer {
	const char *name;
	struct target_state *got;
};

static void *registry_racer(void *arg)
{
	struct racer *r = arg;

	r->got = target_state_get(r->name, "198.18.0.1:443");
	return NULL;
}

static void test_registry_concurrent(void)
{
	struct racer r[8];
	pthread_t th[8];

	for (int i = 0; i < 8; i++) {
		r[i].name = "reg-race";
		pthread_create(&th[i], NULL, registry_racer, &r[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	for (int i = 1; i < 8; i++)
		CHECK(r[i].got == r[0].got);
	CHECK(r[0].got != NULL);
}

static void test_breaker_opens_after_failures(void)
{
	struct breaker_config b = {.enabled = true, .failures = 3, .open_ms = 1000};
	struct target_state *t = fresh_state("open");
	uint64_t now = 5000;

	target_report(t, &b, false, now);
	target_report(t, &b, false, now);
	CHECK(target_available(t, &b, now));
	/* A success in between resets the count. */
	target_report(t, &b, true, now);
	target_report(t, &b, false, now);
	target_report(t, &b, false, now);
	CHECK(target_available(t, &b, now));
	CHECK_EQ(atomic_load(&t->breaker), BREAKER_CLOSED);
	target_report(t, &b, false, now);
	CHECK_EQ(atomic_load(&t->breaker), BREAKER_OPEN);
	CHECK(!target_available(t, &b, now));
	CHECK(!target_available(t, &b, now + 999));
	/* Late failures while open do not extend the open period. */
	target_report(t, &b, false, now + 500);
	CHECK(target_available(t, &b, now + 1000));
	CHECK_EQ(atomic_load(&t->breaker), BREAKER_HALF_OPEN);
}

static void test_half_open_single_probe(void)
{
	struct breaker_config b = {.enabled = true, .failures = 1, .open_ms = 1000};
	struct target_state *t = fresh_state("probe");
	uint64_t now = 10000;

	target_report(t, &b, false, now);
	CHECK(!target_available(t, &b, now + 10));
	now += 1000;
	CHECK(target_available(t, &b, now));
	/* Exactly one probe: everyone else waits for its verdict. */
	CHECK(!target_available(t, &b, now));
	CHECK(!target_available(t, &b, now + 500));
	/* Probe fails: open again for open_ms from now. */
	target_report(t, &b, false, now + 600);
	CHECK_EQ(atomic_load(&t->breaker), BREAKER_OPEN);
	CHECK(!target_available(t, &b, now + 1599));
	CHECK(target_available(t, &b, now + 1600));
	CHECK(!target_available(t, &b, now + 1600));
	/* Probe succeeds: closed, everyone admitted. */
	target_report(t, &b, true, now + 1700);
	CHECK_EQ(atomic_load(&t->breaker), BREAKER_CLOSED);
	CHECK(target_available(t, &b, now + 1700));
	CHECK(target_available(t, &b, now + 1700));
}

static void test_lost_probe_is_replaced(void)
{
	struct breaker_config b = {.enabled = true, .failures = 1, .open_ms = 200};
	struct target_state *t = fresh_state("lost");

	target_report(t, &b, false, 0);
	CHECK(target_available(t, &b, 200));
	CHECK(!target_available(t, &b, 399));
	/* The probe never reported: after open_ms another request probes. */
	CHECK(target_available(t, &b, 400));
	CHECK(!target_available(t, &b, 401));
}

static void test_breaker_disabled_and_health(void)
{
	struct breaker_config off = {.enabled = false, .failures = 1, .open_ms = 1000};
	struct breaker_config on = {.enabled = true, .failures = 1, .open_ms = 1000};
	struct target_state *t = fresh_state("off");

	for (int i = 0; i < 10; i++)
		target_report(t, &off, false, 0);
	CHECK(target_available(t, &off, 0));
	CHECK_EQ(atomic_load(&t->breaker), BREAKER_CLOSED);
	atomic_store(&t->up, false);
	CHECK(!target_available(t, &off, 0));
	CHECK(!target_available(t, &on, 0));
	atomic_store(&t->up, true);
	CHECK(target_available(t, &on, 0));
	/* failures 0 is treated as 1. */
	on.failures = 0;
	target_report(t, &on, false, 0);
	CHECK(!target_available(t, &on, 1));
}

struct probe_racer {
	struct target_state *t;
	struct breaker_config *b;
	pthread_barrier_t *go;
	int admitted;
};

static void *probe_race(void *arg)
{
	struct probe_racer *r = arg;

	pthread_barrier_wait(r->go);
	for (int i = 0; i < 1000; i++)
		r->admitted += target_available(r->t, r->b, 50000);
	return NULL;
}

static void test_half_open_concurrent(void)
{
	struct breaker_config b = {.enabled = true, .failures = 1, .open_ms = 1000};
	struct target_state *t = fresh_state("race");
	struct probe_racer r[4];
	pthread_barrier_t go;
	pthread_t th[4];
	int total = 0;

	target_report(t, &b, false, 1000);
	pthread_barrier_init(&go, NULL, 4);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct probe_racer){.t = t, .b = &b, .go = &go};
		pthread_create(&th[i], NULL, probe_race, &r[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += r[i].admitted;
	}
	pthread_barrier_destroy(&go);
	CHECK_EQ(total, 1);
}

static void test_balance_respects_breaker(void)
{
	struct target_config targets[2] = {
	    {.address_text = "198.18.1.1:80", .weight = 1},
	    {.address_text = "198.18.1.2:80", .weight = 1},
	};
	struct upstream_config u = {
	    .name = "brk",
	    .balance = BALANCE_ROUND_ROBIN,
	    .targets = targets,
	    .ntargets = 2,
	    .breaker = {.enabled = true, .failures = 2, .open_ms = 100},
	};
	struct balance_rr rr = {{0}};
	int bad = 0, probes = 0;

	targets[0].state = fresh_state("bal0");
	targets[1].state = fresh_state("bal1");
	target_report(targets[0].state, &u.breaker, false, 0);
	target_report(targets[0].state, &u.breaker, false, 0);
	for (int i = 0; i < 20; i++)
		bad += balance_pick(&u, &rr, 0, 0, 50) != 1;
	CHECK_EQ(bad, 0);
	/* Open period over: the next picks include one probe to target 0, then only 1. */
	for (int i = 0; i < 20; i++)
		probes += balance_pick(&u, &rr, 0, 0, 100) == 0;
	CHECK_EQ(probes, 1);
	target_report(targets[0].state, &u.breaker, true, 120);
	probes = 0;
	for (int i = 0; i < 20; i++)
		probes += balance_pick(&u, &rr, 0, 0, 130) == 0;
	CHECK_EQ(probes, 10);
	/* Only target left is open and its probe taken: nothing to pick. */
	u.ntargets = 1;
	target_report(targets[0].state, &u.breaker, false, 200);
	target_report(targets[0].state, &u.breaker, false, 200);
	CHECK_EQ(balance_pick(&u, &rr, 0, 0, 300), 0);
	CHECK_EQ(balance_pick(&u, &rr, 0, 0, 300), -1);
}

/* A loopback HTTP server whose behaviour the test switches. */
enum server_mode { SERVE_OK, SERVE_503, SERVE_HANG, SERVE_CLOSE, SERVE_GARBAGE, SERVE_REDIRECT };

struct test_server {
	int listen_fd;
	int port;
	pthread_t thread;
	atomic_int mode;
	atomic_bool stop;
	atomic_int requests;
	atomic_bool request_ok; /* every request looked as expected */
	int hung[64];
	int nhung;
};

static bool request_well_formed(const char *req, int port)
{
	char host[64];

	snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", port);
	return !strncmp(req, "GET /healthz HTTP/1.1\r\n", 23) && strstr(req, host) &&
	       strstr(req, "\r\nConnection: close\r\n") && strstr(req, "\r\n\r\n");
}

static void serve_one(struct test_server *s, int fd)
{
	static const char *const replies[] = {
	    [SERVE_OK] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	    [SERVE_503] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
	    [SERVE_GARBAGE] = "garbage\r\n\r\n",
	    [SERVE_REDIRECT] = "HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n",
	};
	int mode = atomic_load(&s->mode);
	char buf[1024];
	size_t got = 0;
	ssize_t n;

	if (mode == SERVE_CLOSE) {
		close(fd);
		return;
	}
	while (got < sizeof(buf) - 1 && (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0) {
		got += n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	buf[got] = '\0';
	atomic_fetch_add(&s->requests, 1);
	if (!request_well_formed(buf, s->port))
		atomic_store(&s->request_ok, false);
	if (mode == SERVE_HANG && s->nhung < 64) {
		s->hung[s->nhung++] = fd;
		return;
	}
	if (send(fd, replies[mode], strlen(replies[mode]), MSG_NOSIGNAL) < 0)
		atomic_store(&s->request_ok, false);
	close(fd);
}

static void *server_main(void *arg)
{
	struct test_server *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd pfd = {.fd = s->listen_fd, .events = POLLIN};
		int fd;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		fd = accept(s->listen_fd, NULL, NULL);
		if (fd >= 0)
			serve_one(s, fd);
	}
	return NULL;
}

static int server_start(struct test_server *s)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	memset(s, 0, sizeof(*s));
	atomic_store(&s->request_ok, true);
	s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    listen(s->listen_fd, 64) || getsockname(s->listen_fd, (struct sockaddr *)&sin, &len))
		return -1;
	s->port = ntohs(sin.sin_port);
	return pthread_create(&s->thread, NULL, server_main, s) ? -1 : 0;
}

static void server_stop(struct test_server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->listen_fd);
	for (int i = 0; i < s->nhung; i++)
		close(s->hung[i]);
	s->nhung = 0;
}

static bool wait_up(struct target_state *t, bool want, int max_ms)
{
	struct timespec ts = {0, 10 * 1000000};

	for (int waited = 0; waited < max_ms; waited += 10) {
		if (atomic_load(&t->up) == want)
			return true;
		nanosleep(&ts, NULL);
	}
	return atomic_load(&t->up) == want;
}

struct checker_fixture {
	struct xg_config cfg, cfg_off;
	struct upstream_config u, u_off;
	struct target_config target;
	char address[32];
};

static void checker_fixture_init(struct checker_fixture *f, int port)
{
	char err[128];

	memset(f, 0, sizeof(*f));
	snprintf(f->address, sizeof(f->address), "127.0.0.1:%d", port);
	f->target.address_text = f->address;
	f->target.weight = 1;
	if (!cfg_parse_addr(f->address, &f->target.addr, &f->target.addrlen, err, sizeof(err)))
		fprintf(stderr, "cfg_parse_addr: %s\n", err);
	f->target.state = fresh_state("health");
	f->u.name = "hc";
	f->u.targets = &f->target;
	f->u.ntargets = 1;
	f->u.health = (struct health_check_config){.enabled = true,
						   .path = "/healthz",
						   .interval_ms = 40,
						   .unhealthy_after = 2,
						   .healthy_after = 2};
	f->u_off = f->u;
	f->u_off.health.enabled = false;
	atomic_init(&f->cfg.refs, 1);
	f->cfg.upstreams = &f->u;
	f->cfg.nupstreams = 1;
	atomic_init(&f->cfg_off.refs, 1);
	f->cfg_off.upstreams = &f->u_off;
	f->cfg_off.nupstreams = 1;
}

static void test_health_checker(void)
{
	struct checker_fixture f;
	struct health_checker *hc;
	struct target_state *t;
	struct test_server s;

	if (server_start(&s)) {
		CHECK(0);
		return;
	}
	checker_fixture_init(&f, s.port);
	t = f.target.state;
	hc = health_checker_start(&f.cfg);
	CHECK(hc != NULL);
	if (!hc)
		goto out;
	/* 503 twice: down; 200 twice: up again. */
	atomic_store(&s.mode, SERVE_503);
	CHECK(wait_up(t, false, 2000));
	atomic_store(&s.mode, SERVE_OK);
	CHECK(wait_up(t, true, 2000));
	CHECK(atomic_load(&s.requests) >= 4);
	/* Accepts but never answers: the timeout (min(interval, 2000) = 40 ms) fails it. */
	atomic_store(&s.mode, SERVE_HANG);
	CHECK(wait_up(t, false, 2000));
	atomic_store(&s.mode, SERVE_REDIRECT);
	CHECK(wait_up(t, true, 2000));
	atomic_store(&s.mode, SERVE_GARBAGE);
	CHECK(wait_up(t, false, 2000));
	atomic_store(&s.mode, SERVE_OK);
	CHECK(wait_up(t, true, 2000));
	atomic_store(&s.mode, SERVE_CLOSE);
	CHECK(wait_up(t, false, 2000));
	atomic_store(&s.mode, SERVE_OK);
	CHECK(wait_up(t, true, 2000));
	CHECK(atomic_load(&s.request_ok));
	/* Nobody listening: connection refused. */
	server_stop(&s);
	CHECK(wait_up(t, false, 2000));
	/* Reload to a config without checks: the target counts as up again. */
	health_checker_update(hc, &f.cfg_off);
	CHECK(wait_up(t, true, 2000));
	health_checker_update(hc, &f.cfg);
	CHECK(wait_up(t, false, 2000));
	health_checker_stop(hc);
	CHECK_EQ(atomic_load(&f.cfg.refs), 1);
	CHECK_EQ(atomic_load(&f.cfg_off.refs), 1);
	return;
out:
	server_stop(&s);
}

static void test_health_single_failure_tolerated(void)
{
	struct checker_fixture f;
	struct health_checker *hc;
	struct test_server s;
	struct timespec ts = {0, 300 * 1000000};

	if (server_start(&s)) {
		CHECK(0);
		return;
	}
	checker_fixture_init(&f, s.port);
	f.u.health.interval_ms = 1000;
	f.u.health.unhealthy_after = 3;
	atomic_store(&s.mode, SERVE_503);
	hc = health_checker_start(&f.cfg);
	CHECK(hc != NULL);
	/* The first check runs at once; one failure of three needed keeps it up. */
	nanosleep(&ts, NULL);
	CHECK_EQ(atomic_load(&s.requests), 1);
	CHECK(atomic_load(&f.target.state->up));
	CHECK_EQ(atomic_load(&f.target.state->health_fail_streak), 1);
	health_checker_stop(hc);
	server_stop(&s);
	CHECK_EQ(atomic_load(&f.cfg.refs), 1);
}

int main(void)
{
	RUN(test_registry);
	RUN(test_registry_concurrent);
	RUN(test_breaker_opens_after_failures);
	RUN(test_half_open_single_probe);
	RUN(test_lost_probe_is_replaced);
	RUN(test_breaker_disabled_and_health);
	RUN(test_half_open_concurrent);
	RUN(test_balance_respects_breaker);
	RUN(test_health_checker);
	RUN(test_health_single_failure_tolerated);
	return CHECK_DONE();
}
