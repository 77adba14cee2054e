/* Compact JWS / JWT verification (RFC 7515, 7519, 8725) against a keyset and a policy. */
#ifndef XGATE_AUTH_JWT_H
#define XGATE_AUTH_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "auth/auth.h"
#include "auth/jwks.h"

struct jwt_policy {
	uint32_t algorithms; /* bitmask of 1 << enum jwa_alg */
	char *issuer;	     /* NULL: not checked */
	char *audience;	     /* NULL: not checked */
	int64_t leeway_s;
	size_t max_token_bytes;
	bool require_exp;
};

/* The time span in which verified claims stay acceptable: valid_from <= now < valid_until. */
struct jwt_validity {
	int64_t valid_from, valid_until;
};

/*
 * Verifies a compact JWS and its registered claims. On AUTH_OK *claims holds a new
 * reference to the payload object and *validity when it may be reused.
 */
enum auth_reason jwt_verify(const struct jwt_policy *p, const struct keyset *ks, const char *token,
			    size_t len, time_t now, json_t **claims, struct jwt_validity *validity);

/* The exp/nbf/iat/iss/aud part of jwt_verify(), on an already verified payload. */
enum auth_reason jwt_check_claims(const struct jwt_policy *p, json_t *claims, time_t now,
				  struct jwt_validity *validity);

/*
 * Looks a claim up by its exact name, then as a dotted path into nested objects
 * ("realm_access.roles"); names like "https://example.com/roles" are found exactly.
 */
json_t *jwt_claim(json_t *claims, const char *name);

#endif
