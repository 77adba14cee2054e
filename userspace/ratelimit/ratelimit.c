/* Route rate limits: see ratelimit.h. */
#include "ratelimit/ratelimit.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "maps/token_bucket.h"

#define RL_STRIPES 32
#define RL_STRIPE_MAX (RATELIMIT_MAX_KEYS / RL_STRIPES)
#define RL_STRIPE_BUCKETS 512 /* chain heads per stripe: 128 KiB of heads per policy */
#define RL_PER_S_MAX 1000000000LL

struct rl_entry {
	struct rl_entry *chain;	      /* same hash bucket */
	struct rl_entry *prev, *next; /* LRU list, most recent first */
	uint64_t hash;
	__u64 word; /* token_bucket.h state */
	uint16_t keylen;
	uint8_t key[];
};

struct rl_stripe {
	pthread_mutex_t lock;
	struct rl_entry *buckets[RL_STRIPE_BUCKETS];
	struct rl_entry *lru_head, *lru_tail;
	size_t count;
};

/* Shared between the policies of successive config generations. */
struct rl_table {
	struct rl_table *next; /* registry */
	char *route;
	enum ratelimit_by by;
	uint64_t per_s, burst;
	struct tb_params params;
	int refs; /* under registry_lock */
	uint64_t seed;
	struct rl_stripe stripes[RL_STRIPES];
};

struct ratelimit_policy {
	struct rl_table *table; /* scope "cluster": the local share used when Redis fails */
	enum ratelimit_by by;
	bool cluster;
	uint64_t per_s, burst; /* as configured */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rl_table *registry;

/* FNV-1a over a random seed: keys are client-chosen, the seed keeps chains unpredictable;
 * chains are bounded by RL_STRIPE_MAX anyway. */
static uint64_t key_hash(uint64_t seed, const uint8_t *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ seed;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= key[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static struct rl_table *table_new(const char *route, enum ratelimit_by by, uint64_t per_s,
				  uint64_t burst)
{
	struct rl_table *t = calloc(1, sizeof(*t));
	int i;

	if (!t || !(t->route = strdup(route))) {
		free(t);
		return NULL;
	}
	t->by = by;
	t->per_s = per_s;
	t->burst = burst;
	tb_params_init(&t->params, per_s, burst);
	if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed))
		t->seed = (uintptr_t)t ^ 0x9e3779b97f4a7c15ULL;
	for (i = 0; i < RL_STRIPES; i++)
		pthread_mutex_init(&t->stripes[i].lock, NULL);
	t->refs = 1;
	return t;
}

static void table_free(struct rl_table *t)
{
	int i;

	for (i = 0; i < RL_STRIPES; i++) {
		struct rl_entry *e = t->stripes[i].lru_head, *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
		pthread_mutex_destroy(&t->stripes[i].lock);
	}
	free(t->route);
	free(t);
}

/* The table of an identical policy of an earlier generation, or a new one. */
static struct rl_table *table_get(const char *route, enum ratelimit_by by, uint64_t per_s,
				  uint64_t burst)
{
	struct rl_table *t;

	pthread_mutex_lock(&registry_lock);
	for (t = registry; t; t = t->next) {
		if (!strcmp(t->route, route) && t->by == by && t->per_s == per_s &&
		    t->burst == burst) {
			t->refs++;
			break;
		}
	}
	if (!t && (t = table_new(route, by, per_s, burst))) {
		t->next = registry;
		registry = t;
	}
	pthread_mutex_unlock(&registry_lock);
	return t;
}

static void table_put(struct rl_table *t)
{
	struct rl_table **pp;

	pthread_mutex_lock(&registry_lock);
	if (--t->refs) {
		pthread_mutex_unlock(&registry_lock);
		return;
	}
	for (pp = &registry; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	table_free(t);
}

static const char *const rl_keys[] = {"per_s", "burst", "by", "scope", NULL};
static const char *const by_names[] = {"ip", "consumer", "route", NULL};
static const char *const scope_names[] = {"local", "cluster", NULL};

struct ratelimit_policy *ratelimit_policy_parse(json_t *obj, const char *path,
						const char *route_name, struct cfg_errs *errs)
{
	long long per_s = 0, burst = 0;
	struct ratelimit_policy *p;
	int before = errs->count, by = RL_BY_IP, scope = 0;
	char kp[CFG_PATH_MAX];

	if (!json_is_object(obj)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	cfg_check_keys(obj, path, rl_keys, errs);
	if (!json_object_get(obj, "per_s"))
		cfg_err(errs, cfg_path_key(kp, path, "per_s"), "is required");
	else
		cfg_get_int(obj, "per_s", path, 0, 1, RL_PER_S_MAX, &per_s, errs);
	if (errs->count == before)
		cfg_get_int(obj, "burst", path, per_s, 1, RL_PER_S_MAX, &burst, errs);
	cfg_get_enum(obj, "by", path, by_names, RL_BY_IP, &by, errs);
	cfg_get_enum(obj, "scope", path, scope_names, 0, &scope, errs);
	if (errs->count != before)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p)
		p->table = table_get(route_name ? route_name : "", by, per_s, burst);
	if (!p || !p->table) {
		free(p);
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	p->by = by;
	p->cluster = scope == 1;
	p->per_s = per_s;
	p->burst = burst;
	return p;
}

bool ratelimit_policy_cluster(const struct ratelimit_policy *p)
{
	return p->cluster;
}

bool ratelimit_policy_set_nodes(struct ratelimit_policy *p, const char *route_name, int nodes)
{
	uint64_t per_s = p->per_s / (nodes > 0 ? nodes : 1);
	uint64_t burst = p->burst / (nodes > 0 ? nodes : 1);
	char name[300];
	struct rl_table *t;

	/* Its own table: a route switching scope must not inherit the other's buckets. */
	snprintf(name, sizeof(name), "%s\x01cluster-share", route_name ? route_name : "");
	t = table_get(name, p->by, per_s ? per_s : 1, burst ? burst : 1);
	if (!t)
		return false;
	table_put(p->table);
	p->table = t;
	return true;
}

void ratelimit_policy_free(struct ratelimit_policy *p)
{
	if (!p)
		return;
	table_put(p->table);
	free(p);
}

enum ratelimit_by ratelimit_policy_by(const struct ratelimit_policy *p)
{
	return p->by;
}

uint64_t ratelimit_policy_per_s(const struct ratelimit_policy *p)
{
	return p->per_s;
}

uint64_t ratelimit_policy_burst(const struct ratelimit_policy *p)
{
	return p->burst;
}

uint64_t ratelimit_policy_local_per_s(const struct ratelimit_policy *p)
{
	return p->table->per_s;
}

uint64_t ratelimit_policy_local_burst(const struct ratelimit_policy *p)
{
	return p->table->burst;
}

size_t ratelimit_policy_keys(const struct ratelimit_policy *p)
{
	size_t n = 0;
	int i;

	for (i = 0; i < RL_STRIPES; i++) {
		struct rl_stripe *s = &p->table->stripes[i];

		pthread_mutex_lock(&s->lock);
		n += s->count;
		pthread_mutex_unlock(&s->lock);
	}
	return n;
}

/* ---- per-stripe table, all under the stripe lock ---- */

static void lru_unlink(struct rl_stripe *s, struct rl_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(struct rl_stripe *s, struct rl_entry *e)
{
	e->prev = NULL;
	e->next = s->lru_head;
	if (s->lru_head)
		s->lru_head->prev = e;
	s->lru_head = e;
	if (!s->lru_tail)
		s->lru_tail = e;
}

static struct rl_entry **chain_of(struct rl_stripe *s, uint64_t hash)
{
	/* The low bits chose the stripe; the next ones choose the chain. */
	return &s->buckets[(hash / RL_STRIPES) % RL_STRIPE_BUCKETS];
}

static struct rl_entry *find(struct rl_stripe *s, uint64_t hash, const uint8_t *key, size_t len)
{
	struct rl_entry *e;

	for (e = *chain_of(s, hash); e; e = e->chain)
		if (e->hash == hash && e->keylen == len && !memcmp(e->key, key, len))
			return e;
	return NULL;
}

/* Forgets the least recently used key: the one most likely idle with a full bucket. */
static void evict_lru(struct rl_stripe *s)
{
	struct rl_entry *victim = s->lru_tail, **pp;

	for (pp = chain_of(s, victim->hash); *pp; pp = &(*pp)->chain) {
		if (*pp == victim) {
			*pp = victim->chain;
			break;
		}
	}
	lru_unlink(s, victim);
	s->count--;
	free(victim);
}

static struct rl_entry *insert(struct rl_stripe *s, uint64_t hash, const uint8_t *key, size_t len,
			       uint64_t now_ns)
{
	struct rl_entry *e, **chain;

	if (s->count >= RL_STRIPE_MAX)
		evict_lru(s);
	e = malloc(sizeof(*e) + len);
	if (!e)
		return NULL;
	e->hash = hash;
	e->keylen = len;
	memcpy(e->key, key, len);
	e->word = tb_init(now_ns);
	chain = chain_of(s, hash);
	e->chain = *chain;
	*chain = e;
	lru_push_front(s, e);
	s->count++;
	return e;
}

/* The key's entry, locked (the caller unlocks *sp); NULL (unlocked) on memory exhaustion.
 * *fresh tells a key seen for the first time. */
static struct rl_entry *entry_lock(struct rl_table *t, const void *key, size_t keylen,
				   uint64_t now_ns, struct rl_stripe **sp, bool *fresh)
{
	uint64_t hash;
	struct rl_stripe *s;
	struct rl_entry *e;

	if (keylen > RATELIMIT_KEY_MAX)
		keylen = RATELIMIT_KEY_MAX;
	hash = key_hash(t->seed, key, keylen);
	s = &t->stripes[hash % RL_STRIPES];
	pthread_mutex_lock(&s->lock);
	e = find(s, hash, key, keylen);
	*fresh = !e;
	if (e) {
		lru_unlink(s, e);
		lru_push_front(s, e);
	} else {
		e = insert(s, hash, key, keylen, now_ns);
	}
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		return NULL;
	}
	*sp = s;
	return e;
}

static uint32_t seconds_up(uint64_t ns)
{
	uint64_t secs = (ns + TB_NS_PER_S - 1) / TB_NS_PER_S;

	return secs < 1 ? 1 : secs > UINT32_MAX ? UINT32_MAX : secs;
}

bool ratelimit_take(struct ratelimit_policy *p, const void *key, size_t keylen, uint64_t now_ns,
		    uint32_t *retry_after_s)
{
	struct rl_table *t = p->table;
	struct rl_stripe *s;
	struct rl_entry *e;
	uint64_t wait_ns;
	bool ok, fresh;

	e = entry_lock(t, key, keylen, now_ns, &s, &fresh);
	if (!e)
		return true; /* out of memory: failing open keeps the gateway serving */
	ok = tb_take(&e->word, &t->params, now_ns);
	wait_ns = ok ? 0 : tb_wait_ns(e->word, &t->params, now_ns);
	pthread_mutex_unlock(&s->lock);
	if (!ok && retry_after_s)
		*retry_after_s = seconds_up(wait_ns);
	return ok;
}

/* ---- throttle: NGINX limit_req burst/delay semantics on the same tables ---- */

struct throttle_policy {
	struct rl_table *table;
	enum ratelimit_by by;
	uint64_t interval_ns;
	uint64_t delay_after;
	uint32_t queue_timeout_ms;
};

static const char *const throttle_keys[] = {"per_s", "burst", "delay_after", "queue_timeout_ms",
					    "by", NULL};

struct throttle_policy *throttle_policy_parse(json_t *obj, const char *path,
					      const char *route_name, struct cfg_errs *errs)
{
	long long per_s = 0, burst = 0, delay_after = 0, queue_ms = 0;
	int before = errs->count, by = RL_BY_IP;
	char kp[CFG_PATH_MAX], table_name[CFG_PATH_MAX];
	struct throttle_policy *p;

	if (!json_is_object(obj)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	cfg_check_keys(obj, path, throttle_keys, errs);
	if (!json_object_get(obj, "per_s"))
		cfg_err(errs, cfg_path_key(kp, path, "per_s"), "is required");
	else
		cfg_get_int(obj, "per_s", path, 0, 1, RL_PER_S_MAX, &per_s, errs);
	if (errs->count == before)
		cfg_get_int(obj, "burst", path, per_s, 0, RL_PER_S_MAX, &burst, errs);
	if (errs->count == before)
		cfg_get_int(obj, "delay_after", path, 0, 0, burst, &delay_after, errs);
	cfg_get_int(obj, "queue_timeout_ms", path, 10000, 1, 3600000, &queue_ms, errs);
	cfg_get_enum(obj, "by", path, by_names, RL_BY_IP, &by, errs);
	if (errs->count != before)
		return NULL;
	/* Its own table: a rate_limit with the same numbers on the same route is another
	 * policy whose words mean something else. */
	snprintf(table_name, sizeof(table_name), "throttle:%s", route_name ? route_name : "");
	p = calloc(1, sizeof(*p));
	if (p)
		p->table = table_get(table_name, by, per_s, burst);
	if (!p || !p->table) {
		free(p);
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	p->by = by;
	p->interval_ns = TB_NS_PER_S / per_s;
	p->delay_after = delay_after;
	p->queue_timeout_ms = queue_ms;
	return p;
}

void throttle_policy_free(struct throttle_policy *p)
{
	if (!p)
		return;
	table_put(p->table);
	free(p);
}

enum ratelimit_by throttle_policy_by(const struct throttle_policy *p)
{
	return p->by;
}

/*
 * GCRA: the entry's word is the key's theoretical arrival time. How far it runs ahead of
 * now is the backlog of excess requests; up to delay_after of them go at once, the rest of
 * burst wait until their slot, paced at per_s.
 */
enum throttle_verdict throttle_admit(struct throttle_policy *p, const void *key, size_t keylen,
				     uint64_t now_ns, uint64_t *delay_ns, uint32_t *retry_after_s)
{
	struct rl_table *t = p->table;
	uint64_t tat, ahead, limit = t->burst * p->interval_ns, free_ns;
	struct rl_stripe *s;
	struct rl_entry *e;
	bool fresh;

	*delay_ns = 0;
	e = entry_lock(t, key, keylen, now_ns, &s, &fresh);
	if (!e)
		return THROTTLE_PASS;
	tat = fresh || e->word < now_ns ? now_ns : e->word;
	ahead = tat - now_ns;
	free_ns = p->delay_after * p->interval_ns;
	if (ahead > limit ||
	    (ahead > free_ns && ahead - free_ns > (uint64_t)p->queue_timeout_ms * 1000000ull)) {
		pthread_mutex_unlock(&s->lock);
		*retry_after_s = seconds_up(ahead > limit ? ahead - limit : ahead - free_ns);
		return THROTTLE_REJECT;
	}
	e->word = tat + p->interval_ns;
	pthread_mutex_unlock(&s->lock);
	if (ahead <= free_ns)
		return THROTTLE_PASS;
	*delay_ns = ahead - free_ns;
	return THROTTLE_DELAY;
}

size_t ratelimit_ip_key(const char *ip, char *out, size_t cap)
{
	struct in6_addr a6;
	struct in_addr a4;
	char text[INET6_ADDRSTRLEN];
	int n;

	if (!cap)
		return 0;
	if (inet_pton(AF_INET6, ip, &a6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			memcpy(&a4, &a6.s6_addr[12], 4);
			inet_ntop(AF_INET, &a4, text, sizeof(text));
			n = snprintf(out, cap, "ip:%s", text);
		} else {
			memset(&a6.s6_addr[8], 0, 8);
			inet_ntop(AF_INET6, &a6, text, sizeof(text));
			n = snprintf(out, cap, "ip:%s/64", text);
		}
	} else {
		n = snprintf(out, cap, "ip:%s", ip);
	}
	if (n < 0)
		n = 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
