/*
 * JWKS parsing (userspace/auth/jwks.c, through keyset_from_jwks, the code behind
 * auth.jwt.jwks_file). An accepted set has at most 256 keys with unique kids that
 * keyset_find returns, every key is complete for its kind and fits its own "alg"; an HMAC
 * key verifies a MAC computed here with its secret and refuses a changed one; no
 * asymmetric key accepts a signature of zeros. A refused set says why.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/jwks.h"
#include "common/log.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR);
	FUZZ_CHECK(jwa_init());
	return 0;
}

static void check_hmac(const struct jwk *k)
{
	static const unsigned char msg[] = "header.payload";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (!jwa_key_fits(JWA_HS256, k))
		return;
	FUZZ_CHECK(
	    HMAC(EVP_sha256(), k->secret, (int)k->secret_len, msg, sizeof(msg) - 1, mac, &maclen));
	FUZZ_CHECK(jwa_verify(JWA_HS256, k, msg, sizeof(msg) - 1, mac, maclen));
	mac[0] ^= 1;
	FUZZ_CHECK(!jwa_verify(JWA_HS256, k, msg, sizeof(msg) - 1, mac, maclen));
	FUZZ_CHECK(!jwa_verify(JWA_HS256, k, msg, sizeof(msg) - 1, mac, maclen - 1));
}

static void check_key(const struct keyset *ks, int i)
{
	static const unsigned char zeros[512];
	const struct jwk *k = &ks->keys[i];

	FUZZ_CHECK(k->kind >= JWK_OCT && k->kind <= JWK_ED448);
	if (k->kind == JWK_OCT)
		FUZZ_CHECK(k->secret && k->secret_len >= 32 && !k->pkey);
	else
		FUZZ_CHECK(k->pkey && !k->secret);
	if (k->alg != JWA_UNKNOWN)
		FUZZ_CHECK(k->alg >= 0 && k->alg < JWA_COUNT && jwa_key_fits(k->alg, k));
	if (k->kid) {
		FUZZ_CHECK(keyset_find(ks, k->kid) == k);
		for (int j = 0; j < i; j++)
			FUZZ_CHECK(!ks->keys[j].kid || strcmp(ks->keys[j].kid, k->kid));
	}
	if (k->kind == JWK_OCT) {
		check_hmac(k);
		return;
	}
	for (int a = 0; a < JWA_COUNT; a++)
		if (jwa_key_fits(a, k))
			FUZZ_CHECK(!jwa_verify(a, k, zeros, 16, zeros, sizeof(zeros)) &&
				   !jwa_verify(a, k, zeros, 16, zeros, 64));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fuzz_dup(data, size), err[512] = "";
	struct keyset *ks = keyset_from_jwks(buf, size, "fuzz.jwks", err, sizeof(err));

	if (!ks) {
		FUZZ_CHECK(err[0] != '\0');
		free(buf);
		return 0;
	}
	FUZZ_CHECK(ks->nkeys >= 0 && ks->nkeys <= 256);
	for (int i = 0; i < ks->nkeys; i++)
		check_key(ks, i);
	/* without a kid only the lone kid-less key of a one-key set can be chosen */
	if (keyset_find(ks, NULL))
		FUZZ_CHECK(ks->nkeys == 1 && !ks->keys[0].kid);
	FUZZ_CHECK(keyset_get(ks) == ks);
	keyset_put(ks);
	keyset_put(ks);
	free(buf);
	return 0;
}
