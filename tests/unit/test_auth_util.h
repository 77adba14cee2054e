/*
 * Test-only helpers for the auth tests: key generation, a small JWS signer, JWK export,
 * JWKS files in a private temp directory, and hand-built requests. Keys are generated at
 * test time and never written anywhere but the test's temp directory.
 */
#ifndef XGATE_TESTS_AUTH_UTIL_H
#define XGATE_TESTS_AUTH_UTIL_H

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/b64url.h"
#include "http/http.h"

static char tu_dir[256];

__attribute__((unused)) static void tu_mkdir(void)
{
	snprintf(tu_dir, sizeof(tu_dir), "/tmp/xgate-auth-test-XXXXXX");
	if (!mkdtemp(tu_dir)) {
		perror("mkdtemp");
		exit(2);
	}
}

__attribute__((unused)) static void tu_rmdir(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tu_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tu_dir);
}

__attribute__((unused)) static const char *tu_path(const char *name)
{
	static char paths[8][300];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, 300, "%s/%s", tu_dir, name);
	return p;
}

__attribute__((unused)) static char *tu_b64(const unsigned char *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	b64url_encode(data, len, out);
	return out;
}

__attribute__((unused)) static char *tu_b64s(const char *s)
{
	return tu_b64((const unsigned char *)s, strlen(s));
}

__attribute__((unused)) static EVP_PKEY *tu_keygen(const char *what)
{
	EVP_PKEY *k;

	if (!strcmp(what, "RSA"))
		k = EVP_RSA_gen(2048);
	else if (!strcmp(what, "RSA1024"))
		k = EVP_RSA_gen(1024);
	else if (!strncmp(what, "P-", 2))
		k = EVP_EC_gen(what);
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, what);
	if (!k) {
		fprintf(stderr, "keygen %s failed\n", what);
		exit(2);
	}
	return k;
}

__attribute__((unused)) static const EVP_MD *tu_md(const char *alg)
{
	if (strstr(alg, "384"))
		return EVP_sha384();
	if (strstr(alg, "512"))
		return EVP_sha512();
	return EVP_sha256();
}

__attribute__((unused)) static size_t tu_coord(const char *alg)
{
	return !strcmp(alg, "ES256") ? 32 : !strcmp(alg, "ES384") ? 48 : 66;
}

/* Signs data with alg (JOSE name); the ECDSA result is converted to raw R||S unless der. */
__attribute__((unused)) static unsigned char *tu_sign(const char *alg, EVP_PKEY *pkey,
						      const unsigned char *secret, size_t slen,
						      const char *data, size_t *siglen, int der)
{
	unsigned char *sig = malloc(1024);
	EVP_MD_CTX *ctx;
	EVP_PKEY_CTX *pctx = NULL;
	unsigned int hlen;

	if (alg[0] == 'H') {
		HMAC(tu_md(alg), secret, slen, (const unsigned char *)data, strlen(data), sig,
		     &hlen);
		*siglen = hlen;
		return sig;
	}
	ctx = EVP_MD_CTX_new();
	*siglen = 1024;
	if (EVP_DigestSignInit(ctx, &pctx, strcmp(alg, "EdDSA") ? tu_md(alg) : NULL, NULL, pkey) !=
	    1) {
		fprintf(stderr, "test signer: %s cannot sign with this key\n", alg);
		exit(3);
	}
	if (alg[0] == 'P') {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	}
	if (EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)data, strlen(data)) != 1)
		exit(3);
	EVP_MD_CTX_free(ctx);
	if (alg[0] == 'E' && alg[1] == 'S' && !der) {
		const unsigned char *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, *siglen);
		size_t c = tu_coord(alg);
		unsigned char *raw = malloc(2 * c);

		BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, c);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + c, c);
		ECDSA_SIG_free(es);
		free(sig);
		*siglen = 2 * c;
		return raw;
	}
	return sig;
}

/* header and payload are JSON texts used verbatim; sign_alg picks how to sign. */
__attribute__((unused)) static char *tu_token_raw(const char *header, const char *payload,
						  const char *sign_alg, EVP_PKEY *pkey,
						  const unsigned char *secret, size_t slen)
{
	char *h = tu_b64s(header), *p = tu_b64s(payload), *input, *s, *tok;
	unsigned char *sig;
	size_t siglen;

	input = malloc(strlen(h) + strlen(p) + 2);
	sprintf(input, "%s.%s", h, p);
	sig = tu_sign(sign_alg, pkey, secret, slen, input, &siglen, 0);
	s = tu_b64(sig, siglen);
	tok = malloc(strlen(input) + strlen(s) + 2);
	sprintf(tok, "%s.%s", input, s);
	free(h);
	free(p);
	free(input);
	free(sig);
	free(s);
	return tok;
}

__attribute__((unused)) static char *tu_token(const char *alg, const char *kid, const char *payload,
					      EVP_PKEY *pkey, const unsigned char *secret,
					      size_t slen)
{
	char header[256];

	if (kid)
		snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
			 alg, kid);
	else
		snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
	return tu_token_raw(header, payload, alg, pkey, secret, slen);
}

__attribute__((unused)) static json_t *tu_bn_member(EVP_PKEY *pkey, const char *param, size_t pad)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	size_t len;
	char *s;
	json_t *v;

	EVP_PKEY_get_bn_param(pkey, param, &bn);
	len = pad ? (size_t)BN_bn2binpad(bn, buf, pad) : (size_t)BN_bn2bin(bn, buf);
	s = tu_b64(buf, len);
	v = json_string(s);
	free(s);
	BN_free(bn);
	return v;
}

/* The public JWK of pkey (or of an HMAC secret when pkey is NULL). */
__attribute__((unused)) static json_t *tu_jwk(EVP_PKEY *pkey, const unsigned char *secret,
					      size_t slen, const char *kid)
{
	json_t *k = json_object();
	char *s;

	if (kid)
		json_object_set_new(k, "kid", json_string(kid));
	if (!pkey) {
		json_object_set_new(k, "kty", json_string("oct"));
		s = tu_b64(secret, slen);
		json_object_set_new(k, "k", json_string(s));
		free(s);
	} else if (EVP_PKEY_is_a(pkey, "RSA")) {
		json_object_set_new(k, "kty", json_string("RSA"));
		json_object_set_new(k, "n", tu_bn_member(pkey, OSSL_PKEY_PARAM_RSA_N, 0));
		json_object_set_new(k, "e", tu_bn_member(pkey, OSSL_PKEY_PARAM_RSA_E, 0));
	} else if (EVP_PKEY_is_a(pkey, "EC")) {
		char group[32];
		size_t c;

		EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL);
		c = !strcmp(group, "prime256v1") ? 32 : !strcmp(group, "secp384r1") ? 48 : 66;
		json_object_set_new(k, "kty", json_string("EC"));
		json_object_set_new(k, "crv",
				    json_string(c == 32	  ? "P-256"
						: c == 48 ? "P-384"
							  : "P-521"));
		json_object_set_new(k, "x", tu_bn_member(pkey, OSSL_PKEY_PARAM_EC_PUB_X, c));
		json_object_set_new(k, "y", tu_bn_member(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, c));
	} else {
		unsigned char raw[64];
		size_t len = sizeof(raw);

		EVP_PKEY_get_raw_public_key(pkey, raw, &len);
		json_object_set_new(k, "kty", json_string("OKP"));
		json_object_set_new(k, "crv", json_string(len == 32 ? "Ed25519" : "Ed448"));
		s = tu_b64(raw, len);
		json_object_set_new(k, "x", json_string(s));
		free(s);
	}
	return k;
}

/* Writes {"keys": keys} atomically (rename), so a reader never sees half a file. */
__attribute__((unused)) static void tu_write_jwks(const char *path, json_t *keys)
{
	char tmp[320];
	json_t *root = json_pack("{sO}", "keys", keys);

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_dump_file(root, tmp, JSON_INDENT(1)) || rename(tmp, path)) {
		perror("write jwks");
		exit(2);
	}
	json_decref(root);
}

__attribute__((unused)) static void tu_write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f)) {
		perror(path);
		exit(2);
	}
}

__attribute__((unused)) static void tu_write_pem(const char *path, EVP_PKEY *pkey)
{
	FILE *f = fopen(path, "w");

	if (!f || !PEM_write_PUBKEY(f, pkey) || fclose(f)) {
		perror(path);
		exit(2);
	}
}

/* Parses config JSON text; returns the auth config and leaves error lines in errs. */
__attribute__((unused)) static struct auth_config *
tu_config(const char *text, struct cfg_errs *errs, json_t **root_out)
{
	json_error_t jerr;
	json_t *root = json_loads(text, 0, &jerr);
	struct auth_config *a;

	if (!root) {
		fprintf(stderr, "bad test config: %s\n%s\n", jerr.text, text);
		exit(2);
	}
	a = auth_config_parse(json_object_get(root, "auth"), json_object_get(root, "consumers"),
			      errs);
	if (root_out)
		*root_out = root;
	else
		json_decref(root);
	return a;
}

struct tu_req {
	struct http_request req;
	char *owned[8];
	int nowned;
};

__attribute__((unused)) static void tu_req_init(struct tu_req *r, const char *query)
{
	memset(&r->req, 0, sizeof(r->req));
	r->req.method = HTTP_GET;
	r->req.path.p = "/";
	r->req.path.len = 1;
	r->req.query.p = query ? query : "";
	r->req.query.len = query ? strlen(query) : 0;
	r->nowned = 0;
}

__attribute__((unused)) static void tu_req_free(struct tu_req *r)
{
	while (r->nowned)
		free(r->owned[--r->nowned]);
}

__attribute__((unused)) static void tu_req_add(struct tu_req *r, const char *name,
					       const char *value)
{
	struct http_header *h = &r->req.headers[r->req.nheaders];

	h->name.p = name;
	h->name.len = strlen(name);
	h->value.p = value;
	h->value.len = strlen(value);
	r->req.nheaders++;
}

__attribute__((unused)) static void tu_req_bearer(struct tu_req *r, const char *token)
{
	char *slot = malloc(strlen(token) + 8);

	sprintf(slot, "Bearer %s", token);
	r->owned[r->nowned++] = slot;
	tu_req_add(r, "Authorization", slot);
}

__attribute__((unused)) static const char *tu_forward(const struct auth_result *res,
						      const char *name)
{
	int i;

	for (i = 0; i < res->nforward; i++)
		if (!strcasecmp(res->forward[i].name, name))
			return res->forward[i].value;
	return NULL;
}

#endif
