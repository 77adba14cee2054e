/* Per-worker introspection answers and in-flight IdP calls (see introspect.h). */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "auth/introspect.h"

#define INTRO_WAYS 4

struct intro_entry {
	unsigned char digest[INTRO_DIGEST_LEN];
	uint64_t generation;
	uint64_t until_ms; /* 0: free slot */
	uint64_t last_used;
	enum intro_status status;
	json_t *claims; /* ACTIVE only */
};

struct intro_flight {
	struct intro_flight *next, *prev;
	unsigned char digest[INTRO_DIGEST_LEN];
	uint64_t generation;
	struct intro_waiter *waiters;
	void *call;
};

struct intro_cache {
	struct intro_entry *entries; /* NULL: answers are not stored */
	size_t nsets;		     /* power of two */
	uint64_t clock;
	struct intro_flight *flights;
	struct intro_cache_stats stats;
};

bool intro_digest(const char *token, size_t len, unsigned char out[INTRO_DIGEST_LEN])
{
	unsigned int n = 0;

	return EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) == 1 && n == INTRO_DIGEST_LEN;
}

struct intro_cache *intro_cache_new(size_t capacity)
{
	struct intro_cache *c = calloc(1, sizeof(*c));
	size_t nsets = 1;

	if (!c || !capacity)
		return c;
	while (nsets * INTRO_WAYS < capacity)
		nsets <<= 1;
	c->entries = calloc(nsets * INTRO_WAYS, sizeof(*c->entries));
	if (!c->entries) {
		free(c);
		return NULL;
	}
	c->nsets = nsets;
	return c;
}

void intro_cache_free(struct intro_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; c->entries && i < c->nsets * INTRO_WAYS; i++)
		json_decref(c->entries[i].claims);
	free(c->entries);
	while (c->flights) {
		struct intro_flight *f = c->flights;

		c->flights = f->next;
		free(f);
	}
	free(c);
}

void intro_cache_get_stats(const struct intro_cache *c, struct intro_cache_stats *out)
{
	if (c)
		*out = c->stats;
	else
		memset(out, 0, sizeof(*out));
}

static struct intro_entry *set_of(struct intro_cache *c, const unsigned char *digest)
{
	uint64_t h;

	memcpy(&h, digest, sizeof(h));
	return &c->entries[(h & (c->nsets - 1)) * INTRO_WAYS];
}

static void entry_clear(struct intro_entry *e)
{
	json_decref(e->claims);
	memset(e, 0, sizeof(*e));
}

bool intro_cache_lookup(struct intro_cache *c, const unsigned char digest[INTRO_DIGEST_LEN],
			uint64_t generation, uint64_t now_ms, enum intro_status *status,
			json_t **claims)
{
	struct intro_entry *set;

	*claims = NULL;
	if (!c || !c->entries)
		return false;
	set = set_of(c, digest);
	for (int i = 0; i < INTRO_WAYS; i++) {
		struct intro_entry *e = &set[i];

		if (!e->until_ms || memcmp(e->digest, digest, INTRO_DIGEST_LEN))
			continue;
		if (e->generation != generation || now_ms >= e->until_ms) {
			entry_clear(e);
			break;
		}
		e->last_used = ++c->clock;
		*status = e->status;
		*claims = json_incref(e->claims);
		c->stats.hits++;
		return true;
	}
	c->stats.misses++;
	return false;
}

void intro_cache_insert(struct intro_cache *c, const unsigned char digest[INTRO_DIGEST_LEN],
			uint64_t generation, enum intro_status status, json_t *claims,
			uint64_t now_ms, uint64_t until_ms)
{
	struct intro_entry *set, *victim = NULL;

	if (!c || !c->entries || until_ms <= now_ms || status == INTRO_ERROR)
		return;
	set = set_of(c, digest);
	for (int i = 0; i < INTRO_WAYS && !victim; i++)
		if (set[i].until_ms && !memcmp(set[i].digest, digest, INTRO_DIGEST_LEN))
			victim = &set[i]; /* the same token: replaced */
	for (int i = 0; i < INTRO_WAYS && !victim; i++)
		if (!set[i].until_ms || now_ms >= set[i].until_ms)
			victim = &set[i];
	if (!victim) {
		victim = &set[0];
		for (int i = 1; i < INTRO_WAYS; i++)
			if (set[i].last_used < victim->last_used)
				victim = &set[i];
		c->stats.evictions++;
	}
	entry_clear(victim);
	memcpy(victim->digest, digest, INTRO_DIGEST_LEN);
	victim->generation = generation;
	victim->until_ms = until_ms;
	victim->last_used = ++c->clock;
	victim->status = status;
	victim->claims = status == INTRO_ACTIVE ? json_incref(claims) : NULL;
}

struct intro_flight *intro_flight_find(struct intro_cache *c,
				       const unsigned char digest[INTRO_DIGEST_LEN],
				       uint64_t generation)
{
	for (struct intro_flight *f = c->flights; f; f = f->next)
		if (f->generation == generation && !memcmp(f->digest, digest, INTRO_DIGEST_LEN))
			return f;
	return NULL;
}

struct intro_flight *intro_flight_start(struct intro_cache *c,
					const unsigned char digest[INTRO_DIGEST_LEN],
					uint64_t generation)
{
	struct intro_flight *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	memcpy(f->digest, digest, INTRO_DIGEST_LEN);
	f->generation = generation;
	f->next = c->flights;
	if (c->flights)
		c->flights->prev = f;
	c->flights = f;
	c->stats.flights++;
	return f;
}

void intro_flight_set_call(struct intro_flight *f, void *call)
{
	f->call = call;
}

void *intro_flight_call(const struct intro_flight *f)
{
	return f->call;
}

void intro_flight_join(struct intro_flight *f, struct intro_waiter *w)
{
	w->flight = f;
	w->answered = false;
	w->prev = NULL;
	w->next = f->waiters;
	if (f->waiters)
		f->waiters->prev = w;
	f->waiters = w;
}

bool intro_waiter_leave(struct intro_waiter *w)
{
	struct intro_flight *f = w->flight;

	if (!f)
		return false;
	if (w->prev)
		w->prev->next = w->next;
	else
		f->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->flight = NULL;
	return !f->waiters;
}

static void flight_unlink(struct intro_cache *c, struct intro_flight *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		c->flights = f->next;
	if (f->next)
		f->next->prev = f->prev;
}

void intro_flight_abandon(struct intro_cache *c, struct intro_flight *f)
{
	while (f->waiters)
		intro_waiter_leave(f->waiters);
	flight_unlink(c, f);
	free(f);
}

void intro_flight_complete(struct intro_cache *c, struct intro_flight *f, enum intro_status status,
			   json_t *claims, uint64_t now_ms, uint64_t until_ms)
{
	struct intro_waiter *w;

	intro_cache_insert(c, f->digest, f->generation, status, claims, now_ms, until_ms);
	flight_unlink(c, f);
	/* Detached first: a woken waiter may end (and leave) before the others are woken. */
	while ((w = f->waiters)) {
		intro_waiter_leave(w);
		w->answered = true;
		w->status = status;
		w->claims = status == INTRO_ACTIVE ? json_incref(claims) : NULL;
		if (w->wake)
			w->wake(w);
	}
	free(f);
}
