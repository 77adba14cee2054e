/* Per-worker cluster rate limiting: GCRA in Redis, token leases and calls batched per key
 * (cluster.h, lease.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/lease.h"
#include "cluster/redis.h"
#include "common/clock.h"

#define BATCH_BUCKETS 256

/*
 * GCRA (the generic cell rate algorithm) over one key holding the theoretical arrival
 * time (TAT, µs on Redis' clock, so nodes' clocks do not matter). It grants as many of
 * the n tokens asked for as the burst tolerance allows, and answers {granted, µs until
 * the next token}. The key expires once the bucket would be full again.
 */
const char cluster_gcra_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2])\n"
    "local n = tonumber(ARGV[3])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local k = math.floor((tau - (tat - now)) / T + 1e-9)\n"
    "if k > n then k = n end\n"
    "if k < 0 then k = 0 end\n"
    "if k > 0 then\n"
    "  tat = tat + k * T\n"
    "  redis.call('SET', KEYS[1], string.format('%.3f', tat))\n"
    "  redis.call('PEXPIRE', KEYS[1], math.ceil((tat - now) / 1000) + 1)\n"
    "end\n"
    "local retry = 0\n"
    "if k < n then retry = math.ceil(tat + T - tau - now) end\n"
    "return {k, retry}\n";

struct cluster_wlist {
	struct cluster_waiter *head, *tail;
	int n;
};

/*
 * One key on this worker: its lease, the call in flight (for waiting requests, a refill
 * or both), and the requests waiting for the next one. Kept while it holds tokens or saw
 * admissions within a lease TTL; rl_sweep() frees the idle ones.
 */
struct batch {
	struct batch *hnext;
	struct cluster_rl *rl;
	struct redis_cmd cmd;
	uint64_t hash;
	double t_us, tau_us;
	struct cluster_lease lease;
	uint32_t lease_max;
	struct cluster_wlist sent, next;
	int asked;     /* tokens the call in flight asks for: sent's, then the lease's */
	bool inflight; /* a call is out (sent may be empty: a refill) */
	bool eval;     /* re-sent with the script's text after NOSCRIPT */
	size_t keylen;
	char key[];
};

struct cluster_rl {
	struct io_uring *ring;
	struct timer_heap *timers;
	int worker_id;
	struct redis_conn *conn;
	struct cluster_config cc; /* host, port, db, timeout_ms, password of conn */
	struct redis_link *links;
	struct batch *buckets[BATCH_BUCKETS];
	unsigned sweep; /* the next bucket rl_sweep() looks at */
};

static uint64_t key_hash(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 31);
}

static void wlist_push(struct cluster_wlist *l, struct cluster_waiter *w)
{
	w->list = l;
	w->next = NULL;
	w->prev = l->tail;
	if (l->tail)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
	l->n++;
}

static void wlist_remove(struct cluster_waiter *w)
{
	struct cluster_wlist *l = w->list;

	if (w->prev)
		w->prev->next = w->next;
	else
		l->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		l->tail = w->prev;
	l->n--;
	w->list = NULL;
	w->prev = w->next = NULL;
}

void cluster_waiter_cancel(struct cluster_waiter *w)
{
	if (w->list)
		wlist_remove(w);
}

/* Gives the first `count` waiters of l the verdict (all when count < 0) and wakes them;
 * returns how many there were. */
static long long wlist_settle(struct cluster_wlist *l, long long count, enum cluster_verdict v,
			      uint32_t retry_after_s)
{
	long long done = 0;

	while (l->head && count--) {
		struct cluster_waiter *w = l->head;

		wlist_remove(w);
		w->verdict = v;
		w->retry_after_s = retry_after_s;
		w->wake(w);
		done++;
	}
	return done;
}

static void wlist_move(struct cluster_wlist *to, struct cluster_wlist *from)
{
	*to = *from;
	for (struct cluster_waiter *w = to->head; w; w = w->next)
		w->list = to;
	memset(from, 0, sizeof(*from));
}

static bool batch_send(struct batch *b)
{
	struct redis_conn *rc = b->rl->conn;
	char t[32], tau[32], n[16];
	const char *argv[7];
	size_t lens[7];

	snprintf(t, sizeof(t), "%.6f", b->t_us);
	snprintf(tau, sizeof(tau), "%.6f", b->tau_us);
	snprintf(n, sizeof(n), "%d", b->asked);
	argv[0] = b->eval ? "EVAL" : "EVALSHA";
	argv[1] = b->eval ? cluster_gcra_script : (rc ? rc->sha : "");
	argv[2] = "1";
	argv[3] = b->key;
	argv[4] = t;
	argv[5] = tau;
	argv[6] = n;
	for (int i = 0; i < 7; i++)
		lens[i] = strlen(argv[i]);
	lens[3] = b->keylen;
	return redis_conn_command(rc, &b->cmd, 7, argv, lens);
}

static void batch_unlink(struct batch *b)
{
	struct batch **pp = &b->rl->buckets[b->hash % BATCH_BUCKETS];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	free(b);
}

/* Asks for the sent waiters' tokens plus what the lease wants now; false: not sent. */
static bool batch_call(struct batch *b, uint64_t now)
{
	b->asked = b->sent.n + (int)cluster_lease_refill(&b->lease, now, b->lease_max);
	if (!b->asked || !batch_send(b))
		return false;
	b->inflight = true;
	return true;
}

static bool batch_idle(const struct batch *b, uint64_t now)
{
	return !b->inflight && !b->sent.n && !b->next.n && cluster_lease_idle(&b->lease, now);
}

/* Frees the idle keys of one bucket per call: keys stay bounded by those in use. */
static void rl_sweep(struct cluster_rl *rl, uint64_t now)
{
	struct batch **pp = &rl->buckets[rl->sweep++ % BATCH_BUCKETS];

	while (*pp) {
		struct batch *b = *pp;

		if (batch_idle(b, now)) {
			*pp = b->hnext;
			free(b);
		} else {
			pp = &b->hnext;
		}
	}
}

static bool reply_gcra(const redisReply *r, long long *granted, long long *retry_us)
{
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER)
		return false;
	*granted = r->element[0]->integer;
	*retry_us = r->element[1]->integer;
	return true;
}

/* A reply: the sent waiters first, then those that arrived meanwhile, then the lease. */
static void batch_granted(struct batch *b, long long granted, long long retry_us, uint64_t now)
{
	uint32_t retry_s = (uint32_t)((retry_us + 999999) / 1000000);
	long long n = wlist_settle(&b->sent, granted, CLUSTER_ALLOW, 0);

	wlist_settle(&b->sent, -1, CLUSTER_DENY, retry_s ? retry_s : 1);
	if (granted > n)
		n += wlist_settle(&b->next, granted - n, CLUSTER_ALLOW, 0);
	cluster_lease_admitted(&b->lease, now, (uint32_t)n);
	if (granted > n)
		cluster_lease_fill(&b->lease, (uint32_t)(granted - n), now);
}

static void batch_done(struct redis_cmd *cmd, redisReply *r)
{
	struct batch *b = (struct batch *)((char *)cmd - offsetof(struct batch, cmd));
	uint64_t now = clock_mono_ns();
	long long granted, retry_us;

	if (r && r->type == REDIS_REPLY_ERROR && !b->eval && !strncmp(r->str, "NOSCRIPT", 8)) {
		/* The script cache was flushed (or Redis restarted under the connection):
		 * EVAL loads it again with this call. */
		b->eval = true;
		if (batch_send(b))
			return;
	}
	b->eval = false;
	b->inflight = false;
	if (reply_gcra(r, &granted, &retry_us))
		batch_granted(b, granted, retry_us, now);
	else
		wlist_settle(&b->sent, -1, CLUSTER_FALLBACK, 0);
	if (b->next.n) {
		wlist_move(&b->sent, &b->next);
		if (!batch_call(b, now))
			wlist_settle(&b->sent, -1, CLUSTER_FALLBACK, 0);
	}
}

static struct batch *batch_find(struct cluster_rl *rl, uint64_t h, const char *key, size_t len)
{
	for (struct batch *b = rl->buckets[h % BATCH_BUCKETS]; b; b = b->hnext)
		if (b->hash == h && b->keylen == len && !memcmp(b->key, key, len))
			return b;
	return NULL;
}

static struct batch *batch_new(struct cluster_rl *rl, uint64_t h, const char *key, size_t keylen)
{
	struct batch *b = calloc(1, sizeof(*b) + keylen + 1);

	if (!b)
		return NULL;
	b->rl = rl;
	b->cmd.done = batch_done;
	b->hash = h;
	b->keylen = keylen;
	memcpy(b->key, key, keylen);
	b->hnext = rl->buckets[h % BATCH_BUCKETS];
	rl->buckets[h % BATCH_BUCKETS] = b;
	return b;
}

/* After a token left the lease: refill ahead of need, nobody waits for it. */
static void batch_refill(struct batch *b, uint64_t now)
{
	if (!b->inflight && cluster_lease_refill(&b->lease, now, b->lease_max))
		batch_call(b, now);
}

enum cluster_verdict cluster_rl_take(struct cluster_rl *rl, struct cluster_waiter *w,
				     const char *key, size_t keylen, uint64_t per_s, uint64_t burst,
				     uint32_t lease_max)
{
	uint64_t h = key_hash(key, keylen), now;
	struct batch *b;

	if (!rl || !redis_conn_up(rl->conn) || !per_s)
		return CLUSTER_FALLBACK;
	now = clock_mono_ns();
	rl_sweep(rl, now);
	b = batch_find(rl, h, key, keylen);
	if (!b && !(b = batch_new(rl, h, key, keylen)))
		return CLUSTER_FALLBACK;
	/* A reload may change the limit: the next call uses the new one. */
	b->t_us = 1e6 / (double)per_s;
	b->tau_us = b->t_us * (double)burst;
	b->lease_max = lease_max;
	if (cluster_lease_take(&b->lease, now)) {
		cluster_metrics_lease(rl->worker_id, true);
		batch_refill(b, now);
		return CLUSTER_ALLOW;
	}
	w->verdict = CLUSTER_PENDING;
	if (b->inflight) { /* a call for this key is out: join the next one */
		wlist_push(&b->next, w);
		cluster_metrics_lease(rl->worker_id, false);
		return CLUSTER_PENDING;
	}
	wlist_push(&b->sent, w);
	if (!batch_call(b, now)) {
		wlist_remove(w);
		return CLUSTER_FALLBACK;
	}
	cluster_metrics_lease(rl->worker_id, false);
	return CLUSTER_PENDING;
}

static void rl_state(struct redis_conn *rc, void *arg)
{
	struct cluster_rl *rl = arg;

	cluster_metrics_set_up(rl->worker_id, redis_conn_up(rc));
}

struct cluster_rl *cluster_rl_new(struct io_uring *ring, struct timer_heap *timers, int worker_id)
{
	struct cluster_rl *rl = calloc(1, sizeof(*rl));

	if (!rl)
		return NULL;
	rl->ring = ring;
	rl->timers = timers;
	rl->worker_id = worker_id;
	return rl;
}

static void rl_free_keys(struct cluster_rl *rl)
{
	for (int i = 0; i < BATCH_BUCKETS; i++)
		while (rl->buckets[i])
			batch_unlink(rl->buckets[i]);
}

static void rl_disconnect(struct cluster_rl *rl)
{
	struct redis_conn *rc = rl->conn;

	if (!rc)
		return;
	/* The NULL replies of the pending calls try no new ones: conn is gone. */
	rl->conn = NULL;
	redis_conn_free(rc);
	rl_free_keys(rl); /* their calls completed above; leases of that Redis are void */
	free(rl->cc.password);
	memset(&rl->cc, 0, sizeof(rl->cc));
	cluster_metrics_clear(rl->worker_id);
}

void cluster_rl_sync(struct cluster_rl *rl, const struct cluster_config *cc)
{
	if (!rl || (rl->conn && cluster_config_same_redis(&rl->cc, cc)))
		return;
	rl_disconnect(rl);
	if (!cc)
		return;
	rl->cc = *cc;
	rl->cc.address_text = rl->cc.key_prefix = NULL;
	rl->cc.password = cc->password ? strdup(cc->password) : NULL;
	if (cc->password && !rl->cc.password)
		return;
	cluster_metrics_set_up(rl->worker_id, false);
	rl->conn = redis_conn_new(rl->ring, rl->timers, cc, cluster_gcra_script, &rl->links);
	if (!rl->conn) {
		free(rl->cc.password);
		memset(&rl->cc, 0, sizeof(rl->cc));
		return;
	}
	rl->conn->on_state = rl_state;
	rl->conn->arg = rl;
}

void cluster_rl_close(struct cluster_rl *rl)
{
	if (rl)
		rl_disconnect(rl);
}

bool cluster_rl_busy(const struct cluster_rl *rl)
{
	return rl && rl->links;
}

void cluster_rl_free(struct cluster_rl *rl)
{
	if (!rl)
		return;
	if (rl->conn) { /* the worker never ran its shutdown: the ring is gone */
		rl->conn->ring_dead = true;
		rl_disconnect(rl);
	}
	rl_free_keys(rl);
	redis_links_free(&rl->links);
	free(rl);
}

bool cluster_rl_up(const struct cluster_rl *rl)
{
	return rl && redis_conn_up(rl->conn);
}
