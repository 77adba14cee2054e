#include "auth/jwa.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum jwa_family { FAM_HMAC, FAM_RSA_PKCS1, FAM_RSA_PSS, FAM_ECDSA, FAM_EDDSA };

struct jwa_info {
	const char *name;
	enum jwa_family family;
	int digest; /* index into jwa_md[]: 0 SHA-256, 1 SHA-384, 2 SHA-512, -1 none */
	size_t digest_len;
	enum jwk_kind ec_kind; /* FAM_ECDSA only */
	size_t coord_len;      /* FAM_ECDSA: bytes of R and of S */
};

static const struct jwa_info jwa_table[JWA_COUNT] = {
    [JWA_HS256] = {"HS256", FAM_HMAC, 0, 32, 0, 0},
    [JWA_HS384] = {"HS384", FAM_HMAC, 1, 48, 0, 0},
    [JWA_HS512] = {"HS512", FAM_HMAC, 2, 64, 0, 0},
    [JWA_RS256] = {"RS256", FAM_RSA_PKCS1, 0, 32, 0, 0},
    [JWA_RS384] = {"RS384", FAM_RSA_PKCS1, 1, 48, 0, 0},
    [JWA_RS512] = {"RS512", FAM_RSA_PKCS1, 2, 64, 0, 0},
    [JWA_PS256] = {"PS256", FAM_RSA_PSS, 0, 32, 0, 0},
    [JWA_PS384] = {"PS384", FAM_RSA_PSS, 1, 48, 0, 0},
    [JWA_PS512] = {"PS512", FAM_RSA_PSS, 2, 64, 0, 0},
    [JWA_ES256] = {"ES256", FAM_ECDSA, 0, 32, JWK_EC_P256, 32},
    [JWA_ES384] = {"ES384", FAM_ECDSA, 1, 48, JWK_EC_P384, 48},
    [JWA_ES512] = {"ES512", FAM_ECDSA, 2, 64, JWK_EC_P521, 66},
    [JWA_EDDSA] = {"EdDSA", FAM_EDDSA, -1, 0, 0, 0},
};

/* RFC 8725 3.5 / NIST: shorter RSA moduli are not accepted as JWT verification keys. */
#define JWA_RSA_MIN_BITS 2048

static EVP_MD *jwa_md[3];
static EVP_MAC *jwa_hmac;
static bool jwa_ready;
static pthread_once_t jwa_once = PTHREAD_ONCE_INIT;

static void jwa_fetch(void)
{
	static const char *const names[3] = {"SHA256", "SHA384", "SHA512"};
	int i;

	for (i = 0; i < 3; i++)
		if (!(jwa_md[i] = EVP_MD_fetch(NULL, names[i], NULL)))
			return;
	jwa_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	jwa_ready = jwa_hmac != NULL;
}

bool jwa_init(void)
{
	pthread_once(&jwa_once, jwa_fetch);
	return jwa_ready;
}

enum jwa_alg jwa_from_name(const char *name)
{
	int i;

	for (i = 0; i < JWA_COUNT; i++)
		if (!strcmp(jwa_table[i].name, name))
			return i;
	return JWA_UNKNOWN;
}

const char *jwa_name(enum jwa_alg alg)
{
	return alg >= 0 && alg < JWA_COUNT ? jwa_table[alg].name : "unknown";
}

bool jwa_key_fits(enum jwa_alg alg, const struct jwk *key)
{
	const struct jwa_info *info;

	if (alg < 0 || alg >= JWA_COUNT)
		return false;
	if (key->alg != JWA_UNKNOWN && key->alg != (int)alg)
		return false;
	info = &jwa_table[alg];
	switch (info->family) {
	case FAM_HMAC:
		/* RFC 7518 3.2: the secret is at least as long as the hash output. */
		return key->kind == JWK_OCT && key->secret_len >= info->digest_len;
	case FAM_RSA_PKCS1:
	case FAM_RSA_PSS:
		return key->kind == JWK_RSA && EVP_PKEY_get_bits(key->pkey) >= JWA_RSA_MIN_BITS;
	case FAM_ECDSA:
		return key->kind == info->ec_kind;
	case FAM_EDDSA:
		return key->kind == JWK_ED25519 || key->kind == JWK_ED448;
	}
	return false;
}

static bool verify_hmac(const struct jwa_info *info, const struct jwk *key,
			const unsigned char *data, size_t datalen, const unsigned char *sig,
			size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;
	bool ok;

	if (siglen != info->digest_len)
		return false;
	ctx = EVP_MAC_CTX_new(jwa_hmac);
	if (!ctx)
		return false;
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_MAC_PARAM_DIGEST, (char *)EVP_MD_get0_name(jwa_md[info->digest]), 0);
	params[1] = OSSL_PARAM_construct_end();
	ok = EVP_MAC_init(ctx, key->secret, key->secret_len, params) &&
	     EVP_MAC_update(ctx, data, datalen) && EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) &&
	     maclen == siglen && CRYPTO_memcmp(mac, sig, siglen) == 0;
	EVP_MAC_CTX_free(ctx);
	OPENSSL_cleanse(mac, sizeof(mac));
	return ok;
}

/* JWS carries ECDSA signatures as fixed-width R||S; OpenSSL verifies DER. */
static int ecdsa_raw_to_der(const unsigned char *sig, size_t coord_len, unsigned char **der)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, coord_len, NULL);
	BIGNUM *s = BN_bin2bn(sig + coord_len, coord_len, NULL);
	int len = -1;

	if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
		r = s = NULL; /* owned by es now */
		len = i2d_ECDSA_SIG(es, der);
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return len;
}

static bool verify_pkey(const struct jwa_info *info, const struct jwk *key,
			const unsigned char *data, size_t datalen, const unsigned char *sig,
			size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *md = info->digest >= 0 ? jwa_md[info->digest] : NULL;
	unsigned char *der = NULL;
	bool ok = false;

	if (!ctx)
		return false;
	if (EVP_DigestVerifyInit_ex(ctx, &pctx, md ? EVP_MD_get0_name(md) : NULL, NULL, NULL,
				    key->pkey, NULL) != 1)
		goto out;
	if (info->family == FAM_RSA_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	     EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0))
		goto out;
	if (info->family == FAM_ECDSA) {
		int derlen;

		if (siglen != 2 * info->coord_len)
			goto out;
		derlen = ecdsa_raw_to_der(sig, info->coord_len, &der);
		if (derlen <= 0)
			goto out;
		sig = der;
		siglen = derlen;
	} else if (info->family != FAM_EDDSA && siglen != (size_t)EVP_PKEY_get_size(key->pkey)) {
		goto out;
	}
	ok = EVP_DigestVerify(ctx, sig, siglen, data, datalen) == 1;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	return ok;
}

bool jwa_verify(enum jwa_alg alg, const struct jwk *key, const unsigned char *data, size_t datalen,
		const unsigned char *sig, size_t siglen)
{
	const struct jwa_info *info;
	bool ok;

	if (!jwa_init() || !jwa_key_fits(alg, key))
		return false;
	info = &jwa_table[alg];
	if (info->family == FAM_HMAC)
		ok = verify_hmac(info, key, data, datalen, sig, siglen);
	else
		ok = verify_pkey(info, key, data, datalen, sig, siglen);
	/*
	 * A failed check leaves entries on this thread's OpenSSL error queue; TLS code on the
	 * same worker reads that queue in SSL_get_error(), so it must not see ours.
	 */
	if (!ok)
		ERR_clear_error();
	return ok;
}

void jwk_clear(struct jwk *key)
{
	free(key->kid);
	EVP_PKEY_free(key->pkey);
	if (key->secret)
		OPENSSL_clear_free(key->secret, key->secret_len);
	memset(key, 0, sizeof(*key));
	key->alg = JWA_UNKNOWN;
}
