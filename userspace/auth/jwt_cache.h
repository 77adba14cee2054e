/*
 * Per-worker cache of verified tokens, keyed by SHA-256 of the whole token. Single-threaded
 * by design: each worker owns one, so lookups take no lock. An entry is only returned
 * while the token's own validity window holds and the keyset it was verified with is
 * still the current one, so a cache hit never accepts what a full check would now refuse.
 */
#ifndef XGATE_AUTH_JWT_CACHE_H
#define XGATE_AUTH_JWT_CACHE_H

#include <jansson.h>
#include <stdint.h>

#include "auth/auth.h"
#include "auth/jwt.h"

#define JWT_CACHE_DIGEST_LEN 32

/* Fills digest; false when hashing failed (the caller then bypasses the cache). */
bool jwt_cache_digest(struct jwt_cache *c, const char *token, size_t len,
		      unsigned char digest[JWT_CACHE_DIGEST_LEN]);
/* Borrowed reference to the cached claims, or NULL. */
json_t *jwt_cache_lookup(struct jwt_cache *c, const unsigned char digest[JWT_CACHE_DIGEST_LEN],
			 uint64_t generation, time_t now);
/* Takes a new reference to claims. */
void jwt_cache_insert(struct jwt_cache *c, const unsigned char digest[JWT_CACHE_DIGEST_LEN],
		      uint64_t generation, const struct jwt_validity *validity, json_t *claims);
void jwt_cache_count_verification(struct jwt_cache *c);

#endif
