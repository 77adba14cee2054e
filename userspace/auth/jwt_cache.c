#include "auth/jwt_cache.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* Set-associative: a token can only live in the WAYS slots of its set, so lookups are O(1). */
#define JWT_CACHE_WAYS 4

struct jwt_cache_entry {
	unsigned char digest[JWT_CACHE_DIGEST_LEN];
	uint64_t generation;
	struct jwt_validity validity;
	uint64_t last_used;
	json_t *claims; /* NULL: free slot */
};

struct jwt_cache {
	struct jwt_cache_entry *entries;
	size_t nsets; /* power of two */
	uint64_t clock;
	EVP_MD_CTX *md_ctx;
	EVP_MD *sha256;
	struct jwt_cache_stats stats;
};

struct jwt_cache *jwt_cache_new(size_t capacity)
{
	struct jwt_cache *c;
	size_t nsets = 1;

	if (!capacity)
		return NULL;
	while (nsets * JWT_CACHE_WAYS < capacity)
		nsets <<= 1;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->nsets = nsets;
	c->entries = calloc(nsets * JWT_CACHE_WAYS, sizeof(*c->entries));
	c->md_ctx = EVP_MD_CTX_new();
	c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!c->entries || !c->md_ctx || !c->sha256) {
		jwt_cache_free(c);
		return NULL;
	}
	return c;
}

void jwt_cache_free(struct jwt_cache *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; c->entries && i < c->nsets * JWT_CACHE_WAYS; i++)
		json_decref(c->entries[i].claims);
	free(c->entries);
	EVP_MD_CTX_free(c->md_ctx);
	EVP_MD_free(c->sha256);
	free(c);
}

void jwt_cache_get_stats(const struct jwt_cache *c, struct jwt_cache_stats *out)
{
	if (c)
		*out = c->stats;
	else
		memset(out, 0, sizeof(*out));
}

void jwt_cache_count_verification(struct jwt_cache *c)
{
	if (c)
		c->stats.verifications++;
}

bool jwt_cache_digest(struct jwt_cache *c, const char *token, size_t len,
		      unsigned char digest[JWT_CACHE_DIGEST_LEN])
{
	unsigned int n = 0;

	return EVP_DigestInit_ex2(c->md_ctx, c->sha256, NULL) == 1 &&
	       EVP_DigestUpdate(c->md_ctx, token, len) == 1 &&
	       EVP_DigestFinal_ex(c->md_ctx, digest, &n) == 1 && n == JWT_CACHE_DIGEST_LEN;
}

static struct jwt_cache_entry *cache_set(struct jwt_cache *c,
					 const unsigned char digest[JWT_CACHE_DIGEST_LEN])
{
	uint64_t h;

	memcpy(&h, digest, sizeof(h));
	return &c->entries[(h & (c->nsets - 1)) * JWT_CACHE_WAYS];
}

static void entry_clear(struct jwt_cache_entry *e)
{
	json_decref(e->claims);
	e->claims = NULL;
}

static bool entry_usable(const struct jwt_cache_entry *e, uint64_t generation, time_t now)
{
	return e->generation == generation && (int64_t)now >= e->validity.valid_from &&
	       (int64_t)now < e->validity.valid_until;
}

json_t *jwt_cache_lookup(struct jwt_cache *c, const unsigned char digest[JWT_CACHE_DIGEST_LEN],
			 uint64_t generation, time_t now)
{
	struct jwt_cache_entry *set = cache_set(c, digest);
	int i;

	for (i = 0; i < JWT_CACHE_WAYS; i++) {
		struct jwt_cache_entry *e = &set[i];

		if (!e->claims || memcmp(e->digest, digest, JWT_CACHE_DIGEST_LEN))
			continue;
		if (!entry_usable(e, generation, now)) {
			/* Stale for good: the keyset moved on or the token expired. */
			entry_clear(e);
			return NULL;
		}
		e->last_used = ++c->clock;
		c->stats.hits++;
		return e->claims;
	}
	return NULL;
}

void jwt_cache_insert(struct jwt_cache *c, const unsigned char digest[JWT_CACHE_DIGEST_LEN],
		      uint64_t generation, const struct jwt_validity *validity, json_t *claims)
{
	struct jwt_cache_entry *set = cache_set(c, digest), *victim = NULL;
	int i;

	for (i = 0; i < JWT_CACHE_WAYS; i++) {
		struct jwt_cache_entry *e = &set[i];

		if (!e->claims || !memcmp(e->digest, digest, JWT_CACHE_DIGEST_LEN) ||
		    e->generation != generation) {
			victim = e;
			break;
		}
		if (!victim || e->last_used < victim->last_used)
			victim = e;
	}
	if (victim->claims && victim->generation == generation &&
	    memcmp(victim->digest, digest, JWT_CACHE_DIGEST_LEN))
		c->stats.evictions++;
	entry_clear(victim);
	memcpy(victim->digest, digest, JWT_CACHE_DIGEST_LEN);
	victim->generation = generation;
	victim->validity = *validity;
	victim->last_used = ++c->clock;
	victim->claims = json_incref(claims);
}
