#include "auth/jwks.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/b64url.h"
#include "common/log.h"

#define JWKS_MAX_FILE_BYTES (1 << 20)
#define JWKS_MAX_KEYS 256

static atomic_uint_fast64_t keyset_generations;

/* Decodes a required base64url member into a malloc'd buffer. */
static unsigned char *b64_member(json_t *obj, const char *name, size_t *len, char *err,
				 size_t errlen)
{
	json_t *v = json_object_get(obj, name);
	unsigned char *out;
	size_t slen;

	if (!json_is_string(v)) {
		snprintf(err, errlen, "\"%s\" must be a base64url string", name);
		return NULL;
	}
	slen = json_string_length(v);
	out = malloc(b64url_decoded_max(slen));
	if (!out) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!slen || !b64url_decode(json_string_value(v), slen, out, len)) {
		snprintf(err, errlen, "\"%s\" is not valid base64url", name);
		free(out);
		return NULL;
	}
	return out;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;

	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		pkey = NULL;
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

/* Rejects what fromdata accepts but no honest issuer would publish (points off the curve). */
static bool pkey_public_ok(EVP_PKEY *pkey)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	bool ok = ctx && EVP_PKEY_public_check(ctx) == 1;

	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static int jwk_parse_rsa(json_t *obj, struct jwk *key, char *err, size_t errlen)
{
	unsigned char *n = NULL, *e = NULL;
	size_t nlen, elen;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	int ret = -1;

	if (!(n = b64_member(obj, "n", &nlen, err, errlen)) ||
	    !(e = b64_member(obj, "e", &elen, err, errlen)))
		goto out;
	bn_n = BN_bin2bn(n, nlen, NULL);
	bn_e = BN_bin2bn(e, elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	key->kind = JWK_RSA;
	key->pkey = pkey_fromdata("RSA", bld);
	if (!key->pkey || !pkey_public_ok(key->pkey)) {
		snprintf(err, errlen, "invalid RSA public key");
		goto out;
	}
	if (EVP_PKEY_get_bits(key->pkey) < 2048) {
		snprintf(err, errlen, "RSA key of %d bits is too short (minimum 2048)",
			 EVP_PKEY_get_bits(key->pkey));
		goto out;
	}
	ret = 1;
out:
	free(n);
	free(e);
	BN_free(bn_n);
	BN_free(bn_e);
	OSSL_PARAM_BLD_free(bld);
	return ret;
}

static const struct {
	const char *crv, *group;
	enum jwk_kind kind;
	size_t coord_len;
} ec_curves[] = {
    {"P-256", "prime256v1", JWK_EC_P256, 32},
    {"P-384", "secp384r1", JWK_EC_P384, 48},
    {"P-521", "secp521r1", JWK_EC_P521, 66},
};

static int jwk_parse_ec(json_t *obj, const char *crv, struct jwk *key, char *err, size_t errlen)
{
	unsigned char *x = NULL, *y = NULL, point[1 + 2 * 66];
	size_t xlen, ylen, i, clen;
	OSSL_PARAM_BLD *bld = NULL;
	int ret = -1;

	for (i = 0; i < sizeof(ec_curves) / sizeof(ec_curves[0]); i++)
		if (!strcmp(crv, ec_curves[i].crv))
			break;
	if (i == sizeof(ec_curves) / sizeof(ec_curves[0])) {
		snprintf(err, errlen, "unsupported EC curve \"%s\"", crv);
		return 0;
	}
	clen = ec_curves[i].coord_len;
	if (!(x = b64_member(obj, "x", &xlen, err, errlen)) ||
	    !(y = b64_member(obj, "y", &ylen, err, errlen)))
		goto out;
	/*
	 * RFC 7518 6.2.1.2 wants full-width coordinates, but some issuers (PyJWT 2.6 for P-521)
	 * drop leading zero bytes; a shorter value is the same number, so it is left-padded.
	 */
	if (!xlen || !ylen || xlen > clen || ylen > clen) {
		snprintf(err, errlen, "\"x\" and \"y\" must be at most %zu bytes for %s", clen,
			 crv);
		goto out;
	}
	memset(point, 0, sizeof(point));
	point[0] = 0x04; /* uncompressed */
	memcpy(point + 1 + clen - xlen, x, xlen);
	memcpy(point + 1 + 2 * clen - ylen, y, ylen);
	bld = OSSL_PARAM_BLD_new();
	if (!bld ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, ec_curves[i].group,
					     0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * clen)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	key->kind = ec_curves[i].kind;
	key->pkey = pkey_fromdata("EC", bld);
	if (!key->pkey || !pkey_public_ok(key->pkey)) {
		snprintf(err, errlen, "invalid EC public key (not a point on %s)", crv);
		goto out;
	}
	ret = 1;
out:
	free(x);
	free(y);
	OSSL_PARAM_BLD_free(bld);
	return ret;
}

static int jwk_parse_okp(json_t *obj, const char *crv, struct jwk *key, char *err, size_t errlen)
{
	unsigned char *x;
	size_t xlen, want;
	const char *type;

	if (!strcmp(crv, "Ed25519")) {
		key->kind = JWK_ED25519;
		type = "ED25519";
		want = 32;
	} else if (!strcmp(crv, "Ed448")) {
		key->kind = JWK_ED448;
		type = "ED448";
		want = 57;
	} else {
		/* X25519/X448 are key-agreement keys: never signature keys. */
		snprintf(err, errlen, "OKP curve \"%s\" is not a signature curve", crv);
		return 0;
	}
	if (!(x = b64_member(obj, "x", &xlen, err, errlen)))
		return -1;
	if (xlen != want) {
		snprintf(err, errlen, "\"x\" must be %zu bytes for %s", want, crv);
		free(x);
		return -1;
	}
	key->pkey = EVP_PKEY_new_raw_public_key_ex(NULL, type, NULL, x, xlen);
	free(x);
	if (!key->pkey) {
		snprintf(err, errlen, "invalid %s public key", crv);
		return -1;
	}
	return 1;
}

static int jwk_parse_oct(json_t *obj, struct jwk *key, char *err, size_t errlen)
{
	key->kind = JWK_OCT;
	key->secret = b64_member(obj, "k", &key->secret_len, err, errlen);
	if (!key->secret)
		return -1;
	if (key->secret_len < 32) {
		snprintf(err, errlen, "oct key of %zu bytes is too short (minimum 32)",
			 key->secret_len);
		return -1;
	}
	return 1;
}

static int jwk_parse_header(json_t *obj, struct jwk *key, const char **kty, const char **crv,
			    char *err, size_t errlen)
{
	json_t *use = json_object_get(obj, "use"), *alg = json_object_get(obj, "alg");
	json_t *kid = json_object_get(obj, "kid"), *jcrv = json_object_get(obj, "crv");

	*kty = json_string_value(json_object_get(obj, "kty"));
	if (!*kty) {
		snprintf(err, errlen, "\"kty\" must be a string");
		return -1;
	}
	if ((use && !json_is_string(use)) || (alg && !json_is_string(alg)) ||
	    (kid && !json_is_string(kid)) || (jcrv && !json_is_string(jcrv))) {
		snprintf(err, errlen, "\"use\", \"alg\", \"kid\" and \"crv\" must be strings");
		return -1;
	}
	if (use && strcmp(json_string_value(use), "sig")) {
		snprintf(err, errlen, "key with \"use\": \"%s\" skipped", json_string_value(use));
		return 0;
	}
	if (alg && (key->alg = jwa_from_name(json_string_value(alg))) == JWA_UNKNOWN) {
		snprintf(err, errlen, "key with \"alg\": \"%s\" skipped", json_string_value(alg));
		return 0;
	}
	if (kid && !(key->kid = strdup(json_string_value(kid)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*crv = jcrv ? json_string_value(jcrv) : "";
	return 1;
}

int jwk_parse(json_t *obj, struct jwk *key, char *err, size_t errlen)
{
	const char *kty, *crv;
	int ret;

	memset(key, 0, sizeof(*key));
	key->alg = JWA_UNKNOWN;
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "must be an object");
		return -1;
	}
	ret = jwk_parse_header(obj, key, &kty, &crv, err, errlen);
	if (ret <= 0)
		goto done;
	if (!strcmp(kty, "RSA")) {
		ret = jwk_parse_rsa(obj, key, err, errlen);
	} else if (!strcmp(kty, "EC")) {
		ret = jwk_parse_ec(obj, crv, key, err, errlen);
	} else if (!strcmp(kty, "OKP")) {
		ret = jwk_parse_okp(obj, crv, key, err, errlen);
	} else if (!strcmp(kty, "oct")) {
		ret = jwk_parse_oct(obj, key, err, errlen);
	} else {
		snprintf(err, errlen, "key with unsupported \"kty\": \"%s\" skipped", kty);
		ret = 0;
	}
	if (ret > 0 && key->alg != JWA_UNKNOWN && !jwa_key_fits(key->alg, key)) {
		snprintf(err, errlen, "\"alg\": \"%s\" does not fit this key", jwa_name(key->alg));
		ret = -1;
	}
done:
	ERR_clear_error();
	if (ret <= 0)
		jwk_clear(key);
	return ret;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf;

	if (!f) {
		snprintf(err, errlen, "cannot open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(JWKS_MAX_FILE_BYTES + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		fclose(f);
		return NULL;
	}
	*len = fread(buf, 1, JWKS_MAX_FILE_BYTES + 1, f);
	if (ferror(f) || *len > JWKS_MAX_FILE_BYTES) {
		snprintf(err, errlen, "cannot read \"%s\": %s", path,
			 ferror(f) ? strerror(errno) : "larger than 1 MiB");
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static bool keyset_add(struct keyset *ks, struct jwk *key, char *err, size_t errlen)
{
	int i;

	if (ks->nkeys == JWKS_MAX_KEYS) {
		snprintf(err, errlen, "more than %d keys", JWKS_MAX_KEYS);
		return false;
	}
	/* Two keys under one kid would make the choice depend on file order. */
	for (i = 0; key->kid && i < ks->nkeys; i++) {
		if (ks->keys[i].kid && !strcmp(ks->keys[i].kid, key->kid)) {
			snprintf(err, errlen, "duplicate \"kid\": \"%s\"", key->kid);
			return false;
		}
	}
	ks->keys[ks->nkeys++] = *key;
	return true;
}

static bool keyset_load_jwk(struct keyset *ks, const char *path, json_t *jkey, size_t idx,
			    char *err, size_t errlen)
{
	char why[256];
	struct jwk key;
	int ret = jwk_parse(jkey, &key, why, sizeof(why));

	if (ret < 0) {
		snprintf(err, errlen, "\"%s\": keys[%zu]: %s", path, idx, why);
		return false;
	}
	if (ret == 0) {
		log_warn("auth", "\"%s\": keys[%zu]: %s", path, idx, why);
		return true;
	}
	if (!keyset_add(ks, &key, why, sizeof(why))) {
		snprintf(err, errlen, "\"%s\": keys[%zu]: %s", path, idx, why);
		jwk_clear(&key);
		return false;
	}
	return true;
}

/* A JWKS document (or one bare JWK) held in memory; `path` names it in messages. */
static bool keyset_parse_jwks(struct keyset *ks, const char *path, const char *buf, size_t len,
			      char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *keys, *jkey;
	size_t idx;
	bool ok = true;

	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errlen, "\"%s\": invalid JSON at line %d: %s", path, jerr.line,
			 jerr.text);
		return false;
	}
	/* A file holding one bare JWK is accepted as a set of one. */
	keys = json_object_get(root, "keys");
	if (!keys && json_object_get(root, "kty")) {
		ok = keyset_load_jwk(ks, path, root, 0, err, errlen);
	} else if (!json_is_array(keys)) {
		snprintf(err, errlen, "\"%s\": \"keys\" must be an array", path);
		ok = false;
	} else {
		json_array_foreach(keys, idx, jkey)
		{
			if (!(ok = keyset_load_jwk(ks, path, jkey, idx, err, errlen)))
				break;
		}
	}
	json_decref(root);
	return ok;
}

static bool keyset_load_jwks(struct keyset *ks, const char *path, char *err, size_t errlen)
{
	size_t len;
	char *buf = read_file(path, &len, err, errlen);
	bool ok;

	if (!buf)
		return false;
	ok = keyset_parse_jwks(ks, path, buf, len, err, errlen);
	free(buf);
	return ok;
}

static int pem_kind(EVP_PKEY *pkey)
{
	char group[64];
	size_t i;

	if (EVP_PKEY_is_a(pkey, "RSA"))
		return JWK_RSA;
	if (EVP_PKEY_is_a(pkey, "ED25519"))
		return JWK_ED25519;
	if (EVP_PKEY_is_a(pkey, "ED448"))
		return JWK_ED448;
	if (EVP_PKEY_is_a(pkey, "EC") &&
	    EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL)) {
		for (i = 0; i < sizeof(ec_curves) / sizeof(ec_curves[0]); i++)
			if (!strcmp(group, ec_curves[i].group))
				return ec_curves[i].kind;
	}
	return -1;
}

/* A PEM "PUBLIC KEY", or the key of a PEM certificate. */
static EVP_PKEY *pem_read_key(const char *path, char *err, size_t errlen)
{
	BIO *bio = BIO_new_file(path, "r");
	EVP_PKEY *pkey;
	X509 *cert;

	if (!bio) {
		snprintf(err, errlen, "cannot open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	if (!pkey && BIO_reset(bio) == 0) {
		cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		if (cert)
			pkey = X509_get_pubkey(cert);
		X509_free(cert);
	}
	BIO_free(bio);
	ERR_clear_error();
	if (!pkey)
		snprintf(err, errlen, "\"%s\": no PEM public key or certificate", path);
	return pkey;
}

static bool keyset_load_pem(struct keyset *ks, const struct pem_source *pem, char *err,
			    size_t errlen)
{
	struct jwk key = {.alg = JWA_UNKNOWN};
	char why[256];
	int kind;

	key.pkey = pem_read_key(pem->path, err, errlen);
	if (!key.pkey)
		return false;
	kind = pem_kind(key.pkey);
	if (kind < 0 || !pkey_public_ok(key.pkey) ||
	    (kind == JWK_RSA && EVP_PKEY_get_bits(key.pkey) < 2048)) {
		snprintf(err, errlen,
			 "\"%s\": unsupported key (need RSA >= 2048 bits, EC P-256/384/521, "
			 "Ed25519 or Ed448)",
			 pem->path);
		ERR_clear_error();
		jwk_clear(&key);
		return false;
	}
	key.kind = kind;
	if (pem->kid && !(key.kid = strdup(pem->kid))) {
		snprintf(err, errlen, "out of memory");
		jwk_clear(&key);
		return false;
	}
	if (!keyset_add(ks, &key, why, sizeof(why))) {
		snprintf(err, errlen, "\"%s\": %s", pem->path, why);
		jwk_clear(&key);
		return false;
	}
	return true;
}

static struct keyset *keyset_alloc(char *err, size_t errlen)
{
	struct keyset *ks = calloc(1, sizeof(*ks));

	if (!ks || !(ks->keys = calloc(JWKS_MAX_KEYS, sizeof(*ks->keys)))) {
		snprintf(err, errlen, "out of memory");
		free(ks);
		return NULL;
	}
	atomic_init(&ks->refs, 1);
	return ks;
}

struct keyset *keyset_load(const struct key_sources *src, int *bad_source, char *err, size_t errlen)
{
	struct keyset *ks = keyset_alloc(err, errlen);
	bool ok = true;
	int i;

	if (!ks)
		return NULL;
	*bad_source = 0;
	if (src->jwks_file)
		ok = keyset_load_jwks(ks, src->jwks_file, err, errlen);
	for (i = 0; ok && i < src->npems; i++) {
		*bad_source = 1 + i;
		ok = keyset_load_pem(ks, &src->pems[i], err, errlen);
	}
	if (!ok) {
		keyset_put(ks);
		return NULL;
	}
	ks->generation = atomic_fetch_add(&keyset_generations, 1) + 1;
	return ks;
}

struct keyset *keyset_from_jwks(const char *buf, size_t len, const char *name, char *err,
				size_t errlen)
{
	struct keyset *ks = keyset_alloc(err, errlen);

	if (!ks)
		return NULL;
	if (!keyset_parse_jwks(ks, name, buf, len, err, errlen)) {
		keyset_put(ks);
		return NULL;
	}
	ks->generation = atomic_fetch_add(&keyset_generations, 1) + 1;
	return ks;
}

struct keyset *keyset_get(struct keyset *ks)
{
	atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
	return ks;
}

void keyset_put(struct keyset *ks)
{
	int i;

	if (!ks || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < ks->nkeys; i++)
		jwk_clear(&ks->keys[i]);
	free(ks->keys);
	free(ks);
}

const struct jwk *keyset_find(const struct keyset *ks, const char *kid)
{
	int i;

	for (i = 0; kid && i < ks->nkeys; i++)
		if (ks->keys[i].kid && !strcmp(ks->keys[i].kid, kid))
			return &ks->keys[i];
	if (ks->nkeys == 1 && !ks->keys[0].kid)
		return &ks->keys[0];
	return NULL;
}

static bool stamp_file(const char *path, struct file_stamp *st)
{
	struct stat sb;

	memset(st, 0, sizeof(*st));
	if (stat(path, &sb))
		return false;
	st->valid = true;
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	st->size = sb.st_size;
	st->mtime = sb.st_mtim;
	st->ctime = sb.st_ctim;
	return true;
}

int key_sources_count(const struct key_sources *src)
{
	return (src->jwks_file ? 1 : 0) + src->npems;
}

bool key_sources_stamp(const struct key_sources *src, struct file_stamp *stamps)
{
	bool ok = true;
	int i, n = 0;

	if (src->jwks_file)
		ok &= stamp_file(src->jwks_file, &stamps[n++]);
	for (i = 0; i < src->npems; i++)
		ok &= stamp_file(src->pems[i].path, &stamps[n++]);
	return ok;
}

bool file_stamp_equal(const struct file_stamp *a, const struct file_stamp *b)
{
	return a->valid == b->valid && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

void key_sources_free(struct key_sources *src)
{
	int i;

	free(src->jwks_file);
	for (i = 0; i < src->npems; i++) {
		free(src->pems[i].path);
		free(src->pems[i].kid);
	}
	free(src->pems);
	memset(src, 0, sizeof(*src));
}
