/* Token introspection: form encoding, the IdP request and answer, settings, the per-worker
 * cache (expiry, generations, negative answers, bounded size), flights (one call for
 * concurrent misses, every waiter woken), and auth_check_ex with an introspector. */
#include <openssl/evp.h>

#include "auth/auth_internal.h"
#include "auth/introspect.h"
#include "check.h"
#include "test_auth_util.h"

#define NOW 1700000000

static struct introspection_config *parse_ok(const char *text)
{
	struct cfg_errs errs = {0};
	json_t *j = json_loads(text, 0, NULL);
	struct introspection_config *ic = introspection_parse(j, "auth.introspection", &errs);

	if (!ic)
		fprintf(stderr, "unexpected errors:\n%s", errs.text ? errs.text : "");
	json_decref(j);
	cfg_errs_free(&errs);
	return ic;
}

static void parse_err(const char *text, const char *line)
{
	struct cfg_errs errs = {0};
	json_t *j = json_loads(text, 0, NULL);
	struct introspection_config *ic = introspection_parse(j, "auth.introspection", &errs);

	CHECK(ic == NULL);
	if (!errs.text || !strstr(errs.text, line))
		fprintf(stderr, "  expected \"%s\" in:\n%s", line, errs.text ? errs.text : "");
	CHECK(errs.text && strstr(errs.text, line));
	introspection_free(ic);
	json_decref(j);
	cfg_errs_free(&errs);
}

static void test_form_encode(void)
{
	char out[64];
	const char *s = "a b&c=d/\xc3\xa9~-._*+";

	CHECK_EQ(intro_form_encode(s, strlen(s), out, sizeof(out)), 30);
	CHECK_STR(out, "a+b%26c%3Dd%2F%C3%A9%7E-._*%2B");
	CHECK_EQ(intro_form_encode("abc", 3, out, 3), -1);
	CHECK_EQ(intro_form_encode("%", 1, out, 3), -1);
	CHECK_EQ(intro_form_encode("%", 1, out, 4), 3);
	CHECK_STR(out, "%25");
}

static void test_settings(void)
{
	struct introspection_config *ic =
	    parse_ok("{\"url\": \"http://127.0.0.1:9000/oauth2/introspect?x=1\", \"client_id\": "
		     "\"gw client\", \"client_secret\": \"s3:cr&t\"}");
	unsigned char raw[64];
	char want[128];
	int n;

	CHECK(ic != NULL);
	if (!ic)
		return;
	CHECK_STR(ic->path, "/oauth2/introspect?x=1");
	CHECK_STR(ic->host, "127.0.0.1:9000");
	CHECK_STR(ic->target.address_text, "127.0.0.1:9000");
	CHECK_EQ(ic->timeout_ms, 500);
	CHECK_EQ(ic->cache_ttl_s, 60);
	CHECK_EQ(ic->client_auth, INTRO_AUTH_BASIC);
	CHECK(ic->target.state != NULL);
	CHECK_EQ(ic->upstream.ntargets, 1);
	/* RFC 6749 2.3.1: each part form-encoded before base64 */
	n = EVP_EncodeBlock(raw, (const unsigned char *)"gw+client:s3%3Acr%26t", 21);
	snprintf(want, sizeof(want), "Authorization: Basic %.*s\r\n", n, raw);
	CHECK_STR(ic->basic_header, want);
	introspection_free(ic);

	ic = parse_ok("{\"url\": \"http://[::1]/i\", \"client_id\": \"a\", \"client_secret\": "
		      "\"b\", \"client_auth\": \"post\", \"timeout_ms\": 50, \"cache_ttl_s\": 0}");
	CHECK(ic != NULL);
	if (!ic)
		return;
	CHECK_STR(ic->target.address_text, "[::1]:80");
	CHECK_STR(ic->path, "/i");
	CHECK(ic->basic_header == NULL);
	CHECK_EQ(ic->timeout_ms, 50);
	introspection_free(ic);

	ic = parse_ok("{\"url\": \"http://10.0.0.1\", \"client_id\": \"a\", \"client_secret\": "
		      "\"b\"}");
	CHECK(ic && !strcmp(ic->path, "/") && !strcmp(ic->target.address_text, "10.0.0.1:80"));
	CHECK(ic && !ic->tls && !ic->server_name);
	introspection_free(ic);

	/* https: a verifying context, the host's name (an IP: its IP SAN) unless told */
	ic = parse_ok("{\"url\": \"https://[::1]/i\", \"client_id\": \"a\", \"client_secret\": "
		      "\"b\"}");
	CHECK(ic && ic->tls && !strcmp(ic->server_name, "::1") &&
	      !strcmp(ic->target.address_text, "[::1]:443"));
	introspection_free(ic);
	ic = parse_ok("{\"url\": \"https://10.0.0.1:8443/i\", \"client_id\": \"a\", "
		      "\"client_secret\": \"b\", \"server_name\": \"idp.example\"}");
	CHECK(ic && ic->tls && !strcmp(ic->server_name, "idp.example") &&
	      !strcmp(ic->host, "10.0.0.1:8443"));
	introspection_free(ic);
}

static void test_settings_errors(void)
{
	parse_err(
	    "{\"url\": \"https://127.0.0.1/i\", \"client_id\": \"a\", \"client_secret\": "
	    "\"b\", \"ca_file\": \"/nonexistent/ca.pem\"}",
	    "auth.introspection.ca_file: cannot load CA certificates from /nonexistent/ca.pem");
	parse_err("{\"url\": \"http://127.0.0.1/i\", \"client_id\": \"a\", \"client_secret\": "
		  "\"b\", \"server_name\": \"idp\"}",
		  "auth.introspection.server_name: only for an https:// url");
	parse_err("{\"url\": \"http://idp.example/i\", \"client_id\": \"a\", \"client_secret\": "
		  "\"b\"}",
		  "auth.introspection.url: the host must be an IP address");
	parse_err("{\"url\": \"ftp://1.2.3.4/\", \"client_id\": \"a\", \"client_secret\": \"b\"}",
		  "auth.introspection.url: must be an http:// or https:// URL");
	parse_err("{\"url\": \"http://u:p@1.2.3.4/\", \"client_id\": \"a\", \"client_secret\": "
		  "\"b\"}",
		  "auth.introspection.url: must be http(s)://ADDRESS");
	parse_err("{\"client_id\": \"a\", \"client_secret\": \"b\"}",
		  "auth.introspection.url: required");
	parse_err("{\"url\": \"http://1.2.3.4/\", \"client_secret\": \"b\"}",
		  "auth.introspection.client_id: required");
	parse_err("{\"url\": \"http://1.2.3.4/\", \"client_id\": \"a\", \"client_secret\": \"\"}",
		  "auth.introspection.client_secret: required");
	parse_err("{\"url\": \"http://1.2.3.4/\", \"client_id\": \"a\", \"client_secret\": \"b\", "
		  "\"client_auth\": \"jwt\"}",
		  "auth.introspection.client_auth");
	parse_err("{\"url\": \"http://1.2.3.4/\", \"client_id\": \"a\", \"client_secret\": \"b\", "
		  "\"timeout_ms\": 0}",
		  "auth.introspection.timeout_ms");
	parse_err("{\"url\": \"http://1.2.3.4/\", \"client_id\": \"a\", \"client_secret\": \"b\", "
		  "\"ttl\": 3}",
		  "auth.introspection.ttl");
}

static void test_request_body(void)
{
	struct introspection_config *ic = parse_ok(
	    "{\"url\": \"http://127.0.0.1:9/i\", \"client_id\": \"c id\", \"client_secret\": "
	    "\"p&w\", \"client_auth\": \"post\"}");
	size_t n = 0;
	char *b;

	if (!ic)
		return;
	b = intro_request_body(ic, "tok=en+/", 8, &n);
	CHECK_STR(b, "token=tok%3Den%2B%2F&token_type_hint=access_token&client_id=c+id&"
		     "client_secret=p%26w");
	CHECK_EQ(n, strlen(b));
	free(b);
	ic->client_auth = INTRO_AUTH_BASIC;
	b = intro_request_body(ic, "abc", 3, &n);
	CHECK_STR(b, "token=abc&token_type_hint=access_token");
	free(b);
	introspection_free(ic);
}

static enum intro_status answer(int status, const char *body, int64_t *exp, json_t **claims)
{
	return intro_parse_response(status, body, strlen(body), NOW, claims, exp);
}

static void test_parse_response(void)
{
	json_t *claims;
	int64_t exp;
	char body[256];

	snprintf(body, sizeof(body), "{\"active\": true, \"sub\": \"bob\", \"exp\": %d}", NOW + 30);
	CHECK_EQ(answer(200, body, &exp, &claims), INTRO_ACTIVE);
	CHECK_EQ(exp, NOW + 30);
	CHECK_STR(json_string_value(json_object_get(claims, "sub")), "bob");
	json_decref(claims);
	CHECK_EQ(answer(200, "{\"active\": true}", &exp, &claims), INTRO_ACTIVE);
	CHECK_EQ(exp, 0);
	json_decref(claims);
	CHECK_EQ(answer(200, "{\"active\": false}", &exp, &claims), INTRO_INACTIVE);
	CHECK(claims == NULL);
	snprintf(body, sizeof(body), "{\"active\": true, \"exp\": %d}", NOW);
	CHECK_EQ(answer(200, body, &exp, &claims), INTRO_INACTIVE);
	CHECK_EQ(answer(200, "{\"active\": true, \"exp\": \"soon\"}", &exp, &claims),
		 INTRO_INACTIVE);
	CHECK_EQ(answer(500, "{\"active\": true}", &exp, &claims), INTRO_ERROR);
	CHECK_EQ(answer(200, "<html>", &exp, &claims), INTRO_ERROR);
	CHECK_EQ(answer(200, "[true]", &exp, &claims), INTRO_ERROR);
	CHECK_EQ(answer(200, "{\"active\": \"true\"}", &exp, &claims), INTRO_ERROR);
	CHECK_EQ(answer(200, "{\"sub\": \"x\"}", &exp, &claims), INTRO_ERROR);
	CHECK_EQ(answer(200, "{\"active\": true, \"active\": false}", &exp, &claims), INTRO_ERROR);
}

static void test_cache_lifetime(void)
{
	struct introspection_config ic = {.cache_ttl_s = 60};
	uint64_t t = 1000000;

	CHECK_EQ(intro_cache_until(&ic, INTRO_ACTIVE, 0, NOW, t), t + 60000);
	CHECK_EQ(intro_cache_until(&ic, INTRO_ACTIVE, NOW + 600, NOW, t), t + 60000);
	CHECK_EQ(intro_cache_until(&ic, INTRO_ACTIVE, NOW + 10, NOW, t), t + 9999);
	CHECK_EQ(intro_cache_until(&ic, INTRO_INACTIVE, 0, NOW, t), t + 5000);
	CHECK_EQ(intro_cache_until(&ic, INTRO_ERROR, 0, NOW, t), 0);
	ic.cache_ttl_s = 2;
	CHECK_EQ(intro_cache_until(&ic, INTRO_INACTIVE, 0, NOW, t), t + 2000);
	ic.cache_ttl_s = 0;
	CHECK_EQ(intro_cache_until(&ic, INTRO_ACTIVE, NOW + 10, NOW, t), 0);
}

static void digest_of(const char *tok, unsigned char d[INTRO_DIGEST_LEN])
{
	CHECK(intro_digest(tok, strlen(tok), d));
}

static void test_cache(void)
{
	struct intro_cache *c = intro_cache_new(16);
	unsigned char a[INTRO_DIGEST_LEN], b[INTRO_DIGEST_LEN];
	json_t *claims = json_pack("{s:b,s:s}", "active", 1, "sub", "bob"), *got;
	enum intro_status st;
	struct intro_cache_stats stats;

	digest_of("token-a", a);
	digest_of("token-b", b);
	CHECK(!intro_cache_lookup(c, a, 1, 100, &st, &got));
	intro_cache_insert(c, a, 1, INTRO_ACTIVE, claims, 100, 1100);
	intro_cache_insert(c, b, 1, INTRO_INACTIVE, NULL, 100, 600);
	CHECK(intro_cache_lookup(c, a, 1, 1099, &st, &got));
	CHECK_EQ(st, INTRO_ACTIVE);
	CHECK(got == claims);
	json_decref(got);
	CHECK(intro_cache_lookup(c, b, 1, 599, &st, &got));
	CHECK_EQ(st, INTRO_INACTIVE);
	CHECK(got == NULL);
	CHECK(!intro_cache_lookup(c, b, 1, 600, &st, &got)); /* negative answer expired */
	CHECK(!intro_cache_lookup(c, a, 2, 200, &st, &got)); /* another config */
	CHECK(!intro_cache_lookup(c, a, 1, 200, &st, &got)); /* and dropped by it */
	intro_cache_insert(c, a, 1, INTRO_ERROR, NULL, 100, 1100);
	CHECK(!intro_cache_lookup(c, a, 1, 200, &st, &got)); /* failures are not cached */
	intro_cache_insert(c, a, 1, INTRO_ACTIVE, claims, 100, 100);
	CHECK(!intro_cache_lookup(c, a, 1, 100, &st, &got)); /* nothing to keep */
	intro_cache_get_stats(c, &stats);
	CHECK_EQ(stats.hits, 2);
	intro_cache_free(c);

	c = intro_cache_new(0); /* storing disabled: lookups miss */
	intro_cache_insert(c, a, 1, INTRO_ACTIVE, claims, 100, 1100);
	CHECK(!intro_cache_lookup(c, a, 1, 200, &st, &got));
	intro_cache_free(c);
	json_decref(claims);
}

static void test_cache_bounded(void)
{
	struct intro_cache *c = intro_cache_new(8);
	unsigned char d[INTRO_DIGEST_LEN];
	json_t *claims = json_pack("{s:b}", "active", 1), *got;
	enum intro_status st;
	struct intro_cache_stats stats;
	char tok[32];
	int live = 0;

	for (int i = 0; i < 200; i++) {
		snprintf(tok, sizeof(tok), "tok-%d", i);
		digest_of(tok, d);
		intro_cache_insert(c, d, 1, INTRO_ACTIVE, claims, 10, 100000);
	}
	for (int i = 0; i < 200; i++) {
		snprintf(tok, sizeof(tok), "tok-%d", i);
		digest_of(tok, d);
		if (intro_cache_lookup(c, d, 1, 20, &st, &got)) {
			live++;
			json_decref(got);
		}
	}
	intro_cache_get_stats(c, &stats);
	CHECK_EQ(live, 8);
	CHECK_EQ(stats.evictions, 192);
	/* the refcount of the shared claims comes back to one once the cache is gone */
	intro_cache_free(c);
	CHECK_EQ(claims->refcount, 1);
	json_decref(claims);
}

/* One set of four ways: the least recently used token goes first. */
static void test_cache_lru(void)
{
	struct intro_cache *c = intro_cache_new(4);
	unsigned char d[5][INTRO_DIGEST_LEN];
	enum intro_status st;
	json_t *got;
	char tok[16];

	for (int i = 0; i < 5; i++) {
		snprintf(tok, sizeof(tok), "t%d", i);
		digest_of(tok, d[i]);
	}
	for (int i = 0; i < 4; i++)
		intro_cache_insert(c, d[i], 1, INTRO_INACTIVE, NULL, 10, 1000);
	CHECK(intro_cache_lookup(c, d[0], 1, 20, &st, &got));
	intro_cache_insert(c, d[4], 1, INTRO_INACTIVE, NULL, 30, 1000);
	CHECK(intro_cache_lookup(c, d[0], 1, 40, &st, &got));
	CHECK(!intro_cache_lookup(c, d[1], 1, 40, &st, &got));
	CHECK(intro_cache_lookup(c, d[4], 1, 40, &st, &got));
	/* t2 is the least recent now; then an expired way is reused before a live one */
	intro_cache_insert(c, d[1], 1, INTRO_INACTIVE, NULL, 40, 50);
	CHECK(!intro_cache_lookup(c, d[2], 1, 45, &st, &got));
	intro_cache_insert(c, d[2], 1, INTRO_INACTIVE, NULL, 60, 1000);
	CHECK(intro_cache_lookup(c, d[0], 1, 70, &st, &got));
	CHECK(intro_cache_lookup(c, d[2], 1, 70, &st, &got));
	CHECK(intro_cache_lookup(c, d[3], 1, 70, &st, &got));
	CHECK(intro_cache_lookup(c, d[4], 1, 70, &st, &got));
	CHECK(!intro_cache_lookup(c, d[1], 1, 70, &st, &got));
	intro_cache_free(c);
}

struct waiter_box {
	struct intro_waiter w;
	int woken;
};

static void box_wake(struct intro_waiter *w)
{
	((struct waiter_box *)w)->woken++;
}

static void test_flights(void)
{
	struct intro_cache *c = intro_cache_new(16);
	unsigned char a[INTRO_DIGEST_LEN], b[INTRO_DIGEST_LEN];
	struct waiter_box w[3] = {{.w.wake = box_wake}, {.w.wake = box_wake}, {.w.wake = box_wake}};
	json_t *claims = json_pack("{s:b,s:s}", "active", 1, "sub", "eve"), *got;
	struct intro_flight *f, *g;
	enum intro_status st;
	int dummy;

	digest_of("shared", a);
	digest_of("other", b);
	CHECK(intro_flight_find(c, a, 1) == NULL);
	f = intro_flight_start(c, a, 1);
	intro_flight_set_call(f, &dummy);
	CHECK(intro_flight_call(f) == &dummy);
	CHECK(intro_flight_find(c, a, 1) == f);
	CHECK(intro_flight_find(c, a, 2) == NULL);
	CHECK(intro_flight_find(c, b, 1) == NULL);
	for (int i = 0; i < 3; i++)
		intro_flight_join(intro_flight_find(c, a, 1), &w[i].w);
	/* one goes away early: the others still wait */
	CHECK(!intro_waiter_leave(&w[1].w));
	CHECK(w[1].w.flight == NULL);
	CHECK(!intro_waiter_leave(&w[1].w)); /* leaving twice is harmless */
	intro_flight_complete(c, f, INTRO_ACTIVE, claims, 100, 5000);
	CHECK(intro_flight_find(c, a, 1) == NULL);
	CHECK_EQ(w[0].woken, 1);
	CHECK_EQ(w[2].woken, 1);
	CHECK_EQ(w[1].woken, 0);
	CHECK(w[0].w.answered && w[2].w.answered && !w[1].w.answered);
	CHECK(w[0].w.claims == claims && w[2].w.claims == claims);
	CHECK(w[0].w.flight == NULL && w[2].w.flight == NULL);
	json_decref(w[0].w.claims);
	json_decref(w[2].w.claims);
	CHECK(intro_cache_lookup(c, a, 1, 200, &st, &got)); /* and the answer is cached */
	CHECK_EQ(st, INTRO_ACTIVE);
	json_decref(got);

	/* the last waiter to leave tells the owner to cancel */
	g = intro_flight_start(c, b, 1);
	intro_flight_join(g, &w[0].w);
	intro_flight_join(g, &w[1].w);
	CHECK(!intro_waiter_leave(&w[0].w));
	CHECK(intro_waiter_leave(&w[1].w));
	intro_flight_abandon(c, g);
	CHECK(intro_flight_find(c, b, 1) == NULL);

	/* a failed call wakes its waiters too, with nothing cached */
	g = intro_flight_start(c, b, 1);
	intro_flight_join(g, &w[2].w);
	intro_flight_complete(c, g, INTRO_ERROR, NULL, 100, 0);
	CHECK_EQ(w[2].woken, 2);
	CHECK_EQ(w[2].w.status, INTRO_ERROR);
	CHECK(w[2].w.claims == NULL);
	CHECK(!intro_cache_lookup(c, b, 1, 200, &st, &got));
	intro_cache_free(c);
	CHECK_EQ(claims->refcount, 1);
	json_decref(claims);
}

/* ---- auth_check_ex ---- */

struct fake_idp {
	int calls;
	enum auth_reason answer;
	const char *claims;
};

static enum auth_reason fake_lookup(void *ctx, const char *token, size_t len, json_t **claims)
{
	struct fake_idp *f = ctx;

	(void)token;
	(void)len;
	f->calls++;
	*claims = f->answer == AUTH_OK ? json_loads(f->claims, 0, NULL) : NULL;
	return f->answer;
}

static struct auth_config *A;

static struct route_auth *route(const char *text)
{
	struct cfg_errs errs = {0};
	json_t *j = json_loads(text, 0, NULL);
	struct route_auth *ra = route_auth_parse(j, NULL, "routes[0]", A, &errs);

	if (!ra)
		fprintf(stderr, "route errors:\n%s", errs.text ? errs.text : "");
	json_decref(j);
	cfg_errs_free(&errs);
	return ra;
}

static enum auth_reason run(const struct route_auth *ra, struct fake_idp *f, const char *token,
			    const char *key, struct auth_result *res)
{
	struct auth_introspector intro = {fake_lookup, f};
	struct tu_req r;

	tu_req_init(&r, NULL);
	if (token)
		tu_req_bearer(&r, token);
	if (key)
		tu_req_add(&r, "X-API-Key", key);
	auth_check_ex(A, ra, NULL, &intro, &r.req, NULL, NOW, res);
	tu_req_free(&r);
	CHECK_EQ(res->status, auth_reason_status(res->reason));
	return res->reason;
}

static void test_check(void)
{
	struct route_auth *ra = route("{\"introspection\": {\"scopes\": [\"read\", \"pay\"]}}");
	struct fake_idp f = {0, AUTH_OK, NULL};
	struct auth_result res;
	char claims[256];

	if (!ra)
		return;
	snprintf(claims, sizeof(claims),
		 "{\"active\": true, \"sub\": \"bob\", \"iss\": \"https://idp\", \"scope\": "
		 "\"pay read x\", \"exp\": %d, \"tier\": \"gold\"}",
		 NOW + 60);
	f.claims = claims;
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_OK);
	CHECK_STR(res.consumer, "bob");
	CHECK_STR(res.identity, "oauth:11:https://idpbob");
	CHECK_STR(tu_forward(&res, "X-Tier"), "gold");
	CHECK_STR(res.claim(&res, "tier"), "gold"); /* {jwt.tier} templates */
	auth_result_release(&res);
	CHECK_EQ(f.calls, 1);

	f.claims = "{\"active\": true, \"client_id\": \"svc\", \"scope\": \"read\"}";
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_FORBIDDEN_SCOPE);
	CHECK_EQ(res.status, 403);
	f.claims = "{\"active\": true, \"client_id\": \"svc\", \"scope\": \"read pay\"}";
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_OK);
	CHECK_STR(res.consumer, "svc");
	auth_result_release(&res);
	snprintf(claims, sizeof(claims), "{\"active\": true, \"scope\": \"read pay\", \"exp\": %d}",
		 NOW - 1);
	f.claims = claims;
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_EXPIRED);
	f.answer = AUTH_INACTIVE;
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_INACTIVE);
	CHECK_EQ(res.status, 401);
	f.answer = AUTH_IDP_UNAVAILABLE;
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_IDP_UNAVAILABLE);
	CHECK_EQ(res.status, 503);
	f.answer = AUTH_PENDING;
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_PENDING);
	CHECK_EQ(res.status, 503);
	f.calls = 0;
	CHECK_EQ(run(ra, &f, NULL, NULL, &res), AUTH_MISSING);
	CHECK_EQ(f.calls, 0); /* no token: the IdP is not asked */
	route_auth_free(ra);

	/* any_of: a good API key needs no IdP call; a pending token does not hide it */
	ra = route("{\"any_of\": [{\"introspection\": {}}, {\"api_key\": {}}]}");
	if (!ra)
		return;
	f.answer = AUTH_PENDING;
	CHECK_EQ(run(ra, &f, "opaque", "k-1", &res), AUTH_OK);
	CHECK_STR(res.consumer, "app");
	auth_result_release(&res);
	CHECK_EQ(run(ra, &f, "opaque", "wrong", &res), AUTH_PENDING);
	f.answer = AUTH_IDP_UNAVAILABLE;
	CHECK_EQ(run(ra, &f, "opaque", "wrong", &res), AUTH_IDP_UNAVAILABLE);
	f.answer = AUTH_INACTIVE;
	CHECK_EQ(run(ra, &f, "opaque", NULL, &res), AUTH_INACTIVE);
	route_auth_free(ra);
}

static void test_route_errors(void)
{
	struct cfg_errs errs = {0};
	json_t *j = json_loads("{\"introspection\": {\"roles\": [\"x\"]}}", 0, NULL);
	struct route_auth *ra = route_auth_parse(j, NULL, "routes[0]", A, &errs);

	CHECK(ra == NULL);
	CHECK(errs.text && strstr(errs.text, "routes[0].auth.introspection.roles"));
	json_decref(j);
	cfg_errs_free(&errs);
}

int main(void)
{
	struct cfg_errs errs = {0};

	A = tu_config("{\"auth\": {\"introspection\": {\"url\": \"http://127.0.0.1:9/i\", "
		      "\"client_id\": \"gw\", \"client_secret\": \"s\", \"forward_claims\": "
		      "{\"tier\": \"X-Tier\"}}}, \"consumers\": [{\"name\": \"app\", "
		      "\"api_keys\": [\"k-1\"]}]}",
		      &errs, NULL);
	if (!A) {
		fprintf(stderr, "%s", errs.text);
		return 2;
	}
	RUN(test_form_encode);
	RUN(test_settings);
	RUN(test_settings_errors);
	RUN(test_request_body);
	RUN(test_parse_response);
	RUN(test_cache_lifetime);
	RUN(test_cache);
	RUN(test_cache_bounded);
	RUN(test_cache_lru);
	RUN(test_flights);
	RUN(test_check);
	RUN(test_route_errors);
	auth_config_free(A);
	return CHECK_DONE();
}
