/*
 * JOSE signature algorithms (RFC 7518, RFC 8037) and the verification keys they accept.
 * Every check goes through OpenSSL 3 EVP; a key is only ever used with an algorithm
 * of its own family, so an RSA public key can never be fed to HMAC as a secret.
 */
#ifndef XGATE_AUTH_JWA_H
#define XGATE_AUTH_JWA_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jwa_alg {
	JWA_HS256,
	JWA_HS384,
	JWA_HS512,
	JWA_RS256,
	JWA_RS384,
	JWA_RS512,
	JWA_PS256,
	JWA_PS384,
	JWA_PS512,
	JWA_ES256,
	JWA_ES384,
	JWA_ES512,
	JWA_EDDSA,
	JWA_COUNT,
	JWA_UNKNOWN = -1,
};

enum jwk_kind {
	JWK_OCT, /* HMAC secret */
	JWK_RSA,
	JWK_EC_P256,
	JWK_EC_P384,
	JWK_EC_P521,
	JWK_ED25519,
	JWK_ED448,
};

struct jwk {
	char *kid; /* NULL when the key has none */
	enum jwk_kind kind;
	int alg;	       /* the JWK's own "alg" restriction, JWA_UNKNOWN when absent */
	EVP_PKEY *pkey;	       /* asymmetric kinds */
	unsigned char *secret; /* JWK_OCT */
	size_t secret_len;
};

/* JWA_UNKNOWN for names we do not implement, including every spelling of "none". */
enum jwa_alg jwa_from_name(const char *name);
const char *jwa_name(enum jwa_alg alg);
/* True when the key's kind may verify this algorithm (and is strong enough for it). */
bool jwa_key_fits(enum jwa_alg alg, const struct jwk *key);
/* Verifies sig over data. The caller has checked jwa_key_fits(). */
bool jwa_verify(enum jwa_alg alg, const struct jwk *key, const unsigned char *data, size_t datalen,
		const unsigned char *sig, size_t siglen);
/* Fetches digests and MACs once so the request path does not look them up by name. */
bool jwa_init(void);

void jwk_clear(struct jwk *key);

#endif
