#include "metrics/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "metrics/metrics_internal.h"

/*
 * Slot space: SLOTS_PER_CHUNK labels per chunk, chunks allocated on demand and never
 * moved or freed, so a worker holding a slot number can always index its shard.
 */
#define SLOTS_PER_CHUNK 16
#define MAX_CHUNKS 1024
#define MAX_SLOTS (SLOTS_PER_CHUNK * MAX_CHUNKS)
#define CACHELINE 64

const double metrics_duration_bounds[METRICS_DURATION_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

static const uint64_t duration_bounds_ns[METRICS_DURATION_BUCKETS] = {
    500000ULL,	   1000000ULL,	  2500000ULL,	 5000000ULL,	 10000000ULL,
    25000000ULL,   50000000ULL,	  100000000ULL,	 250000000ULL,	 500000000ULL,
    1000000000ULL, 2500000000ULL, 5000000000ULL, 10000000000ULL,
};

static const size_t kind_record_size[KIND_COUNT] = {
    [KIND_ROUTE] = sizeof(struct route_ctr),
    [KIND_LISTENER] = sizeof(struct listener_ctr),
    [KIND_TARGET] = sizeof(struct target_ctr),
    [KIND_SPLIT] = sizeof(struct split_ctr),
    [KIND_CONSUMER] = sizeof(struct consumer_ctr),
    [KIND_COMPOSE] = sizeof(struct compose_ctr),
};

struct metrics_shard {
	_Atomic(void *) chunks[KIND_COUNT][MAX_CHUNKS];
	counter_t auth[AUTH_REASON_COUNT] __attribute__((aligned(CACHELINE)));
	counter_t introspection[INTROSPECTION_OUTCOME_COUNT];
	counter_t proto[2]; /* requests answered over HTTP/1.x, HTTP/2 */
} __attribute__((aligned(CACHELINE)));

struct slot_table {
	struct slot_label *_Atomic chunks[MAX_CHUNKS];
	atomic_int count;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot_table tables[KIND_COUNT];
static struct metrics_shard *_Atomic shards[METRICS_MAX_WORKERS];
static atomic_int nshards_hint; /* highest worker index + 1 ever created */

_Atomic uint64_t metrics_config_generation;
_Atomic int64_t metrics_config_loaded_at;
atomic_int metrics_config_last_reload_ok = 1;

/* Single writer per shard: a relaxed load+store is enough and avoids a locked RMW. */
static inline void counter_add(counter_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static inline uint64_t counter_get(counter_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

const char *upstream_outcome_name(enum upstream_outcome o)
{
	static const char *const names[OUTCOME_COUNT] = {
	    [OUTCOME_SUCCESS] = "success",
	    [OUTCOME_CONNECT_ERROR] = "connect_error",
	    [OUTCOME_TIMEOUT] = "timeout",
	    [OUTCOME_RESET] = "reset",
	    [OUTCOME_PROTOCOL_ERROR] = "protocol_error",
	};

	return (unsigned)o < OUTCOME_COUNT ? names[o] : "unknown";
}

static void *chunk_alloc(enum slot_kind kind)
{
	size_t size = kind_record_size[kind] * SLOTS_PER_CHUNK;
	void *p;

	size = (size + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
	p = aligned_alloc(CACHELINE, size);
	if (p)
		memset(p, 0, size);
	return p;
}

/* Called with registry_lock held: gives every existing shard storage for chunk ci. */
static bool shards_grow(enum slot_kind kind, int ci)
{
	for (int w = 0; w < METRICS_MAX_WORKERS; w++) {
		struct metrics_shard *s = atomic_load(&shards[w]);
		void *chunk;

		if (!s || atomic_load(&s->chunks[kind][ci]))
			continue;
		chunk = chunk_alloc(kind);
		if (!chunk)
			return false;
		atomic_store_explicit(&s->chunks[kind][ci], chunk, memory_order_release);
	}
	return true;
}

static bool label_eq(const struct slot_label *l, const char *a, const char *b)
{
	return !strcmp(l->a, a) && (!b || !strcmp(l->b, b));
}

static int slot_find(struct slot_table *t, const char *a, const char *b)
{
	int n = atomic_load(&t->count);

	for (int i = 0; i < n; i++) {
		struct slot_label *l = &t->chunks[i / SLOTS_PER_CHUNK][i % SLOTS_PER_CHUNK];

		if (label_eq(l, a, b))
			return i;
	}
	return -1;
}

static int slot_add(struct slot_table *t, enum slot_kind kind, const char *a, const char *b)
{
	int i = atomic_load(&t->count), ci = i / SLOTS_PER_CHUNK;
	struct slot_label *l;

	if (i >= MAX_SLOTS) {
		log_error("metrics", "too many label sets (%d), \"%s\" is not counted", i, a);
		return -1;
	}
	if (!t->chunks[ci]) {
		struct slot_label *labels = calloc(SLOTS_PER_CHUNK, sizeof(*labels));

		if (!labels)
			return -1;
		atomic_store_explicit(&t->chunks[ci], labels, memory_order_release);
	}
	if (!shards_grow(kind, ci))
		return -1;
	l = &t->chunks[ci][i % SLOTS_PER_CHUNK];
	l->a = strdup(a);
	l->b = b ? strdup(b) : NULL;
	if (!l->a || (b && !l->b)) {
		free(l->a);
		free(l->b);
		l->a = l->b = NULL;
		return -1;
	}
	/* Publishes the label after its strings: the scraper reads count with acquire. */
	atomic_store_explicit(&t->count, i + 1, memory_order_release);
	return i;
}

static int intern(enum slot_kind kind, const char *a, const char *b)
{
	struct slot_table *t = &tables[kind];
	int slot;

	pthread_mutex_lock(&registry_lock);
	if (kind == KIND_ROUTE && atomic_load(&t->count) == 0 && slot_add(t, kind, "", NULL) != 0) {
		pthread_mutex_unlock(&registry_lock);
		return -1;
	}
	slot = slot_find(t, a, b);
	if (slot < 0)
		slot = slot_add(t, kind, a, b);
	pthread_mutex_unlock(&registry_lock);
	return slot;
}

/* Internal route index 0 is the "no route" series; public slots are shifted by one. */
int metrics_route_slot(const char *route_name)
{
	int slot;

	if (!route_name || !*route_name)
		return -1;
	slot = intern(KIND_ROUTE, route_name, NULL);
	return slot < 0 ? -1 : slot - 1;
}

int metrics_listener_slot(const char *listener_name)
{
	if (!listener_name || !*listener_name)
		return -1;
	return intern(KIND_LISTENER, listener_name, NULL);
}

int metrics_target_slot(const char *upstream, const char *target)
{
	if (!upstream || !*upstream || !target)
		return -1;
	return intern(KIND_TARGET, upstream, target);
}

int metrics_split_slot(const char *route, const char *upstream)
{
	if (!route || !*route || !upstream || !*upstream)
		return -1;
	return intern(KIND_SPLIT, route, upstream);
}

int metrics_compose_slot(const char *route, const char *call)
{
	if (!route || !*route || !call || !*call)
		return -1;
	return intern(KIND_COMPOSE, route, call);
}

const char *compose_outcome_name(enum compose_outcome o)
{
	static const char *const names[COMPOSE_OUTCOME_COUNT] = {
	    [COMPOSE_OUTCOME_OK] = "ok",	   [COMPOSE_OUTCOME_FAILED] = "failed",
	    [COMPOSE_OUTCOME_TIMEOUT] = "timeout", [COMPOSE_OUTCOME_ERROR] = "error",
	    [COMPOSE_OUTCOME_SKIPPED] = "skipped",
	};

	return (unsigned)o < COMPOSE_OUTCOME_COUNT ? names[o] : "unknown";
}

int metrics_consumer_slot(const char *consumer)
{
	if (!consumer || !*consumer)
		return -1;
	return intern(KIND_CONSUMER, consumer, NULL);
}

static struct metrics_shard *shard_new(void)
{
	struct metrics_shard *s = aligned_alloc(CACHELINE, sizeof(*s));

	if (!s)
		return NULL;
	memset(s, 0, sizeof(*s));
	for (int k = 0; k < KIND_COUNT; k++) {
		int nchunks =
		    (atomic_load(&tables[k].count) + SLOTS_PER_CHUNK - 1) / SLOTS_PER_CHUNK;

		for (int ci = 0; ci < nchunks; ci++) {
			void *chunk = chunk_alloc(k);

			if (!chunk)
				goto fail;
			atomic_store(&s->chunks[k][ci], chunk);
		}
	}
	return s;
fail:
	for (int k = 0; k < KIND_COUNT; k++)
		for (int ci = 0; ci < MAX_CHUNKS; ci++)
			free(atomic_load(&s->chunks[k][ci]));
	free(s);
	return NULL;
}

struct metrics_shard *metrics_shard(int worker)
{
	struct metrics_shard *s;

	if (worker < 0 || worker >= METRICS_MAX_WORKERS)
		return NULL;
	s = atomic_load_explicit(&shards[worker], memory_order_acquire);
	if (s)
		return s;
	pthread_mutex_lock(&registry_lock);
	s = atomic_load(&shards[worker]);
	if (!s) {
		s = shard_new();
		if (s) {
			atomic_store_explicit(&shards[worker], s, memory_order_release);
			if (atomic_load(&nshards_hint) < worker + 1)
				atomic_store(&nshards_hint, worker + 1);
		} else {
			log_error("metrics", "out of memory for the counters of worker %d", worker);
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return s;
}

static void *shard_record(struct metrics_shard *m, enum slot_kind kind, int slot)
{
	char *chunk;

	if (!m || slot < 0 || slot >= MAX_SLOTS)
		return NULL;
	chunk =
	    atomic_load_explicit(&m->chunks[kind][slot / SLOTS_PER_CHUNK], memory_order_acquire);
	if (!chunk)
		return NULL;
	return chunk + kind_record_size[kind] * (slot % SLOTS_PER_CHUNK);
}

static int duration_bucket(uint64_t duration_ns)
{
	int b = 0;

	while (b < METRICS_DURATION_BUCKETS && duration_ns > duration_bounds_ns[b])
		b++;
	return b;
}

void metrics_http_request(struct metrics_shard *m, int route_slot, int status, uint64_t duration_ns)
{
	struct route_ctr *r = shard_record(m, KIND_ROUTE, route_slot < 0 ? 0 : route_slot + 1);
	int code = status >= CODE_MIN && status <= CODE_MAX ? status - CODE_MIN : CODE_OTHER;

	if (!r)
		return;
	counter_add(&r->codes[code], 1);
	counter_add(&r->buckets[duration_bucket(duration_ns)], 1);
	counter_add(&r->sum_ns, duration_ns);
}

void metrics_upstream_request(struct metrics_shard *m, int target_slot,
			      enum upstream_outcome outcome)
{
	struct target_ctr *t = shard_record(m, KIND_TARGET, target_slot);

	if (t && (unsigned)outcome < OUTCOME_COUNT)
		counter_add(&t->outcomes[outcome], 1);
}

void metrics_compose_call(struct metrics_shard *m, int compose_slot, enum compose_outcome o)
{
	struct compose_ctr *cc = shard_record(m, KIND_COMPOSE, compose_slot);

	if (cc && (unsigned)o < COMPOSE_OUTCOME_COUNT)
		counter_add(&cc->outcomes[o], 1);
}

void metrics_split_request(struct metrics_shard *m, int split_slot)
{
	struct split_ctr *sc = shard_record(m, KIND_SPLIT, split_slot);

	if (sc)
		counter_add(&sc->requests, 1);
}

void metrics_consumer_request(struct metrics_shard *m, int consumer_slot, int status)
{
	struct consumer_ctr *cc = shard_record(m, KIND_CONSUMER, consumer_slot);

	if (!cc)
		return;
	counter_add(&cc->requests, 1);
	if (status >= 400)
		counter_add(&cc->errors, 1);
}

void metrics_connection(struct metrics_shard *m, int listener_slot, int delta)
{
	struct listener_ctr *l = shard_record(m, KIND_LISTENER, listener_slot);

	if (l)
		atomic_store_explicit(
		    &l->active, atomic_load_explicit(&l->active, memory_order_relaxed) + delta,
		    memory_order_relaxed);
}

void metrics_auth_failure(struct metrics_shard *m, enum auth_reason reason)
{
	if (m && (unsigned)reason < AUTH_REASON_COUNT)
		counter_add(&m->auth[reason], 1);
}

const char *metrics_introspection_outcome_name(enum introspection_outcome o)
{
	static const char *const names[INTROSPECTION_OUTCOME_COUNT] = {
	    "active", "inactive", "error", "timeout", "cached"};

	return (unsigned)o < INTROSPECTION_OUTCOME_COUNT ? names[o] : "unknown";
}

void metrics_introspection(struct metrics_shard *m, enum introspection_outcome o)
{
	if (m && (unsigned)o < INTROSPECTION_OUTCOME_COUNT)
		counter_add(&m->introspection[o], 1);
}

void metrics_http_proto(struct metrics_shard *m, bool h2)
{
	if (m)
		counter_add(&m->proto[h2], 1);
}

uint64_t metrics_sum_proto(bool h2)
{
	int n = atomic_load(&nshards_hint);
	uint64_t total = 0;

	for (int w = 0; w < n; w++) {
		struct metrics_shard *s = atomic_load_explicit(&shards[w], memory_order_acquire);

		if (s)
			total += counter_get(&s->proto[h2]);
	}
	return total;
}

uint64_t metrics_sum_introspection(enum introspection_outcome o)
{
	int n = atomic_load(&nshards_hint);
	uint64_t total = 0;

	for (int w = 0; w < n && (unsigned)o < INTROSPECTION_OUTCOME_COUNT; w++) {
		struct metrics_shard *s = atomic_load_explicit(&shards[w], memory_order_acquire);

		if (s)
			total += counter_get(&s->introspection[o]);
	}
	return total;
}

void metrics_rate_limited(struct metrics_shard *m, int route_slot)
{
	struct route_ctr *r = shard_record(m, KIND_ROUTE, route_slot < 0 ? 0 : route_slot + 1);

	if (r)
		counter_add(&r->rate_limited, 1);
}

void metrics_waf(struct metrics_shard *m, int route_slot, bool detect)
{
	struct route_ctr *r = shard_record(m, KIND_ROUTE, route_slot < 0 ? 0 : route_slot + 1);

	if (r)
		counter_add(&r->waf[detect ? 1 : 0], 1);
}

void metrics_ratelimit_fallback(struct metrics_shard *m, int route_slot)
{
	struct route_ctr *r = shard_record(m, KIND_ROUTE, route_slot < 0 ? 0 : route_slot + 1);

	if (r)
		counter_add(&r->rl_fallback, 1);
}

void metrics_set_config_generation(uint64_t generation, int64_t loaded_at, int last_reload_ok)
{
	atomic_store(&metrics_config_generation, generation);
	atomic_store(&metrics_config_loaded_at, loaded_at);
	atomic_store(&metrics_config_last_reload_ok, last_reload_ok ? 1 : 0);
}

/* ---- aggregation (scrape side) ---- */

int metrics_table_count(enum slot_kind kind)
{
	return atomic_load_explicit(&tables[kind].count, memory_order_acquire);
}

const struct slot_label *metrics_table_label(enum slot_kind kind, int i)
{
	struct slot_label *chunk =
	    atomic_load_explicit(&tables[kind].chunks[i / SLOTS_PER_CHUNK], memory_order_acquire);

	return &chunk[i % SLOTS_PER_CHUNK];
}

/* Sums the counter at byte offset `off` of record `slot` over every shard. */
uint64_t metrics_sum_counter(enum slot_kind kind, int slot, size_t off)
{
	int n = atomic_load(&nshards_hint);
	uint64_t total = 0;

	for (int w = 0; w < n; w++) {
		char *rec = shard_record(atomic_load_explicit(&shards[w], memory_order_acquire),
					 kind, slot);

		if (rec)
			total += counter_get((counter_t *)(rec + off));
	}
	return total;
}

int64_t metrics_sum_gauge(enum slot_kind kind, int slot, size_t off)
{
	int n = atomic_load(&nshards_hint);
	int64_t total = 0;

	for (int w = 0; w < n; w++) {
		char *rec = shard_record(atomic_load_explicit(&shards[w], memory_order_acquire),
					 kind, slot);

		if (rec)
			total += atomic_load_explicit((_Atomic int64_t *)(rec + off),
						      memory_order_relaxed);
	}
	return total;
}

uint64_t metrics_sum_auth(enum auth_reason reason)
{
	int n = atomic_load(&nshards_hint);
	uint64_t total = 0;

	for (int w = 0; w < n; w++) {
		struct metrics_shard *s = atomic_load_explicit(&shards[w], memory_order_acquire);

		if (s)
			total += counter_get(&s->auth[reason]);
	}
	return total;
}

int metrics_route_totals(struct metrics_route_totals *out, int max)
{
	int n = metrics_table_count(KIND_ROUTE);

	for (int r = 0; r < n && r < max; r++) {
		struct metrics_route_totals *t = &out[r];

		memset(t, 0, sizeof(*t));
		t->name = metrics_table_label(KIND_ROUTE, r)->a;
		for (int c = 0; c < NCODES; c++) {
			uint64_t v = metrics_sum_counter(KIND_ROUTE, r, CODE_OFF(c));

			t->classes[c == CODE_OTHER ? 0 : (c + CODE_MIN) / 100] += v;
		}
		for (int b = 0; b < NBUCKETS; b++) {
			t->buckets[b] = metrics_sum_counter(KIND_ROUTE, r, BUCKET_OFF(b));
			t->requests += t->buckets[b];
		}
		t->sum_ns = metrics_sum_counter(KIND_ROUTE, r, ROUTE_OFF(sum_ns));
		t->rate_limited = metrics_sum_counter(KIND_ROUTE, r, ROUTE_OFF(rate_limited));
	}
	return n;
}

int metrics_consumer_totals(struct metrics_consumer_totals *out, int max)
{
	int n = metrics_table_count(KIND_CONSUMER);

	for (int i = 0; i < n && i < max; i++) {
		out[i].name = metrics_table_label(KIND_CONSUMER, i)->a;
		out[i].requests = metrics_sum_counter(KIND_CONSUMER, i,
						      offsetof(struct consumer_ctr, requests));
		out[i].errors =
		    metrics_sum_counter(KIND_CONSUMER, i, offsetof(struct consumer_ctr, errors));
	}
	return n;
}

double metrics_histogram_quantile(const uint64_t *buckets, double q)
{
	uint64_t total = 0, seen = 0;
	double rank;

	for (int b = 0; b < NBUCKETS; b++)
		total += buckets[b];
	if (!total)
		return -1;
	rank = q * (double)total;
	for (int b = 0; b < METRICS_DURATION_BUCKETS; b++) {
		double lo = b ? metrics_duration_bounds[b - 1] : 0, hi = metrics_duration_bounds[b];

		if (buckets[b] && (double)(seen + buckets[b]) >= rank)
			return lo + (hi - lo) * ((rank - (double)seen) / (double)buckets[b]);
		seen += buckets[b];
	}
	return metrics_duration_bounds[METRICS_DURATION_BUCKETS - 1];
}
