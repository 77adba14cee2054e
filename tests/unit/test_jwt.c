/* JWT/JWS verification, JWKS loading and reloading, the verified-token cache. */
#include <openssl/rand.h>
#include <pthread.h>

#include "auth/jwks.h"
#include "check.h"
#include "test_auth_util.h"

#define NOW 1700000000

static EVP_PKEY *k_rsa, *k_p256, *k_p384, *k_p521, *k_ed25519, *k_ed448;
static unsigned char hs_secret[64], hs32[32];

static const struct {
	const char *alg, *kid;
} algs[] = {
    {"HS256", "hs"},	  {"HS384", "hs"},    {"HS512", "hs"},	 {"RS256", "rsa"},
    {"RS384", "rsa"},	  {"RS512", "rsa"},   {"PS256", "rsa"},	 {"PS384", "rsa"},
    {"PS512", "rsa"},	  {"ES256", "p256"},  {"ES384", "p384"}, {"ES512", "p521"},
    {"EdDSA", "ed25519"}, {"EdDSA", "ed448"},
};

static EVP_PKEY *key_for(const char *kid)
{
	if (!strcmp(kid, "rsa"))
		return k_rsa;
	if (!strcmp(kid, "p256"))
		return k_p256;
	if (!strcmp(kid, "p384"))
		return k_p384;
	if (!strcmp(kid, "p521"))
		return k_p521;
	if (!strcmp(kid, "ed25519"))
		return k_ed25519;
	if (!strcmp(kid, "ed448"))
		return k_ed448;
	return NULL;
}

static json_t *all_keys(const char *skip_kid)
{
	static const char *const kids[] = {"rsa", "p256", "p384", "p521", "ed25519", "ed448"};
	json_t *keys = json_array();
	size_t i;

	for (i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		if (!skip_kid || strcmp(skip_kid, kids[i]))
			json_array_append_new(keys, tu_jwk(key_for(kids[i]), NULL, 0, kids[i]));
	json_array_append_new(keys, tu_jwk(NULL, hs_secret, sizeof(hs_secret), "hs"));
	json_array_append_new(keys, tu_jwk(NULL, hs32, sizeof(hs32), "hs32"));
	return keys;
}

static void write_all_keys(const char *skip_kid)
{
	json_t *keys = all_keys(skip_kid);

	tu_write_jwks(tu_path("jwks.json"), keys);
	json_decref(keys);
}

static char *sign(const char *alg, const char *kid, const char *payload)
{
	EVP_PKEY *k = key_for(kid);

	if (!strcmp(kid, "hs32"))
		return tu_token(alg, kid, payload, NULL, hs32, sizeof(hs32));
	return tu_token(alg, kid, payload, k, hs_secret, sizeof(hs_secret));
}

static char payload_buf[16384];

static const char *payload(const char *extra)
{
	snprintf(payload_buf, sizeof(payload_buf),
		 "{\"sub\":\"alice\",\"iss\":\"https://iss.test\",\"aud\":\"api\",\"exp\":%d,"
		 "\"iat\":%d,\"email\":\"alice@example.com\"%s%s}",
		 NOW + 600, NOW, extra && *extra ? "," : "", extra ? extra : "");
	return payload_buf;
}

static struct auth_config *std_config(const char *extra_jwt)
{
	char text[2048];
	struct cfg_errs errs = {0};
	struct auth_config *a;

	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"HS256\", "
		 "\"HS384\", \"HS512\", \"RS256\", \"RS384\", \"RS512\", \"PS256\", \"PS384\", "
		 "\"PS512\", \"ES256\", \"ES384\", \"ES512\", \"EdDSA\"], \"issuer\": "
		 "\"https://iss.test\", \"audience\": \"api\", \"leeway_s\": 30, "
		 "\"forward_claims\": {\"sub\": \"X-User-Id\", \"email\": \"X-Email\"}%s%s}}}",
		 tu_path("jwks.json"), extra_jwt ? ", " : "", extra_jwt ? extra_jwt : "");
	a = tu_config(text, &errs, NULL);
	if (!a)
		fprintf(stderr, "config errors:\n%s", errs.text);
	cfg_errs_free(&errs);
	return a;
}

static struct route_auth *route(const struct auth_config *a, const char *json)
{
	struct cfg_errs errs = {0};
	json_t *j = json_loads(json, 0, NULL);
	struct route_auth *ra = route_auth_parse(j, NULL, "routes[0]", a, &errs);

	if (errs.count)
		fprintf(stderr, "route errors:\n%s", errs.text);
	cfg_errs_free(&errs);
	json_decref(j);
	return ra;
}

static struct auth_config *A;
static struct route_auth *RA;

/* Runs one request with token (NULL: no Authorization) and returns the reason. */
static enum auth_reason run_with(struct auth_config *a, struct route_auth *ra, struct jwt_cache *c,
				 const char *token, time_t now, struct auth_result *res)
{
	struct tu_req r;
	enum auth_reason reason;

	tu_req_init(&r, NULL);
	if (token)
		tu_req_bearer(&r, token);
	auth_check(a, ra, c, &r.req, now, res);
	reason = res->reason;
	CHECK_EQ(res->status, auth_reason_status(reason));
	tu_req_free(&r);
	return reason;
}

static enum auth_reason run(const char *token)
{
	struct auth_result res;
	enum auth_reason r = run_with(A, RA, NULL, token, NOW, &res);

	auth_result_release(&res);
	return r;
}

/* Signs with one algorithm, checks the result, frees the token. */
static enum auth_reason run_signed(const char *alg, const char *kid, const char *pl)
{
	char *t = sign(alg, kid, pl);
	enum auth_reason r = run(t);

	free(t);
	return r;
}

static void test_b64url(void)
{
	unsigned char out[16];
	size_t n;
	char enc[16];

	CHECK(b64url_decode("aGk", 3, out, &n) && n == 2 && !memcmp(out, "hi", 2));
	CHECK(b64url_decode("", 0, out, &n) && n == 0);
	CHECK(b64url_decode("-_-_", 4, out, &n) && n == 3);
	CHECK(!b64url_decode("aGk=", 4, out, &n)); /* padding */
	CHECK(!b64url_decode("a+k", 3, out, &n));  /* standard alphabet */
	CHECK(!b64url_decode("a/k", 3, out, &n));
	CHECK(!b64url_decode("aG k", 4, out, &n));  /* whitespace */
	CHECK(!b64url_decode("aGkxa", 5, out, &n)); /* 1 mod 4 */
	CHECK(!b64url_decode("aGl", 3, out, &n));   /* non-zero unused bits */
	CHECK(!b64url_decode("a\0k", 3, out, &n));
	CHECK_EQ(b64url_encode((const unsigned char *)"hi", 2, enc), 3);
	CHECK_STR(enc, "aGk");
	CHECK_EQ(b64url_encode((const unsigned char *)"\xfb\xff", 2, enc), 3);
	CHECK_STR(enc, "-_8");
}

static void test_every_algorithm(void)
{
	struct auth_result res;
	size_t i;

	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		char *t = sign(algs[i].alg, algs[i].kid, payload(NULL));

		if (run_with(A, RA, NULL, t, NOW, &res) != AUTH_OK)
			fprintf(stderr, "  algorithm %s/%s rejected: %s\n", algs[i].alg,
				algs[i].kid, auth_reason_name(res.reason));
		CHECK_EQ(res.reason, AUTH_OK);
		CHECK_EQ(res.status, 0);
		CHECK_STR(res.consumer, "alice");
		CHECK_STR(tu_forward(&res, "X-User-Id"), "alice");
		CHECK_STR(tu_forward(&res, "X-Email"), "alice@example.com");
		CHECK_STR(res.claim(&res, "sub"), "alice");
		CHECK_STR(res.claim(&res, "iat"), "1700000000");
		CHECK(res.claim(&res, "nope") == NULL);
		auth_result_release(&res);
		CHECK(res.priv == NULL);
		free(t);
	}
}

static void test_alg_none(void)
{
	static const char *const nones[] = {"none", "None", "NONE", "nOnE"};
	char header[128], *h, *p, tok[1024];
	size_t i;

	for (i = 0; i < 4; i++) {
		snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"kid\":\"rsa\"}", nones[i]);
		h = tu_b64s(header);
		p = tu_b64s(payload(NULL));
		snprintf(tok, sizeof(tok), "%s.%s.", h, p); /* the classic empty signature */
		CHECK_EQ(run(tok), AUTH_MALFORMED);
		snprintf(tok, sizeof(tok), "%s.%s.AAAA", h, p);
		CHECK_EQ(run(tok), AUTH_BAD_ALG);
		free(h);
		free(p);
	}
}

static void test_alg_not_allowed(void)
{
	struct cfg_errs errs = {0};
	char text[512], *t;
	struct auth_config *a;
	struct route_auth *ra;
	struct auth_result res;

	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"RS256\"]}}}",
		 tu_path("jwks.json"));
	a = tu_config(text, &errs, NULL);
	CHECK(a != NULL);
	ra = route(a, "{\"jwt\": {}}");
	t = sign("ES256", "p256", payload(NULL));
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_BAD_ALG);
	free(t);
	t = sign("PS256", "rsa", payload(NULL)); /* same key type, other algorithm */
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_BAD_ALG);
	free(t);
	t = sign("RS256", "rsa", payload(NULL));
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	/* Without "algorithms": public-key algorithms only, never HMAC. */
	route_auth_free(ra);
	auth_config_free(a);
	snprintf(text, sizeof(text), "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\"}}}",
		 tu_path("jwks.json"));
	a = tu_config(text, &errs, NULL);
	ra = route(a, "{\"jwt\": {}}");
	t = sign("HS256", "hs", payload(NULL));
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_BAD_ALG);
	free(t);
	t = sign("ES384", "p384", payload(NULL));
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);
	cfg_errs_free(&errs);
}

static void test_key_type_confusion(void)
{
	unsigned char pem[4096];
	BIO *bio = BIO_new(BIO_s_mem());
	char *t;
	int len;

	/* The classic attack: HMAC keyed with the RSA public key the attacker can download. */
	PEM_write_bio_PUBKEY(bio, k_rsa);
	len = BIO_read(bio, pem, sizeof(pem));
	BIO_free(bio);
	t = tu_token("HS256", "rsa", payload(NULL), NULL, pem, len);
	CHECK_EQ(run(t), AUTH_BAD_ALG);
	free(t);
	t = tu_token("HS256", "p256", payload(NULL), NULL, pem, len);
	CHECK_EQ(run(t), AUTH_BAD_ALG);
	free(t);
	/* The header names one key, the signature is made with a key that fits the alg. */
	t = tu_token("ES256", "p384", payload(NULL), k_p256, NULL, 0); /* curve mismatch */
	CHECK_EQ(run(t), AUTH_BAD_ALG);
	free(t);
	t = tu_token("RS256", "p256", payload(NULL), k_rsa, NULL, 0);
	CHECK_EQ(run(t), AUTH_BAD_ALG);
	free(t);
	t = tu_token("EdDSA", "rsa", payload(NULL), k_ed25519, NULL, 0);
	CHECK_EQ(run(t), AUTH_BAD_ALG);
	free(t);
	t = tu_token("ES256", "ed25519", payload(NULL), k_p256, NULL, 0);
	CHECK_EQ(run(t), AUTH_BAD_ALG);
	free(t);
	t = tu_token("RS256", "hs", payload(NULL), k_rsa, NULL, 0);
	CHECK_EQ(run(t), AUTH_BAD_ALG);
	free(t);
	/* An HMAC secret shorter than the hash output (RFC 7518 3.2). */
	CHECK_EQ(run_signed("HS512", "hs32", payload(NULL)), AUTH_BAD_ALG);
	CHECK_EQ(run_signed("HS256", "hs32", payload(NULL)), AUTH_OK);
}

static void test_kid(void)
{
	char header[1024], *t, *jwk;
	json_t *j;

	t = tu_token("RS256", "nope", payload(NULL), k_rsa, NULL, 0);
	CHECK_EQ(run(t), AUTH_UNKNOWN_KID);
	free(t);
	t = tu_token("RS256", NULL, payload(NULL), k_rsa, NULL, 0);
	CHECK_EQ(run(t), AUTH_UNKNOWN_KID); /* several keys: no guessing */
	free(t);
	/* A key embedded in the header is never trusted. */
	j = tu_jwk(k_rsa, NULL, 0, NULL);
	jwk = json_dumps(j, JSON_COMPACT);
	snprintf(header, sizeof(header), "{\"alg\":\"RS256\",\"jwk\":%s}", jwk);
	t = tu_token_raw(header, payload(NULL), "RS256", k_rsa, NULL, 0);
	CHECK_EQ(run(t), AUTH_UNKNOWN_KID);
	free(t);
	free(jwk);
	json_decref(j);
	snprintf(header, sizeof(header), "{\"alg\":\"RS256\",\"kid\":7}");
	t = tu_token_raw(header, payload(NULL), "RS256", k_rsa, NULL, 0);
	CHECK_EQ(run(t), AUTH_MALFORMED);
	free(t);
}

static void test_crit(void)
{
	char *t = tu_token_raw("{\"alg\":\"RS256\",\"kid\":\"rsa\",\"crit\":[\"exp\"],\"exp\":1}",
			       payload(NULL), "RS256", k_rsa, NULL, 0);

	CHECK_EQ(run(t), AUTH_CRIT);
	free(t);
	t = tu_token_raw("{\"alg\":\"ES256\",\"kid\":\"p256\",\"b64\":false,\"crit\":[\"b64\"]}",
			 payload(NULL), "ES256", k_p256, NULL, 0);
	CHECK_EQ(run(t), AUTH_CRIT);
	free(t);
}

static char *replace_segment(const char *tok, int seg, const char *with)
{
	const char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
	char *out = malloc(strlen(tok) + strlen(with) + 4);

	if (seg == 0)
		sprintf(out, "%s%s", with, d1);
	else if (seg == 1)
		sprintf(out, "%.*s.%s%s", (int)(d1 - tok), tok, with, d2);
	else
		sprintf(out, "%.*s.%s", (int)(d2 - tok), tok, with);
	return out;
}

static void test_bad_base64url(void)
{
	char *t = sign("RS256", "rsa", payload(NULL)), *bad, *seg;
	const char *d2 = strrchr(t, '.');
	size_t siglen = strlen(d2 + 1);

	CHECK_EQ(run(t), AUTH_OK);
	/* Padding on the signature (256 bytes = 342 chars + "==" in padded base64). */
	seg = malloc(siglen + 3);
	sprintf(seg, "%s==", d2 + 1);
	bad = replace_segment(t, 2, seg);
	CHECK_EQ(run(bad), AUTH_MALFORMED);
	free(bad);
	/* Standard-alphabet characters. */
	strcpy(seg, d2 + 1);
	seg[10] = '+';
	bad = replace_segment(t, 2, seg);
	CHECK_EQ(run(bad), AUTH_MALFORMED);
	free(bad);
	/* Same bytes, other spelling: non-zero unused bits in the last character. */
	strcpy(seg, d2 + 1);
	seg[siglen - 1] = seg[siglen - 1] == 'A' ? 'B' : seg[siglen - 1] == 'Q' ? 'R' : 'B';
	bad = replace_segment(t, 2, seg);
	CHECK_EQ(run(bad), AUTH_MALFORMED);
	free(bad);
	free(seg);
	/* Header with padding and with a space. */
	seg = tu_b64s("{\"alg\":\"RS256\",\"kid\":\"rsa\"}");
	seg = realloc(seg, strlen(seg) + 3);
	strcat(seg, "=");
	bad = replace_segment(t, 0, seg);
	CHECK_EQ(run(bad), AUTH_MALFORMED);
	free(bad);
	free(seg);
	bad = replace_segment(t, 1, "eyJzdWIiOiJhIn0 ");
	CHECK_EQ(run(bad), AUTH_MALFORMED);
	free(bad);
	free(t);
}

static void test_size_limit(void)
{
	char extra[9100], *t;

	memset(extra, 0, sizeof(extra));
	snprintf(extra, sizeof(extra), "\"pad\":\"%0*d\"", 8000, 0);
	t = sign("ES256", "p256", payload(extra));
	CHECK(strlen(t) > 8192);
	CHECK_EQ(run(t), AUTH_TOKEN_TOO_LARGE);
	free(t);
	snprintf(extra, sizeof(extra), "\"pad\":\"%0*d\"", 5000, 0);
	CHECK_EQ(run_signed("ES256", "p256", payload(extra)), AUTH_OK);
}

static void test_times(void)
{
	char pl[512];

#define TIMED(fmt, ...)                                                                            \
	(snprintf(pl, sizeof(pl),                                                                  \
		  "{\"sub\":\"a\",\"iss\":\"https://iss.test\",\"aud\":\"api\"," fmt "}",          \
		  __VA_ARGS__),                                                                    \
	 run_signed("ES256", "p256", pl))
	CHECK_EQ(TIMED("\"exp\":%d", NOW - 31), AUTH_EXPIRED);
	CHECK_EQ(TIMED("\"exp\":%d", NOW - 30), AUTH_EXPIRED); /* exp + leeway == now */
	CHECK_EQ(TIMED("\"exp\":%d", NOW - 29), AUTH_OK);      /* within leeway */
	CHECK_EQ(TIMED("\"exp\":%d.5", NOW - 30), AUTH_OK);
	CHECK_EQ(TIMED("\"exp\":%d", NOW + 3600), AUTH_OK);
	CHECK_EQ(TIMED("\"exp\":\"%d\"", NOW + 3600), AUTH_MALFORMED);
	CHECK_EQ(TIMED("\"exp\":%d,\"nbf\":%d", NOW + 3600, NOW + 31), AUTH_NOT_YET_VALID);
	CHECK_EQ(TIMED("\"exp\":%d,\"nbf\":%d", NOW + 3600, NOW + 30), AUTH_OK);
	CHECK_EQ(TIMED("\"exp\":%d,\"iat\":%d", NOW + 3600, NOW + 100), AUTH_NOT_YET_VALID);
	CHECK_EQ(TIMED("\"exp\":%d,\"iat\":%d", NOW + 3600, NOW - 100000), AUTH_OK);
	CHECK_EQ(TIMED("\"exp\":%d,\"nbf\":null", NOW + 3600), AUTH_MALFORMED);
	CHECK_EQ(TIMED("\"exp\":%d", 0), AUTH_EXPIRED);
	CHECK_EQ(TIMED("\"exp\":%s", "1e300"), AUTH_OK);
	CHECK_EQ(TIMED("\"exp\":%s", "-1e300"), AUTH_EXPIRED);
	/* No exp: accepted unless require_exp. */
	CHECK_EQ(TIMED("\"iat\":%d", NOW), AUTH_OK);
#undef TIMED
}

static void test_require_exp(void)
{
	struct auth_config *a = std_config("\"require_exp\": true");
	struct route_auth *ra = route(a, "{\"jwt\": {}}");
	struct auth_result res;
	char *t =
	    sign("ES256", "p256", "{\"sub\":\"a\",\"iss\":\"https://iss.test\",\"aud\":\"api\"}");

	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_MALFORMED);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);
}

static void test_issuer_audience(void)
{
	char pl[512];

#define CLAIMS(fmt)                                                                                \
	(snprintf(pl, sizeof(pl), "{\"sub\":\"a\",\"exp\":%d," fmt "}", NOW + 600),                \
	 run_signed("EdDSA", "ed25519", pl))
	CHECK_EQ(CLAIMS("\"iss\":\"https://evil.test\",\"aud\":\"api\""), AUTH_BAD_ISSUER);
	CHECK_EQ(CLAIMS("\"iss\":\"https://iss.test/\",\"aud\":\"api\""), AUTH_BAD_ISSUER);
	CHECK_EQ(CLAIMS("\"aud\":\"api\""), AUTH_BAD_ISSUER);
	CHECK_EQ(CLAIMS("\"iss\":[\"https://iss.test\"],\"aud\":\"api\""), AUTH_BAD_ISSUER);
	CHECK_EQ(CLAIMS("\"iss\":\"https://iss.test\",\"aud\":\"other\""), AUTH_BAD_AUDIENCE);
	CHECK_EQ(CLAIMS("\"iss\":\"https://iss.test\""), AUTH_BAD_AUDIENCE);
	CHECK_EQ(CLAIMS("\"iss\":\"https://iss.test\",\"aud\":[\"x\",\"api\"]"), AUTH_OK);
	CHECK_EQ(CLAIMS("\"iss\":\"https://iss.test\",\"aud\":[\"x\",\"apix\"]"),
		 AUTH_BAD_AUDIENCE);
	CHECK_EQ(CLAIMS("\"iss\":\"https://iss.test\",\"aud\":[]"), AUTH_BAD_AUDIENCE);
#undef CLAIMS
}

static void test_malformed(void)
{
	char *t, *bad;

	t = tu_token_raw("{\"alg\":\"RS256\",\"kid\":\"rsa\"", payload(NULL), "RS256", k_rsa, NULL,
			 0);
	CHECK_EQ(run(t), AUTH_MALFORMED); /* truncated header JSON */
	free(t);
	t = tu_token_raw("[\"RS256\"]", payload(NULL), "RS256", k_rsa, NULL, 0);
	CHECK_EQ(run(t), AUTH_MALFORMED);
	free(t);
	/* Duplicate members: which "alg" would another parser have used? */
	t = tu_token_raw("{\"alg\":\"HS256\",\"kid\":\"hs\",\"alg\":\"RS256\"}", payload(NULL),
			 "HS256", NULL, hs_secret, sizeof(hs_secret));
	CHECK_EQ(run(t), AUTH_MALFORMED);
	free(t);
	t = tu_token_raw("{\"alg\":\"HS256\",\"kid\":\"hs\",\"kid\":\"rsa\"}", payload(NULL),
			 "HS256", NULL, hs_secret, sizeof(hs_secret));
	CHECK_EQ(run(t), AUTH_MALFORMED);
	free(t);
	CHECK_EQ(run_signed("RS256", "rsa", payload("\"sub\":\"admin\"")), AUTH_MALFORMED);
	CHECK_EQ(run_signed("RS256", "rsa", "{\"sub\":\"a\""), AUTH_MALFORMED);
	CHECK_EQ(run_signed("RS256", "rsa", "\"just a string\""), AUTH_MALFORMED);
	CHECK_EQ(run_signed("RS256", "rsa", "{\"sub\":\"a\\u0000b\"}"), AUTH_MALFORMED);
	CHECK_EQ(run("abc.def"), AUTH_MALFORMED);
	CHECK_EQ(run("abc.def.ghi.jkl"), AUTH_MALFORMED);
	CHECK_EQ(run("..."), AUTH_MALFORMED);
	CHECK_EQ(run(".."), AUTH_MALFORMED);
	t = sign("RS256", "rsa", payload(NULL));
	bad = malloc(strlen(t) + 10);
	sprintf(bad, "%s.x", t);
	CHECK_EQ(run(bad), AUTH_MALFORMED);
	free(bad);
	free(t);
}

static void test_bad_signature(void)
{
	size_t i, siglen;
	char *t, *bad, *seg;
	unsigned char *der;
	const char *d1;

	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		t = sign(algs[i].alg, algs[i].kid, payload(NULL));
		/* Another payload under the original signature. */
		seg = tu_b64s(payload("\"role\":\"admin\""));
		bad = replace_segment(t, 1, seg);
		CHECK_EQ(run(bad), AUTH_BAD_SIGNATURE);
		free(bad);
		free(seg);
		/* Signature one byte short (re-encoded, so still canonical base64url). */
		{
			const char *s = strrchr(t, '.') + 1;
			unsigned char raw[1024];
			size_t rawlen;

			CHECK(b64url_decode(s, strlen(s), raw, &rawlen));
			seg = tu_b64(raw, rawlen - 1);
			bad = replace_segment(t, 2, seg);
			CHECK_EQ(run(bad), AUTH_BAD_SIGNATURE);
			free(bad);
			free(seg);
		}
		free(t);
	}
	/* ECDSA in DER form instead of raw R||S. */
	t = sign("ES256", "p256", payload(NULL));
	d1 = strrchr(t, '.');
	bad = strndup(t, d1 - t);
	der = tu_sign("ES256", k_p256, NULL, 0, bad, &siglen, 1);
	seg = tu_b64(der, siglen);
	free(bad);
	bad = replace_segment(t, 2, seg);
	CHECK_EQ(run(bad), AUTH_BAD_SIGNATURE);
	free(bad);
	free(seg);
	free(der);
	free(t);
}

static void test_request_forms(void)
{
	struct auth_result res;
	struct tu_req r;
	char *t = sign("ES256", "p256", payload(NULL)), hdr[2048];

	CHECK_EQ(run(NULL), AUTH_MISSING);
	tu_req_init(&r, NULL);
	tu_req_add(&r, "Authorization", "Basic YWxpY2U6cHc=");
	auth_check(A, RA, NULL, &r.req, NOW, &res);
	CHECK_EQ(res.reason, AUTH_MISSING);
	CHECK_EQ(res.status, 401);
	tu_req_init(&r, NULL);
	tu_req_add(&r, "authorization", "Bearer");
	auth_check(A, RA, NULL, &r.req, NOW, &res);
	CHECK_EQ(res.reason, AUTH_MALFORMED);
	tu_req_init(&r, NULL);
	tu_req_add(&r, "Authorization", "BearerX abc");
	auth_check(A, RA, NULL, &r.req, NOW, &res);
	CHECK_EQ(res.reason, AUTH_MISSING);
	tu_req_init(&r, NULL);
	snprintf(hdr, sizeof(hdr), "bearer   %s", t);
	tu_req_add(&r, "AUTHORIZATION", hdr);
	auth_check(A, RA, NULL, &r.req, NOW, &res);
	CHECK_EQ(res.reason, AUTH_OK);
	auth_result_release(&res);
	/* Two Authorization headers: ambiguous. */
	tu_req_init(&r, NULL);
	tu_req_bearer(&r, t);
	tu_req_bearer(&r, t);
	auth_check(A, RA, NULL, &r.req, NOW, &res);
	CHECK_EQ(res.reason, AUTH_MALFORMED);
	CHECK_EQ(res.status, 401);
	tu_req_free(&r);
	free(t);
}

static void test_forward_injection(void)
{
	struct auth_result res;
	char *t;

	/* A claim that would split the header block must not be forwarded. */
	snprintf(payload_buf, sizeof(payload_buf),
		 "{\"sub\":\"alice\",\"iss\":\"https://iss.test\",\"aud\":\"api\",\"exp\":%d,"
		 "\"email\":\"a@x\\r\\nX-Admin: yes\"}",
		 NOW + 600);
	t = sign("ES256", "p256", payload_buf);
	CHECK_EQ(run_with(A, RA, NULL, t, NOW, &res), AUTH_MALFORMED);
	CHECK(res.priv == NULL);
	free(t);
	/* Non-string claims are rendered; absent claims add no header. */
	snprintf(payload_buf, sizeof(payload_buf),
		 "{\"sub\":42,\"iss\":\"https://iss.test\",\"aud\":\"api\",\"exp\":%d,"
		 "\"email\":[\"a@x\",\"b@y\"]}",
		 NOW + 600);
	t = sign("ES256", "p256", payload_buf);
	CHECK_EQ(run_with(A, RA, NULL, t, NOW, &res), AUTH_OK);
	CHECK_STR(tu_forward(&res, "X-User-Id"), "42");
	CHECK_STR(tu_forward(&res, "X-Email"), "a@x,b@y");
	CHECK_STR(res.consumer, "");
	auth_result_release(&res);
	free(t);
	t = sign("ES256", "p256", "{\"iss\":\"https://iss.test\",\"aud\":\"api\"}");
	CHECK_EQ(run_with(A, RA, NULL, t, NOW, &res), AUTH_OK);
	CHECK_EQ(res.nforward, 0);
	auth_result_release(&res);
	free(t);
}

static void test_cache_hit(void)
{
	struct jwt_cache *c = jwt_cache_new(64);
	struct route_auth *admin = route(A, "{\"jwt\": {\"roles\": [\"admin\"]}}");
	struct jwt_cache_stats st;
	struct auth_result res;
	char *t = sign("RS256", "rsa", payload(NULL));

	CHECK(c != NULL);
	CHECK_EQ(run_with(A, RA, c, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.verifications, 1);
	CHECK_EQ(st.hits, 0);
	CHECK_EQ(run_with(A, RA, c, t, NOW + 1, &res), AUTH_OK);
	CHECK_STR(tu_forward(&res, "X-User-Id"), "alice");
	CHECK_STR(res.claim(&res, "email"), "alice@example.com");
	auth_result_release(&res);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.verifications, 1);
	CHECK_EQ(st.hits, 1);
	/* Route policy still applies to cached claims. */
	CHECK_EQ(run_with(A, admin, c, t, NOW + 2, &res), AUTH_FORBIDDEN_ROLE);
	CHECK_EQ(res.status, 403);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.hits, 2);
	/* A tampered token hashes differently and is fully checked. */
	t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
	CHECK_EQ(run_with(A, RA, c, t, NOW, &res), AUTH_BAD_SIGNATURE);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.verifications, 2);
	route_auth_free(admin);
	jwt_cache_free(c);
	free(t);
}

static void test_cache_expiry(void)
{
	struct jwt_cache *c = jwt_cache_new(64);
	struct jwt_cache_stats st;
	struct auth_result res;
	char pl[256], *t;

	snprintf(pl, sizeof(pl),
		 "{\"sub\":\"a\",\"iss\":\"https://iss.test\",\"aud\":\"api\",\"exp\":%d}",
		 NOW + 60);
	t = sign("ES256", "p256", pl);
	CHECK_EQ(run_with(A, RA, c, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	CHECK_EQ(run_with(A, RA, c, t, NOW + 89, &res), AUTH_OK); /* exp + leeway not reached */
	auth_result_release(&res);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.hits, 1);
	CHECK_EQ(run_with(A, RA, c, t, NOW + 90, &res), AUTH_EXPIRED);
	CHECK_EQ(run_with(A, RA, c, t, NOW + 5000, &res), AUTH_EXPIRED);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.hits, 1);
	/* A clock stepping back before nbf - leeway must not be served from the cache. */
	free(t);
	snprintf(pl, sizeof(pl),
		 "{\"sub\":\"a\",\"iss\":\"https://iss.test\",\"aud\":\"api\",\"nbf\":%d}", NOW);
	t = sign("ES256", "p256", pl);
	CHECK_EQ(run_with(A, RA, c, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	CHECK_EQ(run_with(A, RA, c, t, NOW - 31, &res), AUTH_NOT_YET_VALID);
	jwt_cache_free(c);
	free(t);
}

static void test_cache_bounded(void)
{
	struct jwt_cache *c = jwt_cache_new(8);
	struct jwt_cache_stats st;
	struct auth_result res;
	char extra[64], *t;
	int i;

	for (i = 0; i < 40; i++) {
		snprintf(extra, sizeof(extra), "\"n\":%d", i);
		t = sign("HS256", "hs", payload(extra));
		CHECK_EQ(run_with(A, RA, c, t, NOW, &res), AUTH_OK);
		auth_result_release(&res);
		free(t);
	}
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.verifications, 40);
	CHECK(st.evictions >= 32);
	jwt_cache_free(c);
	CHECK(jwt_cache_new(0) == NULL);
}

static void test_cache_disabled(void)
{
	struct auth_config *a = std_config("\"cache_size\": 0");
	struct route_auth *ra = route(a, "{\"jwt\": {}}");
	struct jwt_cache *c = jwt_cache_new(16);
	struct jwt_cache_stats st;
	struct auth_result res;
	char *t = sign("ES256", "p256", payload(NULL));
	int i;

	CHECK_EQ(auth_cache_size(a), 0);
	CHECK_EQ(auth_cache_size(A), 4096);
	for (i = 0; i < 3; i++) {
		CHECK_EQ(run_with(a, ra, c, t, NOW, &res), AUTH_OK);
		auth_result_release(&res);
	}
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.hits, 0);
	CHECK_EQ(st.verifications, 3);
	jwt_cache_free(c);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);
}

static void test_reload_removes_key(void)
{
	struct auth_config *a = std_config(NULL);
	struct route_auth *ra = route(a, "{\"jwt\": {}}");
	struct jwt_cache *c = jwt_cache_new(64);
	struct jwt_cache_stats st;
	struct auth_result res;
	char *t = sign("RS256", "rsa", payload(NULL)), *e = sign("ES256", "p256", payload(NULL));
	uint64_t gen = auth_keyset_generation(a);

	CHECK(gen != 0);
	CHECK_EQ(run_with(a, ra, c, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	CHECK_EQ(run_with(a, ra, c, e, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	auth_config_tick(a); /* nothing changed on disk */
	CHECK_EQ(auth_keyset_generation(a), gen);
	CHECK_EQ(run_with(a, ra, c, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.hits, 1);

	write_all_keys("rsa");
	auth_config_tick(a);
	CHECK(auth_keyset_generation(a) != gen);
	CHECK_EQ(run_with(a, ra, c, t, NOW, &res), AUTH_UNKNOWN_KID);
	jwt_cache_get_stats(c, &st);
	CHECK_EQ(st.hits, 1);
	CHECK_EQ(st.verifications, 3);
	/* Keys still in the file keep working (re-verified once under the new keyset). */
	CHECK_EQ(run_with(a, ra, c, e, NOW, &res), AUTH_OK);
	auth_result_release(&res);

	/* A broken file keeps the keys we have. */
	gen = auth_keyset_generation(a);
	tu_write_text(tu_path("jwks.json"), "{\"keys\": [");
	auth_config_tick(a);
	auth_config_tick(a);
	CHECK_EQ(auth_keyset_generation(a), gen);
	CHECK_EQ(run_with(a, ra, NULL, e, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	/* A missing file too. */
	unlink(tu_path("jwks.json"));
	auth_config_tick(a);
	CHECK_EQ(auth_keyset_generation(a), gen);
	/* Back with the key: accepted again. */
	write_all_keys(NULL);
	auth_config_tick(a);
	CHECK(auth_keyset_generation(a) != gen);
	CHECK_EQ(run_with(a, ra, c, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	jwt_cache_free(c);
	free(t);
	free(e);
	route_auth_free(ra);
	auth_config_free(a);
}

static void test_pem_keys(void)
{
	struct cfg_errs errs = {0};
	struct auth_config *a;
	struct route_auth *ra;
	struct auth_result res;
	char text[1024], *t;

	tu_write_pem(tu_path("rsa.pem"), k_rsa);
	tu_write_pem(tu_path("p256.pem"), k_p256);
	tu_write_pem(tu_path("ed.pem"), k_ed25519);
	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"public_keys\": [{\"file\": \"%s\", \"kid\": \"r\"}, "
		 "{\"file\": \"%s\", \"kid\": \"e\"}, {\"file\": \"%s\", \"kid\": \"d\"}]}}}",
		 tu_path("rsa.pem"), tu_path("p256.pem"), tu_path("ed.pem"));
	a = tu_config(text, &errs, NULL);
	CHECK(a != NULL);
	ra = route(a, "{\"jwt\": {}}");
	t = tu_token("PS384", "r", payload(NULL), k_rsa, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	t = tu_token("ES256", "e", payload(NULL), k_p256, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	t = tu_token("EdDSA", "d", payload(NULL), k_ed25519, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);

	/* One key without kid: tokens with or without a kid use it. */
	snprintf(text, sizeof(text), "{\"auth\": {\"jwt\": {\"public_keys\": [\"%s\"]}}}",
		 tu_path("p256.pem"));
	a = tu_config(text, &errs, NULL);
	CHECK(a != NULL);
	ra = route(a, "{\"jwt\": {}}");
	t = tu_token("ES256", NULL, payload(NULL), k_p256, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	t = tu_token("ES256", "whatever", payload(NULL), k_p256, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	/* PEM file replaced with another key: tick picks it up. */
	tu_write_pem(tu_path("p256.pem.new"), k_ed25519);
	rename(tu_path("p256.pem.new"), tu_path("p256.pem"));
	auth_config_tick(a);
	t = tu_token("ES256", NULL, payload(NULL), k_p256, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_BAD_ALG);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);
	CHECK_EQ(errs.count, 0);
	cfg_errs_free(&errs);
}

static bool has_error(const struct cfg_errs *errs, const char *line)
{
	return errs->text && strstr(errs->text, line);
}

static void config_expect(const char *text, const char *line)
{
	struct cfg_errs errs = {0};
	struct auth_config *a = tu_config(text, &errs, NULL);

	CHECK(a == NULL);
	if (!has_error(&errs, line))
		fprintf(stderr, "  expected \"%s\" in:\n%s", line, errs.text ? errs.text : "");
	CHECK(has_error(&errs, line));
	auth_config_free(a);
	cfg_errs_free(&errs);
}

static void test_config_errors(void)
{
	char text[1024];
	EVP_PKEY *weak;
	json_t *keys;

	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"RS256\", "
		 "\"ES256\", \"RS999\", \"none\", 5]}}}",
		 tu_path("jwks.json"));
	config_expect(text, "auth.jwt.algorithms[2]: unknown algorithm \"RS999\"\n");
	config_expect(text, "auth.jwt.algorithms[3]: algorithm \"none\" is never accepted\n");
	config_expect(text, "auth.jwt.algorithms[4]: must be a string\n");
	config_expect("{\"auth\": {\"jwt\": {\"jwks_file\": \"/nonexistent/jwks.json\"}}}",
		      "auth.jwt.jwks_file: cannot open \"/nonexistent/jwks.json\"");
	config_expect("{\"auth\": {\"jwt\": {}}}",
		      "auth.jwt: needs \"jwks_file\" or \"public_keys\"\n");
	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"leeway\": 3, \"leeway_s\": -1, "
		 "\"forward_claims\": {\"sub\": \"Content-Length\", \"a\": \"bad header\", "
		 "\"b\": \"X-Consumer\"}}, \"api_keys\": {\"header\": \"\"}}}",
		 tu_path("jwks.json"));
	config_expect(text, "auth.jwt.leeway: unknown key\n");
	config_expect(text, "auth.jwt.leeway_s: must be between 0 and 3600\n");
	config_expect(text, "auth.jwt.forward_claims.sub: header \"Content-Length\" is reserved\n");
	config_expect(text, "auth.jwt.forward_claims.a: must be a header name");
	config_expect(text, "auth.jwt.forward_claims.b: header \"X-Consumer\" is reserved\n");
	config_expect(text, "auth.api_keys.header: invalid header name \"\"\n");
	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"public_keys\": [\"%s\", {\"file\": \"%s\"}]}}}",
		 tu_path("rsa.pem"), tu_path("jwks.json"));
	config_expect(text, "auth.jwt.public_keys[1]: \"");
	config_expect("{\"auth\": {\"jwt\": 5}}", "auth.jwt: must be an object\n");
	config_expect("{\"auth\": []}", "auth: must be an object\n");

	/* Bad keys in the JWKS file name the file and the key. */
	keys = json_pack("[{ss ss ss}]", "kty", "RSA", "n", "AQAB=", "e", "AQAB");
	tu_write_jwks(tu_path("bad.json"), keys);
	json_decref(keys);
	snprintf(text, sizeof(text), "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\"}}}",
		 tu_path("bad.json"));
	config_expect(text, "bad.json\": keys[0]: \"n\" is not valid base64url\n");
	keys = json_array();
	weak = tu_keygen("RSA1024");
	json_array_append_new(keys, tu_jwk(weak, NULL, 0, "weak"));
	EVP_PKEY_free(weak);
	tu_write_jwks(tu_path("bad.json"), keys);
	json_decref(keys);
	config_expect(text, "keys[0]: RSA key of 1024 bits is too short (minimum 2048)\n");
	keys = json_array();
	json_array_append_new(keys, tu_jwk(NULL, hs32, 16, "short"));
	tu_write_jwks(tu_path("bad.json"), keys);
	json_decref(keys);
	config_expect(text, "keys[0]: oct key of 16 bytes is too short (minimum 32)\n");
	keys = json_array();
	json_array_append_new(keys, tu_jwk(k_p256, NULL, 0, "same"));
	json_array_append_new(keys, tu_jwk(k_p384, NULL, 0, "same"));
	tu_write_jwks(tu_path("bad.json"), keys);
	json_decref(keys);
	config_expect(text, "keys[1]: duplicate \"kid\": \"same\"\n");
	/* A point that is not on the curve. */
	keys = json_array();
	json_array_append_new(keys, tu_jwk(k_p256, NULL, 0, "p"));
	json_object_set_new(json_array_get(keys, 0), "y",
			    json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"));
	tu_write_jwks(tu_path("bad.json"), keys);
	json_decref(keys);
	config_expect(text, "keys[0]: invalid EC public key (not a point on P-256)\n");
	keys = json_array();
	json_array_append_new(keys, tu_jwk(k_p256, NULL, 0, "p"));
	json_object_set_new(json_array_get(keys, 0), "alg", json_string("RS256"));
	tu_write_jwks(tu_path("bad.json"), keys);
	json_decref(keys);
	config_expect(text, "keys[0]: \"alg\": \"RS256\" does not fit this key\n");
	tu_write_text(tu_path("bad.json"), "{\"keys\": [], \"keys\": []}");
	config_expect(text, "bad.json\": invalid JSON at line 1");
}

/* Issuers that drop leading zero bytes of EC coordinates (PyJWT 2.6) still interoperate. */
/* keyset_from_jwks: the jwks_file rules on a document in memory, errors naming it. */
static void test_keyset_from_jwks(void)
{
	/* "k" is 32 bytes of 0x01..0x20 */
	static const char one[] = "{\"keys\": [{\"kty\": \"oct\", \"kid\": \"h\","
				  " \"k\": \"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA\"}]}";
	static const char dup[] = "{\"keys\": [{\"kty\": \"oct\", \"kid\": \"h\","
				  " \"k\": \"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA\"},"
				  " {\"kty\": \"oct\", \"kid\": \"h\","
				  " \"k\": \"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA\"}]}";
	char err[256] = "";
	struct keyset *ks = keyset_from_jwks(one, sizeof(one) - 1, "mem", err, sizeof(err));

	CHECK(ks && ks->nkeys == 1 && ks->keys[0].kind == JWK_OCT && ks->keys[0].secret_len == 32);
	CHECK(ks && keyset_find(ks, "h") == &ks->keys[0] && !keyset_find(ks, "other"));
	keyset_put(ks);
	CHECK(!keyset_from_jwks(dup, sizeof(dup) - 1, "mem", err, sizeof(err)));
	CHECK(strstr(err, "\"mem\": keys[1]: duplicate \"kid\"") == err);
	CHECK(!keyset_from_jwks(one, 10, "cut", err, sizeof(err)));
	CHECK(strstr(err, "\"cut\": invalid JSON") == err);
	CHECK(!keyset_from_jwks("{\"keys\": 1}", 11, "mem", err, sizeof(err)));
	CHECK(strstr(err, "\"keys\" must be an array") != NULL);
}

static void test_jwk_short_coordinates(void)
{
	struct cfg_errs errs = {0};
	struct auth_config *a;
	struct route_auth *ra;
	struct auth_result res;
	EVP_PKEY *k = NULL;
	BIGNUM *x = NULL;
	json_t *keys, *jwk;
	char text[512], *t, *xs;
	unsigned char buf[40];
	int i, len;

	for (i = 0; i < 5000; i++) {
		EVP_PKEY_free(k);
		BN_free(x);
		x = NULL;
		k = tu_keygen("P-256");
		EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x);
		if (BN_num_bytes(x) < 32)
			break;
	}
	CHECK(BN_num_bytes(x) < 32);
	len = BN_bn2bin(x, buf);
	xs = tu_b64(buf, len);
	jwk = tu_jwk(k, NULL, 0, "short");
	json_object_set_new(jwk, "x", json_string(xs));
	keys = json_array();
	json_array_append_new(keys, jwk);
	tu_write_jwks(tu_path("short.json"), keys);
	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"ES256\"]}}}",
		 tu_path("short.json"));
	a = tu_config(text, &errs, NULL);
	CHECK(a != NULL);
	ra = route(a, "{\"jwt\": {}}");
	t = tu_token("ES256", "short", payload(NULL), k, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);
	/* Longer than the curve allows: refused. */
	buf[0] = 1;
	memset(buf + 1, 0, 32);
	free(xs);
	xs = tu_b64(buf, 33);
	json_object_set_new(jwk, "x", json_string(xs));
	tu_write_jwks(tu_path("short.json"), keys);
	a = tu_config(text, &errs, NULL);
	CHECK(a == NULL);
	CHECK(has_error(&errs, "keys[0]: \"x\" and \"y\" must be at most 32 bytes for P-256\n"));
	json_decref(keys);
	free(xs);
	BN_free(x);
	EVP_PKEY_free(k);
	cfg_errs_free(&errs);
}

static void test_jwks_skips_foreign_keys(void)
{
	struct cfg_errs errs = {0};
	struct auth_config *a;
	struct route_auth *ra;
	struct auth_result res;
	char text[512], *t;
	json_t *keys = json_array(), *enc = tu_jwk(k_rsa, NULL, 0, "enc");

	/* Encryption keys and unknown key types are skipped, not fatal. */
	json_object_set_new(enc, "use", json_string("enc"));
	json_array_append_new(keys, enc);
	json_array_append_new(keys, json_pack("{ss ss}", "kty", "PQC", "kid", "future"));
	json_array_append_new(keys,
			      json_pack("{ss ss ss}", "kty", "OKP", "crv", "X25519", "x", "AAAA"));
	json_array_append_new(keys, tu_jwk(k_p521, NULL, 0, "sig"));
	tu_write_jwks(tu_path("mixed.json"), keys);
	json_decref(keys);
	snprintf(text, sizeof(text), "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\"}}}",
		 tu_path("mixed.json"));
	a = tu_config(text, &errs, NULL);
	CHECK(a != NULL);
	ra = route(a, "{\"jwt\": {}}");
	t = tu_token("RS256", "enc", payload(NULL), k_rsa, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_UNKNOWN_KID);
	free(t);
	t = tu_token("ES512", "sig", payload(NULL), k_p521, NULL, 0);
	CHECK_EQ(run_with(a, ra, NULL, t, NOW, &res), AUTH_OK);
	auth_result_release(&res);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);
	cfg_errs_free(&errs);
}

struct worker_arg {
	struct auth_config *a;
	struct route_auth *ra;
	const char *token;
	int ok, bad;
};

static void *verify_loop(void *p)
{
	struct worker_arg *w = p;
	struct jwt_cache *c = jwt_cache_new(32);
	struct auth_result res;
	struct tu_req r;
	int i;

	for (i = 0; i < 3000; i++) {
		tu_req_init(&r, NULL);
		tu_req_bearer(&r, w->token);
		auth_check(w->a, w->ra, i % 2 ? c : NULL, &r.req, NOW, &res);
		if (res.reason == AUTH_OK)
			w->ok++;
		else
			w->bad++;
		auth_result_release(&res);
		tu_req_free(&r);
	}
	jwt_cache_free(c);
	return NULL;
}

/* Workers verify while the main thread keeps swapping keysets (run under ASan/TSan). */
static void test_concurrent_reload(void)
{
	struct auth_config *a = std_config(NULL);
	struct route_auth *ra = route(a, "{\"jwt\": {}}");
	char *t = sign("HS256", "hs", payload(NULL));
	struct worker_arg w[2] = {{a, ra, t, 0, 0}, {a, ra, t, 0, 0}};
	pthread_t th[2];
	uint64_t gen = auth_keyset_generation(a);
	int i;

	for (i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, verify_loop, &w[i]);
	for (i = 0; i < 30; i++) {
		write_all_keys(i % 2 ? "rsa" : "p256");
		auth_config_tick(a);
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK(auth_keyset_generation(a) >= gen + 30);
	CHECK_EQ(w[0].ok + w[1].ok, 6000);
	CHECK_EQ(w[0].bad + w[1].bad, 0);
	write_all_keys(NULL);
	free(t);
	route_auth_free(ra);
	auth_config_free(a);
}

int main(void)
{
	tu_mkdir();
	k_rsa = tu_keygen("RSA");
	k_p256 = tu_keygen("P-256");
	k_p384 = tu_keygen("P-384");
	k_p521 = tu_keygen("P-521");
	k_ed25519 = tu_keygen("ED25519");
	k_ed448 = tu_keygen("ED448");
	RAND_bytes(hs_secret, sizeof(hs_secret));
	RAND_bytes(hs32, sizeof(hs32));
	write_all_keys(NULL);
	A = std_config(NULL);
	if (!A)
		return 2;
	RA = route(A, "{\"jwt\": {}}");

	RUN(test_b64url);
	RUN(test_every_algorithm);
	RUN(test_alg_none);
	RUN(test_alg_not_allowed);
	RUN(test_key_type_confusion);
	RUN(test_kid);
	RUN(test_crit);
	RUN(test_bad_base64url);
	RUN(test_size_limit);
	RUN(test_times);
	RUN(test_require_exp);
	RUN(test_issuer_audience);
	RUN(test_malformed);
	RUN(test_bad_signature);
	RUN(test_request_forms);
	RUN(test_forward_injection);
	RUN(test_cache_hit);
	RUN(test_cache_expiry);
	RUN(test_cache_bounded);
	RUN(test_cache_disabled);
	RUN(test_reload_removes_key);
	RUN(test_pem_keys);
	RUN(test_config_errors);
	RUN(test_jwk_short_coordinates);
	RUN(test_keyset_from_jwks);
	RUN(test_jwks_skips_foreign_keys);
	RUN(test_concurrent_reload);

	route_auth_free(RA);
	auth_config_free(A);
	EVP_PKEY_free(k_rsa);
	EVP_PKEY_free(k_p256);
	EVP_PKEY_free(k_p384);
	EVP_PKEY_free(k_p521);
	EVP_PKEY_free(k_ed25519);
	EVP_PKEY_free(k_ed448);
	tu_rmdir();
	return CHECK_DONE();
}
