/*
 * Active health checks. One thread runs every probe with non-blocking sockets and poll():
 * connect, send "GET <path> HTTP/1.1", read the response head, 2xx/3xx passes. A target is
 * marked down after unhealthy_after consecutive failures and up after healthy_after passes.
 * Streaks live in struct target_state, so a reload (which rebuilds the probe list) loses
 * no history.
 */
#include "upstream/upstream.h"
#include "common/clock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "http/http.h"

#define HEALTH_DEFAULT_INTERVAL_MS 2000
#define HEALTH_MAX_TIMEOUT_MS 2000
#define HEALTH_RESPONSE_MAX 4096
#define HEALTH_MAX_POLL_MS 1000

enum probe_phase { PROBE_IDLE, PROBE_CONNECTING, PROBE_SENDING, PROBE_READING };

struct probe {
	struct target_state *state;
	const struct upstream_config *upstream; /* in hc->cfg, which the checker holds */
	const struct target_config *target;
	uint64_t next_due_ms, deadline_ms;
	enum probe_phase phase;
	int fd;
	char *request;
	size_t request_len, sent;
	char *response;
	size_t got;
};

struct health_checker {
	pthread_t thread;
	pthread_mutex_t lock;
	struct xg_config *pending; /* under lock: next config to check */
	bool stop;		   /* under lock */
	int wake_fd;
	/* Owned by the checker thread. */
	struct xg_config *cfg;
	struct probe *probes;
	int nprobes;
	struct pollfd *pfds;
	int *pfd_probe;
};

static uint32_t interval_of(const struct health_check_config *h)
{
	return h->interval_ms ? h->interval_ms : HEALTH_DEFAULT_INTERVAL_MS;
}

static uint32_t timeout_of(const struct health_check_config *h)
{
	uint32_t interval = interval_of(h);

	if (h->timeout_ms)
		return h->timeout_ms;
	return interval < HEALTH_MAX_TIMEOUT_MS ? interval : HEALTH_MAX_TIMEOUT_MS;
}

static void probe_close(struct probe *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->phase = PROBE_IDLE;
}

static void probe_verdict(struct probe *p, bool pass, const char *why)
{
	const struct health_check_config *h = &p->upstream->health;
	struct target_state *t = p->state;
	unsigned need;

	probe_close(p);
	if (pass) {
		atomic_store(&t->health_fail_streak, 0);
		need = h->healthy_after ? h->healthy_after : 1;
		if (atomic_fetch_add(&t->health_ok_streak, 1) + 1 >= need &&
		    atomic_exchange(&t->up, true) == false)
			log_info("health", "upstream %s target %s is up", p->upstream->name,
				 p->target->address_text);
		return;
	}
	atomic_store(&t->health_ok_streak, 0);
	need = h->unhealthy_after ? h->unhealthy_after : 1;
	if (atomic_fetch_add(&t->health_fail_streak, 1) + 1 >= need &&
	    atomic_exchange(&t->up, false) == true)
		log_info("health", "upstream %s target %s is down: %s", p->upstream->name,
			 p->target->address_text, why);
}

static void probe_start(struct probe *p, uint64_t now)
{
	const struct target_config *tc = p->target;

	p->next_due_ms = now + interval_of(&p->upstream->health);
	p->deadline_ms = now + timeout_of(&p->upstream->health);
	p->sent = 0;
	p->got = 0;
	p->fd = socket(tc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		log_warn("health", "socket: %s", strerror(errno));
		probe_close(p);
		return; /* a local problem says nothing about the target */
	}
	p->phase = PROBE_CONNECTING;
	if (connect(p->fd, (const struct sockaddr *)&tc->addr, tc->addrlen) && errno != EINPROGRESS)
		probe_verdict(p, false, strerror(errno));
}

static void probe_send(struct probe *p)
{
	ssize_t n = send(p->fd, p->request + p->sent, p->request_len - p->sent, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			probe_verdict(p, false, strerror(errno));
		return;
	}
	p->sent += n;
	if (p->sent == p->request_len)
		p->phase = PROBE_READING;
}

static void probe_connected(struct probe *p)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len))
		err = errno;
	if (err) {
		probe_verdict(p, false, strerror(err));
		return;
	}
	p->phase = PROBE_SENDING;
	probe_send(p);
}

static void probe_read(struct probe *p)
{
	struct http_limits limits = {.max_header_bytes = HEALTH_RESPONSE_MAX};
	struct http_response resp;
	char why[64];
	ssize_t n;
	int rc;

	n = recv(p->fd, p->response + p->got, HEALTH_RESPONSE_MAX - p->got, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			probe_verdict(p, false, strerror(errno));
		return;
	}
	if (n == 0) {
		probe_verdict(p, false, "connection closed before the response head");
		return;
	}
	p->got += n;
	rc = http_parse_response(p->response, p->got, &limits, HTTP_GET, &resp);
	if (rc == HTTP_INCOMPLETE) {
		if (p->got == HEALTH_RESPONSE_MAX)
			probe_verdict(p, false, "response head too large");
		return;
	}
	if (rc < 0) {
		probe_verdict(p, false, "malformed response");
		return;
	}
	snprintf(why, sizeof(why), "status %d", resp.status);
	probe_verdict(p, resp.status >= 200 && resp.status < 400, why);
}

static void probe_event(struct probe *p)
{
	switch (p->phase) {
	case PROBE_CONNECTING:
		probe_connected(p);
		break;
	case PROBE_SENDING:
		probe_send(p);
		break;
	case PROBE_READING:
		probe_read(p);
		break;
	default:
		break;
	}
}

static void probes_free(struct health_checker *hc)
{
	for (int i = 0; i < hc->nprobes; i++) {
		probe_close(&hc->probes[i]);
		free(hc->probes[i].request);
		free(hc->probes[i].response);
	}
	free(hc->probes);
	free(hc->pfds);
	free(hc->pfd_probe);
	hc->probes = NULL;
	hc->pfds = NULL;
	hc->pfd_probe = NULL;
	hc->nprobes = 0;
}

static int probe_init(struct probe *p, const struct upstream_config *u,
		      const struct target_config *tc, uint64_t due)
{
	int len;

	p->state = tc->state;
	p->upstream = u;
	p->target = tc;
	p->fd = -1;
	p->phase = PROBE_IDLE;
	p->next_due_ms = due;
	len = asprintf(&p->request,
		       "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: xgate-health\r\n"
		       "Connection: close\r\n\r\n",
		       u->health.path && *u->health.path ? u->health.path : "/", tc->address_text);
	if (len < 0) {
		p->request = NULL;
		return -1;
	}
	p->request_len = len;
	p->response = malloc(HEALTH_RESPONSE_MAX);
	return p->response ? 0 : -1;
}

/* When the target was checked under the old config too, keep its schedule. */
static uint64_t due_from(const struct probe *old, int nold, const struct target_state *t,
			 uint64_t now)
{
	for (int i = 0; i < nold; i++)
		if (old[i].state == t)
			return old[i].next_due_ms < now ? now : old[i].next_due_ms;
	return now;
}

static int count_checked(const struct xg_config *cfg)
{
	int n = 0;

	for (int i = 0; i < cfg->nupstreams; i++)
		if (cfg->upstreams[i].health.enabled)
			n += cfg->upstreams[i].ntargets;
	return n;
}

/* Targets without checks count as up: the verdict of a disabled check is not kept. */
static void mark_unchecked_up(const struct upstream_config *u)
{
	for (int j = 0; j < u->ntargets; j++) {
		struct target_state *t = u->targets[j].state;

		if (!t)
			continue;
		if (!atomic_exchange(&t->up, true))
			log_info("health", "upstream %s target %s is up (health checks off)",
				 u->name, u->targets[j].address_text);
		atomic_store(&t->health_ok_streak, 0);
		atomic_store(&t->health_fail_streak, 0);
	}
}

static int probes_build(struct health_checker *hc, struct xg_config *cfg, struct probe *old,
			int nold)
{
	int max = count_checked(cfg), n = 0;
	uint64_t now = clock_mono_ms();

	hc->probes = calloc(max ? max : 1, sizeof(*hc->probes));
	hc->pfds = calloc(max + 1, sizeof(*hc->pfds));
	hc->pfd_probe = calloc(max + 1, sizeof(*hc->pfd_probe));
	if (!hc->probes || !hc->pfds || !hc->pfd_probe)
		return -1;
	for (int i = 0; i < cfg->nupstreams; i++) {
		const struct upstream_config *u = &cfg->upstreams[i];

		if (!u->health.enabled) {
			mark_unchecked_up(u);
			continue;
		}
		for (int j = 0; j < u->ntargets; j++) {
			const struct target_config *tc = &u->targets[j];

			if (!tc->state)
				continue;
			hc->nprobes = n + 1;
			if (probe_init(&hc->probes[n], u, tc, due_from(old, nold, tc->state, now)))
				return -1;
			n++;
		}
	}
	return 0;
}

/* Swaps in a new config; in-flight probes of the old one are dropped unjudged. */
static void checker_apply(struct health_checker *hc, struct xg_config *cfg)
{
	struct probe *old = hc->probes;
	int nold = hc->nprobes;
	struct pollfd *old_pfds = hc->pfds;
	int *old_pfd_probe = hc->pfd_probe;
	struct xg_config *old_cfg = hc->cfg;

	hc->probes = NULL;
	hc->nprobes = 0;
	if (probes_build(hc, cfg, old, nold)) {
		log_error("health", "out of memory: health checks keep the previous targets");
		probes_free(hc);
		hc->probes = old;
		hc->nprobes = nold;
		hc->pfds = old_pfds;
		hc->pfd_probe = old_pfd_probe;
		config_put(cfg);
		return;
	}
	for (int i = 0; i < nold; i++) {
		probe_close(&old[i]);
		free(old[i].request);
		free(old[i].response);
	}
	free(old);
	free(old_pfds);
	free(old_pfd_probe);
	hc->cfg = cfg;
	if (old_cfg)
		config_put(old_cfg);
}

/* Starts due probes, fails overdue ones; returns the poll timeout until the next event. */
static int checker_tick(struct health_checker *hc, uint64_t now)
{
	uint64_t next = now + HEALTH_MAX_POLL_MS;

	for (int i = 0; i < hc->nprobes; i++) {
		struct probe *p = &hc->probes[i];

		if (p->phase != PROBE_IDLE && now >= p->deadline_ms)
			probe_verdict(p, false, "timeout");
		if (p->phase == PROBE_IDLE && now >= p->next_due_ms)
			probe_start(p, now);
		if (p->phase == PROBE_IDLE && p->next_due_ms < next)
			next = p->next_due_ms;
		if (p->phase != PROBE_IDLE && p->deadline_ms < next)
			next = p->deadline_ms;
	}
	return next > now ? (int)(next - now) : 0;
}

static int checker_pollset(struct health_checker *hc)
{
	int n = 1;

	hc->pfds[0].fd = hc->wake_fd;
	hc->pfds[0].events = POLLIN;
	for (int i = 0; i < hc->nprobes; i++) {
		struct probe *p = &hc->probes[i];

		if (p->phase == PROBE_IDLE)
			continue;
		hc->pfds[n].fd = p->fd;
		hc->pfds[n].events = p->phase == PROBE_READING ? POLLIN : POLLOUT;
		hc->pfd_probe[n] = i;
		n++;
	}
	return n;
}

static bool checker_take_update(struct health_checker *hc)
{
	struct xg_config *next;
	bool stop;

	pthread_mutex_lock(&hc->lock);
	next = hc->pending;
	hc->pending = NULL;
	stop = hc->stop;
	pthread_mutex_unlock(&hc->lock);
	if (next)
		checker_apply(hc, next);
	return !stop;
}

static void *checker_main(void *arg)
{
	struct health_checker *hc = arg;

	while (checker_take_update(hc)) {
		int timeout = checker_tick(hc, clock_mono_ms());
		int n = checker_pollset(hc);

		if (poll(hc->pfds, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("health", "poll: %s", strerror(errno));
			break;
		}
		if (hc->pfds[0].revents) {
			uint64_t v;

			if (read(hc->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_warn("health", "wake: %s", strerror(errno));
		}
		for (int i = 1; i < n; i++)
			if (hc->pfds[i].revents)
				probe_event(&hc->probes[hc->pfd_probe[i]]);
	}
	return NULL;
}

static void checker_wake(struct health_checker *hc)
{
	uint64_t one = 1;

	if (write(hc->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("health", "wake: %s", strerror(errno));
}

struct health_checker *health_checker_start(struct xg_config *cfg)
{
	struct health_checker *hc = calloc(1, sizeof(*hc));
	int err;

	if (!hc) {
		log_error("health", "out of memory");
		return NULL;
	}
	hc->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (hc->wake_fd < 0) {
		log_error("health", "eventfd: %s", strerror(errno));
		free(hc);
		return NULL;
	}
	pthread_mutex_init(&hc->lock, NULL);
	hc->pending = config_get(cfg);
	err = pthread_create(&hc->thread, NULL, checker_main, hc);
	if (err) {
		log_error("health", "pthread_create: %s", strerror(err));
		config_put(hc->pending);
		close(hc->wake_fd);
		pthread_mutex_destroy(&hc->lock);
		free(hc);
		return NULL;
	}
	return hc;
}

void health_checker_update(struct health_checker *hc, struct xg_config *cfg)
{
	struct xg_config *dropped;

	if (!hc)
		return;
	pthread_mutex_lock(&hc->lock);
	dropped = hc->pending;
	hc->pending = config_get(cfg);
	pthread_mutex_unlock(&hc->lock);
	if (dropped)
		config_put(dropped);
	checker_wake(hc);
}

void health_checker_stop(struct health_checker *hc)
{
	if (!hc)
		return;
	pthread_mutex_lock(&hc->lock);
	hc->stop = true;
	pthread_mutex_unlock(&hc->lock);
	checker_wake(hc);
	pthread_join(hc->thread, NULL);
	probes_free(hc);
	if (hc->pending)
		config_put(hc->pending);
	if (hc->cfg)
		config_put(hc->cfg);
	close(hc->wake_fd);
	pthread_mutex_destroy(&hc->lock);
	free(hc);
}
