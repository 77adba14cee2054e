/*
 * Worker threads: one io_uring per thread, one SO_REUSEPORT socket per listener per
 * worker, multishot accept, receives through a provided-buffer ring (registered by hand:
 * liburing 2.3 has no io_uring_setup_buf_ring).
 */
#include "proxy/worker.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/introspect.h"
#include "cache/cache.h"
#include "client/client.h"
#include "cluster/cluster.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "proxy/proxy.h"

#define RING_ENTRIES 2048
#define LOOP_TICK_MS 200
#define RESP_CACHE_BYTES (64u << 20)


struct io_uring_sqe *worker_sqe(struct worker *w)
{
	return ring_get_sqe(&w->ring);
}

static int ring_init(struct worker *w, struct gateway_features *features)
{
	struct io_uring_params p = { 0 };
	int ret;

	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
	p.flags &= ~IORING_SETUP_COOP_TASKRUN; /* DEFER_TASKRUN implies it is not needed */
	ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	} else if (!ret && w->id == 0) {
		features->io_uring_single_issuer = true;
		features->io_uring_defer_taskrun = true;
	}
	return ret;
}

static int buf_ring_init(struct worker *w)
{
	struct io_uring_buf_reg reg = { 0 };
	size_t ring_bytes = PROVIDED_BUFS * sizeof(struct io_uring_buf);
	int ret;

	w->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1,
		     0);
	if (w->br == MAP_FAILED)
		return -errno;
	w->bufs = malloc((size_t)PROVIDED_BUFS * RECV_CHUNK);
	if (!w->bufs)
		return -ENOMEM;
	reg.ring_addr = (unsigned long)w->br;
	reg.ring_entries = PROVIDED_BUFS;
	reg.bgid = BUF_GROUP;
	ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (ret)
		return ret;
	io_uring_buf_ring_init(w->br);
	w->br_mask = io_uring_buf_ring_mask(PROVIDED_BUFS);
	for (int i = 0; i < PROVIDED_BUFS; i++)
		io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * RECV_CHUNK, RECV_CHUNK, i,
				      w->br_mask, i);
	io_uring_buf_ring_advance(w->br, PROVIDED_BUFS);
	return 0;
}

void worker_buf_return(struct worker *w, int bid)
{
	io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * RECV_CHUNK, RECV_CHUNK, bid,
			      w->br_mask, 0);
	io_uring_buf_ring_advance(w->br, 1);
}

const char *worker_buf(struct worker *w, int bid)
{
	return w->bufs + (size_t)bid * RECV_CHUNK;
}

static int listen_socket(const struct listener_config *lc, char *err, size_t errlen)
{
	int one = 1, fd;

	fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (lc->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) < 0 ||
	    listen(fd, 4096) < 0) {
		snprintf(err, errlen, "listener \"%s\" on %s: %s", lc->name, lc->address_text,
			 strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void arm_accept(struct worker *w, struct listen_sock *ls)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_prep_multishot_accept(sqe, ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ls | OP_ACCEPT);
	ls->accept_armed = true;
}

static void listen_sock_retire(struct worker *w, struct listen_sock *ls)
{
	struct io_uring_sqe *sqe;

	if (ls->closing)
		return;
	ls->closing = true;
	if (!ls->accept_armed) {
		close(ls->fd);
		ls->fd = -1;
		return;
	}
	sqe = worker_sqe(w);
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)ls | OP_ACCEPT, 0);
	io_uring_sqe_set_data64(sqe, OP_CANCEL);
}

/* Keeps sockets of listeners whose address is unchanged, opens new ones, retires the rest. */
static int sync_listeners(struct worker *w, char *err, size_t errlen)
{
	const struct xg_config *cfg = w->cfg;
	struct listen_sock **ls;
	int n = 0;

	snprintf(err, errlen, "out of memory");
	for (int i = 0; i < w->nls; i++)
		w->ls[i]->stale = true;
	ls = calloc(w->nls + cfg->nlisteners, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	for (int i = 0; i < w->nls; i++) {
		ls[n++] = w->ls[i];
		for (int j = 0; j < cfg->nlisteners; j++)
			if (!w->ls[i]->closing && !strcmp(w->ls[i]->address, cfg->listeners[j].address_text)) {
				w->ls[i]->stale = false;
				w->ls[i]->listener = j;
			}
	}
	for (int j = 0; j < cfg->nlisteners; j++) {
		bool have = false;
		struct listen_sock *s;

		for (int i = 0; i < w->nls; i++)
			have |= !w->ls[i]->stale && w->ls[i]->listener == j;
		if (have)
			continue;
		s = calloc(1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		s->address = strdup(cfg->listeners[j].address_text);
		s->listener = j;
		s->fd = listen_socket(&cfg->listeners[j], err, errlen);
		if (s->fd < 0) {
			free(s->address);
			free(s);
			free(ls);
			return -1;
		}
		arm_accept(w, s);
		ls[n++] = s;
	}
	for (int i = 0; i < n; i++)
		if (ls[i]->stale)
			listen_sock_retire(w, ls[i]);
	free(w->ls);
	w->ls = ls;
	w->nls = n;
	return 0;
}

struct balance_rr *worker_rr(struct worker *w, const struct xg_config *cfg, int upstream)
{
	const struct upstream_config *uc = &cfg->upstreams[upstream];

	if (cfg == w->cfg)
		return upstream < w->nrr ? &w->rr[upstream] : NULL;
	/* A connection on an older snapshot shares the newest config's state for the same
	 * pool (same name, same targets), so its picks keep rotating. */
	for (int u = 0; u < w->nrr; u++) {
		const struct upstream_config *now = &w->cfg->upstreams[u];

		if (!strcmp(now->name, uc->name) && now->ntargets == uc->ntargets)
			return &w->rr[u];
	}
	return NULL;
}

/* One step of nginx's smooth weighted round robin over all targets (no availability). */
static void rr_advance(struct balance_rr *rr, const struct upstream_config *uc)
{
	int64_t total = 0;
	int best = -1;

	for (int t = 0; t < uc->ntargets; t++) {
		rr->current[t] += uc->targets[t].weight;
		total += uc->targets[t].weight;
		if (best < 0 || rr->current[t] > rr->current[best])
			best = t;
	}
	if (best >= 0)
		rr->current[best] -= total;
}

static void adopt_config(struct worker *w, struct xg_config *cfg)
{
	struct balance_rr *rr = calloc(cfg->nupstreams + 1, sizeof(*rr));

	if (!rr) {
		config_put(cfg);
		return;
	}
	config_put(w->cfg);
	w->cfg = cfg;
	/* Cache keys carry route indexes, which a new config renumbers. */
	if (w->cache)
		resp_cache_clear(w->cache);
	/* Start worker N's smooth round robin N steps into the sequence, so the first
	 * requests of different workers do not all land on the same target. */
	for (int u = 0; u < cfg->nupstreams; u++)
		for (int step = 0; step < w->id; step++)
			rr_advance(&rr[u], &cfg->upstreams[u]);
	free(w->rr);
	w->rr = rr;
	w->nrr = cfg->nupstreams;
	w->max_conns = cfg->limits.max_connections / w->gw->nworkers + 1;
	cluster_rl_sync(w->cluster, cfg->cluster);
}

static void sync_config(struct worker *w)
{
	char err[256];

	if (atomic_load_explicit(&w->gw->config, memory_order_acquire) == w->cfg)
		return;
	adopt_config(w, gateway_config(w->gw));
	/* HTTP/2 clients keep connections for long: GOAWAY moves them to the new config */
	for (struct conn *c = w->conns_head.next; c != &w->conns_head; c = c->next)
		if (c->h2)
			h2conn_drain(c);
	if (sync_listeners(w, err, sizeof(err)))
		log_error("worker", "worker %d: cannot apply listeners: %s", w->id, err);
}

/* Pools are few (one per target) and looked up per upstream request: a short array. */
static struct pool *pool_find(struct worker *w, struct target_state *ts, bool create)
{
	struct pool *p;

	for (int i = 0; i < w->npools; i++)
		if (w->pools[i].ts == ts)
			return &w->pools[i];
	if (!create)
		return NULL;
	p = realloc(w->pools, (w->npools + 1) * sizeof(*p));
	if (!p)
		return NULL;
	w->pools = p;
	p = &w->pools[w->npools++];
	memset(p, 0, sizeof(*p));
	p->ts = ts;
	return p;
}

/*
 * An idle upstream connection is a byte stream nobody is reading: whatever the upstream
 * sends on it now (bytes after a response that was already complete, or a late segment)
 * would be taken by the next request as its response. So a pooled connection keeps a
 * read armed and is closed as soon as anything arrives, and a connection taken from the
 * pool is checked once more (bytes may be in the socket with the read's completion not yet
 * run). A plain connection keeps its recv armed: the next request's response is read by
 * it, so reuse costs no operation; until the request's first bytes are sent
 * (side.before_request) whatever it receives is the upstream's framing error. A TLS
 * connection (reads go through OpenSSL) keeps a readiness poll armed instead.
 */
void upconn_protocol_error(struct upconn *u)
{
	metrics_upstream_request(u->s.w->metrics, u->metrics_slot, OUTCOME_PROTOCOL_ERROR);
}

enum idle_check { IDLE_CLEAN, IDLE_CLOSED, IDLE_BYTES };

static enum idle_check upconn_peek(struct upconn *u)
{
	char c;
	ssize_t n = recv(u->s.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n > 0)
		return IDLE_BYTES;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return IDLE_CLEAN;
	return IDLE_CLOSED; /* FIN or an error: the upstream let the connection go */
}

/* Closes a stale idle connection; bytes it holds are the upstream's framing error. */
static void upconn_discard(struct upconn *u, enum idle_check why)
{
	if (why == IDLE_BYTES)
		upconn_protocol_error(u);
	side_close(&u->s);
}

/*
 * The poll stays armed when the connection is taken (it then fires once the response
 * arrives, and the owner ignores it): one SQE per reuse instead of a remove and an add.
 */
static void idle_poll_arm(struct worker *w, struct upconn *u)
{
	struct io_uring_sqe *sqe;

	if (u->s.pending & PEND_IDLE_POLL)
		return;
	sqe = worker_sqe(w);
	u->idle_poll_stale = false;
	io_uring_prep_poll_add(sqe, u->s.fd, POLLIN | POLLRDHUP);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&u->s | OP_IDLE_POLL);
	u->s.inflight++;
	u->s.pending |= PEND_IDLE_POLL;
}

static bool pool_unlink(struct pool *p, struct upconn *u)
{
	for (struct upconn **pp = &p->idle; *pp; pp = &(*pp)->next_idle) {
		if (*pp == u) {
			*pp = u->next_idle;
			u->next_idle = NULL;
			p->nidle--;
			return true;
		}
	}
	return false;
}

/* The idle recv of a pooled connection completed (no owner): bytes or EOF end the
 * connection; a recv that found no buffer (ENOBUFS) or was interrupted is armed again. */
void pool_idle_recv(struct worker *w, struct upconn *u)
{
	struct pool *p = pool_find(w, u->ts, false);

	if (!p || !pool_unlink(p, u)) {
		side_close(&u->s); /* not pooled (draining): nothing waits for it */
		return;
	}
	if (buf_len(&u->s.in) || u->s.eof || u->s.failed) {
		upconn_discard(u, buf_len(&u->s.in) ? IDLE_BYTES : IDLE_CLOSED);
		return;
	}
	u->next_idle = p->idle;
	p->idle = u;
	p->nidle++;
	side_arm_recv(&u->s);
}

void pool_idle_event(struct worker *w, struct upconn *u)
{
	struct pool *p = pool_find(w, u->ts, false);
	enum idle_check why;

	if (!p || !pool_unlink(p, u))
		return; /* taken meanwhile: its owner reads whatever came */
	if (u->idle_poll_stale) {
		/* Armed before the connection was last taken: its response woke it. A fresh
		 * poll fires at once if anything unread is there. */
		u->next_idle = p->idle;
		p->idle = u;
		p->nidle++;
		idle_poll_arm(w, u);
		return;
	}
	why = upconn_peek(u);
	upconn_discard(u, why == IDLE_CLEAN ? IDLE_CLOSED : why);
}

struct upconn *pool_take(struct worker *w, struct target_state *ts)
{
	struct pool *p = pool_find(w, ts, false);
	uint32_t idle_timeout_ms = w->cfg->limits.idle_timeout_ms;
	struct upconn *u;
	enum idle_check why;

	while (p && p->idle) {
		u = p->idle;
		p->idle = u->next_idle;
		p->nidle--;
		u->next_idle = NULL;
		why = w->now_ms - u->idle_since_ms > idle_timeout_ms ? IDLE_CLOSED
								      : upconn_peek(u);
		if (why == IDLE_CLEAN) {
			u->idle_poll_stale = true;
			u->reused = true;
			u->s.before_request = !u->s.tls;
			return u;
		}
		upconn_discard(u, why);
	}
	return NULL;
}

void pool_put(struct worker *w, struct upconn *u, uint32_t keepalive)
{
	struct pool *p = w->draining ? NULL : pool_find(w, u->ts, true);

	u->owner = NULL;
	/* Unread bytes are more than the response framed (the exchange counted them). */
	if (!p || p->nidle >= keepalive || u->s.failed || u->s.eof || buf_len(&u->s.in) ||
	    buf_len(&u->s.out) || (u->s.pending & ~(PEND_IDLE_POLL | PEND_RECV)) ||
	    (u->s.tls && (u->s.pending & PEND_RECV))) {
		side_close(&u->s);
		return;
	}
	buf_release_if_empty(&u->s.in);
	buf_release_if_empty(&u->s.out);
	u->idle_since_ms = w->now_ms;
	u->next_idle = p->idle;
	p->idle = u;
	p->nidle++;
	if (u->s.tls) {
		idle_poll_arm(w, u);
		return;
	}
	u->s.recv_timeout_ms = 0; /* idle: pool_take enforces the idle timeout */
	side_retime_recv(&u->s);
	side_arm_recv(&u->s);
}

static void pools_close_all(struct worker *w)
{
	for (int i = 0; i < w->npools; i++) {
		while (w->pools[i].idle) {
			struct upconn *u = w->pools[i].idle;

			w->pools[i].idle = u->next_idle;
			side_close(&u->s);
		}
		w->pools[i].nidle = 0;
	}
}

static void on_accept(struct worker *w, struct listen_sock *ls, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		ls->accept_armed = false;
		if (ls->closing) {
			close(ls->fd);
			ls->fd = -1;
		} else if (cqe->res != -ECANCELED || !w->draining) {
			arm_accept(w, ls);
		}
	}
	if (cqe->res < 0) {
		if (cqe->res != -ECANCELED && cqe->res != -EAGAIN)
			log_warn("worker", "accept on %s: %s", ls->address, strerror(-cqe->res));
		return;
	}
	if (ls->closing || ls->stale || w->draining || w->nconns >= w->max_conns) {
		close(cqe->res);
		return;
	}
	conn_accepted(w, cqe->res, ls->listener);
}

static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_prep_read(sqe, w->wake_fd, &w->wake_val, sizeof(w->wake_val), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)w | OP_WAKE);
}

/* Called from other threads: makes the worker look at the config and stop flag now. */
void worker_wake(struct worker *w)
{
	uint64_t one = 1;

	if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof(one)) < 0)
		return; /* the counter is saturated: a wake-up is pending anyway */
}

static void dispatch(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum op op = ud & OP_MASK;
	void *ptr = (void *)(uintptr_t)(ud & ~OP_MASK);

	if (op == RING_TAG_CALLBACK) {
		ring_op_dispatch(cqe);
		return;
	}
	if (op == OP_ACCEPT) {
		on_accept(w, ptr, cqe);
		return;
	}
	if (op == OP_WAKE) {
		if (!w->draining || w->nconns)
			arm_wake(w);
		return;
	}
	if (!ptr)
		return; /* cancel requests and other fire-and-forget SQEs */
	side_complete(ptr, op, cqe);
}

static void start_drain(struct worker *w)
{
	struct conn *c, *next;

	w->draining = true;
	w->drain_deadline_ms = w->now_ms + w->cfg->limits.drain_timeout_ms;
	for (int i = 0; i < w->nls; i++)
		listen_sock_retire(w, w->ls[i]);
	pools_close_all(w);
	/* Idle keep-alive clients are closed now; busy ones finish their exchange. */
	for (c = w->conns_head.next; c != &w->conns_head; c = next) {
		next = c->next;
		if (c->state == CS_HEAD && !buf_len(&c->cli.in))
			side_close(&c->cli);
		else if (c->h2)
			h2conn_drain(c); /* GOAWAY: its streams finish */
		else
			c->close_after = true;
	}
}

static void force_close_all(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->conns_head.next; c != &w->conns_head; c = next) {
		next = c->next;
		if (c->up)
			side_close(&c->up->s);
		side_close(&c->cli);
	}
}

static void process_completions(struct worker *w, struct __kernel_timespec *wait)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	worker_flush_sends(w); /* what the loop itself queued (GOAWAY on drain) */
	io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, wait, NULL);
	w->now_ms = clock_mono_ms();
	io_uring_for_each_cqe(&w->ring, head, cqe) {
		dispatch(w, cqe);
		n++;
	}
	io_uring_cq_advance(&w->ring, n);
	timer_run(&w->timers, w->now_ms);
	/* Streams woken by this batch run now, outside any completion handler. */
	do {
		stream_runq_drain(w->streams, w->now_ms);
		worker_flush_sends(w);
	} while (!stream_runq_empty(w->streams));
	worker_bury(w);
	atomic_store_explicit(&w->active_conns, w->nconns, memory_order_relaxed);
}

static bool listeners_closed(const struct worker *w)
{
	for (int i = 0; i < w->nls; i++)
		if (w->ls[i]->fd >= 0)
			return false;
	return true;
}

static void run_loop(struct worker *w)
{
	struct __kernel_timespec tick = { .tv_nsec = LOOP_TICK_MS * 1000000L }, wait;
	bool forced = false;
	uint64_t give_up_ms, wait_ms;

	for (;;) {
		w->now_ms = clock_mono_ms();
		if (!w->draining)
			sync_config(w);
		if (!w->draining && atomic_load(&w->gw->stopping))
			start_drain(w);
		if (w->draining && !forced && w->now_ms >= w->drain_deadline_ms) {
			force_close_all(w);
			forced = true;
		}
		if (w->draining && !w->nconns && listeners_closed(w))
			break;
		wait_ms = timer_next_in(&w->timers, w->now_ms);
		if (wait_ms > LOOP_TICK_MS)
			wait_ms = LOOP_TICK_MS;
		/* A due timer still waits 1 ms at most: the ring may have nothing to say. */
		wait.tv_sec = 0;
		wait.tv_nsec = (long)(wait_ms ? wait_ms : 1) * 1000000L;
		process_completions(w, &wait);
	}
	cluster_rl_close(w->cluster);
	/* Wait (bounded) for the completions of closing sockets so nothing is leaked. */
	give_up_ms = clock_mono_ms() + 2000;
	while ((w->live_sides || cluster_rl_busy(w->cluster)) && clock_mono_ms() < give_up_ms)
		process_completions(w, &tick);
}

static int worker_init(struct worker *w)
{
	int ret = ring_init(w, &w->gw->features);
	size_t jwt_size;

	if (ret) {
		snprintf(w->init_err, sizeof(w->init_err),
			 "io_uring is unavailable (%s): xgate needs io_uring (check "
			 "/proc/sys/kernel/io_uring_disabled and seccomp)",
			 strerror(-ret));
		return -1;
	}
	ret = buf_ring_init(w);
	if (ret) {
		snprintf(w->init_err, sizeof(w->init_err),
			 "cannot register the provided-buffer ring: %s", strerror(-ret));
		return -1;
	}
	w->cache = resp_cache_new(RESP_CACHE_BYTES / w->gw->nworkers, CACHE_MAX_ENTRY_BYTES);
	w->metrics = metrics_shard(w->id);
	w->streams = stream_pool_new();
	if (!w->streams) {
		snprintf(w->init_err, sizeof(w->init_err), "out of memory");
		return -1;
	}
	w->env.cache = w->cache;
	w->env.timers = &w->timers;
	w->env.ring = &w->ring;
	w->env.metrics = w->metrics;
	w->client = client_new(&w->ring, &w->timers, w->metrics);
	if (!w->client) {
		snprintf(w->init_err, sizeof(w->init_err), "out of memory");
		return -1;
	}
	w->env.client = w->client;
	w->intro = intro_cache_new(INTRO_CACHE_SIZE);
	if (!w->intro) {
		snprintf(w->init_err, sizeof(w->init_err), "out of memory");
		return -1;
	}
	w->env.intro = w->intro;
	w->cluster = cluster_rl_new(&w->ring, &w->timers, w->id);
	if (!w->cluster) {
		snprintf(w->init_err, sizeof(w->init_err), "out of memory");
		return -1;
	}
	w->env.cluster = w->cluster;
	arm_wake(w);
	adopt_config(w, gateway_config(w->gw));
	if (!w->cfg) {
		snprintf(w->init_err, sizeof(w->init_err), "out of memory");
		return -1;
	}
	/* The verified-token cache is sized by the config the worker starts with. */
	jwt_size = auth_cache_size(w->cfg->auth);
	w->jwt_cache = jwt_size ? jwt_cache_new(jwt_size) : NULL;
	w->env.jwt_cache = w->jwt_cache;
	if (sync_listeners(w, w->init_err, sizeof(w->init_err)))
		return -1;
	return 0;
}

/* The ring is created by the thread that uses it: SINGLE_ISSUER/DEFER_TASKRUN require it. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "xgate-w%d", w->id);
	pthread_setname_np(pthread_self(), name);
	ret = worker_init(w);
	pthread_mutex_lock(&w->init_lock);
	w->init_state = ret ? -1 : 1;
	pthread_cond_signal(&w->init_cond);
	pthread_mutex_unlock(&w->init_lock);
	if (!ret)
		run_loop(w);
	buf_storage_drain();
	return NULL;
}

int worker_start(struct worker *w, struct gateway *gw, int id, char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->gw = gw;
	w->conns_head.next = w->conns_head.prev = &w->conns_head;
	w->now_ms = clock_mono_ms();
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	pthread_mutex_init(&w->init_lock, NULL);
	pthread_cond_init(&w->init_cond, NULL);
	if (pthread_create(&w->thread, NULL, worker_main, w)) {
		snprintf(err, errlen, "cannot start worker thread");
		return -1;
	}
	w->started = true;
	pthread_mutex_lock(&w->init_lock);
	while (!w->init_state)
		pthread_cond_wait(&w->init_cond, &w->init_lock);
	pthread_mutex_unlock(&w->init_lock);
	if (w->init_state < 0) {
		snprintf(err, errlen, "%s", w->init_err);
		return -1;
	}
	return 0;
}

void worker_join(struct worker *w)
{
	if (!w->started)
		return;
	pthread_join(w->thread, NULL);
	w->started = false;
	for (int i = 0; i < w->nls; i++) {
		if (w->ls[i]->fd >= 0)
			close(w->ls[i]->fd);
		free(w->ls[i]->address);
		free(w->ls[i]);
	}
	free(w->ls);
	if (w->ring.ring_fd > 0)
		io_uring_queue_exit(&w->ring);
	client_free(w->client); /* after the ring: no completion can reach its connections */
	cluster_rl_free(w->cluster);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	if (w->br && w->br != MAP_FAILED)
		munmap(w->br, PROVIDED_BUFS * sizeof(struct io_uring_buf));
	free(w->bufs);
	free(w->pools);
	free(w->rr);
	stream_pool_free(w->streams);
	exchange_freelist_free(w);
	timer_heap_free(&w->timers);
	jwt_cache_free(w->jwt_cache);
	intro_cache_free(w->intro); /* after the streams: their waiters have left */
	resp_cache_free(w->cache);
	config_put(w->cfg);
	buf_storage_drain(); /* what the frees above gave this thread's cache */
}
