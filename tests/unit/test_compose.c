/* Composition: config errors with JSON paths, dependency bits, templates (sources,
 * percent-encoding, missing values), per-call shaping and shallow/deep merges. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/cfg.h"
#include "compose/compose.h"
#include "config/config.h"
#include "upstream/upstream.h"
#include "unit/check.h"

static struct upstream_config ups[2] = {{.name = "users"}, {.name = "tx"}};
static struct xg_config cfg = {.upstreams = ups, .nupstreams = 2};

static struct compose_policy *parse(const char *text, struct cfg_errs *errs)
{
	json_t *j = json_loads(text, 0, NULL);
	struct compose_policy *p;

	cfg_errs_free(errs);
	memset(errs, 0, sizeof(*errs));
	p = compose_policy_parse(j, "routes[2].compose", &cfg, errs);
	json_decref(j);
	return p;
}

static void test_config(void)
{
	struct cfg_errs errs = {0};
	struct compose_policy *p;

	p = parse("{\"merge\": \"deep\", \"on_partial\": \"fail\", \"calls\": ["
		  "{\"name\": \"a\", \"upstream\": \"users\", \"path\": \"/u/{consumer}\"},"
		  "{\"name\": \"b\", \"upstream\": \"tx\", \"path\": \"/t/{calls.a.x.y}\"}]}",
		  &errs);
	CHECK(p && p->deep && p->fail_on_partial && p->timeout_ms == 5000);
	CHECK(p && p->calls[0].deps == 0 && p->calls[1].deps == 1 && p->calls[1].upstream == 1);
	compose_policy_free(p);
	CHECK(!parse("{\"calls\": [{\"name\": \"a\", \"upstream\": \"no\", \"path\": \"/\"}]}",
		     &errs));
	CHECK(strstr(errs.text, "routes[2].compose.calls[0].upstream: unknown upstream \"no\""));
	CHECK(!parse(
	    "{\"calls\": [{\"name\": \"a\", \"upstream\": \"tx\", \"path\": \"/{calls.z}\"}]}",
	    &errs));
	CHECK(
	    strstr(errs.text, "routes[2].compose.calls[0].path: {calls.z} names an unknown call"));
	CHECK(!parse(
	    "{\"calls\": [{\"name\": \"a\", \"upstream\": \"tx\", \"path\": \"/{calls.a}\"}]}",
	    &errs));
	CHECK(
	    strstr(errs.text, "routes[2].compose.calls[0]: calls depend on each other in a cycle"));
	CHECK(!parse("{\"merge\": \"x\", \"calls\": [{\"name\": \"a\", \"upstream\": \"tx\", "
		     "\"path\": \"/\", \"allow\": [\"a\"], \"deny\": [\"b\"]}]}",
		     &errs));
	CHECK(strstr(errs.text, "routes[2].compose.merge"));
	CHECK(strstr(errs.text, "routes[2].compose.calls[0].deny: \"allow\" and \"deny\""));
	CHECK(!parse("{\"calls\": [{\"name\": \"a\", \"upstream\": \"tx\", \"path\": \"x\"},"
		     "{\"name\": \"a\", \"upstream\": \"tx\", \"path\": \"/{header.}\"}]}",
		     &errs));
	CHECK(strstr(errs.text, "routes[2].compose.calls[0].path: must start with \"/\""));
	CHECK(strstr(errs.text, "routes[2].compose.calls[1].name: duplicate call \"a\""));
	CHECK(strstr(errs.text, "routes[2].compose.calls[1].path: unknown template {header.}"));
	cfg_errs_free(&errs);
}

static void test_templates(void)
{
	struct cfg_errs errs = {0};
	struct compose_policy *p =
	    parse("{\"calls\": [{\"name\": \"a\", \"upstream\": \"users\", \"path\": \"/\"},"
		  "{\"name\": \"b\", \"upstream\": \"tx\", \"path\": \"/\"}]}",
		  &errs);
	static char head[] =
	    "GET /api/x%2Fy/z?q=a%20b&n=1 HTTP/1.1\r\nX-Tag: t&1\r\nHost: h\r\n\r\n";
	struct http_limits lim = {.max_header_bytes = 1024, .max_request_line = 1024};
	struct http_request req;
	json_t *results[COMPOSE_MAX_CALLS] = {json_loads("{\"p\": {\"id\": \"p/1 x\", \"n\": 4, "
							 "\"t\": true}}",
							 0, NULL)};
	struct compose_vars v = {.consumer = "app",
				 .req = &req,
				 .path = "/api/xy/z",
				 .path_len = 9,
				 .pol = p,
				 .results = results};
	char out[256];

	CHECK(http_parse_request(head, strlen(head), &lim, &req) > 0);
	CHECK(compose_expand("/u/{consumer}/{path.2}/{path.3}", &v, out, sizeof(out)));
	CHECK(!strcmp(out, "/u/app/xy/z"));
	CHECK(compose_expand("/q?a={query.q}&h={header.x-tag}", &v, out, sizeof(out)));
	CHECK(!strcmp(out, "/q?a=a%20b&h=t%261"));
	CHECK(compose_expand("/{calls.a.p.id}/{calls.a.p.n}/{calls.a.p.t}", &v, out, sizeof(out)));
	CHECK(!strcmp(out, "/p%2F1%20x/4/true"));
	CHECK(!compose_expand("/{calls.a.p.none}", &v, out, sizeof(out)));
	CHECK(!compose_expand("/{calls.b.x}", &v, out, sizeof(out)));
	CHECK(!compose_expand("/{query.none}", &v, out, sizeof(out)));
	CHECK(!compose_expand("/{path.9}", &v, out, sizeof(out)));
	CHECK(!compose_expand("/{consumer}/long", &v, out, 8));
	json_decref(results[0]);
	compose_policy_free(p);
	cfg_errs_free(&errs);
}

static json_t *shape(const char *call, const char *body)
{
	struct cfg_errs errs = {0};
	char text[512];
	struct compose_policy *p;
	json_t *b = json_loads(body, JSON_DECODE_ANY, NULL), *r;

	snprintf(text, sizeof(text),
		 "{\"calls\": [{\"name\": \"a\", \"upstream\": \"tx\", "
		 "\"path\": \"/\", %s}]}",
		 call);
	p = parse(text, &errs);
	CHECK(p != NULL);
	r = p ? compose_shape(&p->calls[0], b) : NULL;
	compose_policy_free(p);
	json_decref(b);
	cfg_errs_free(&errs);
	return r;
}

static bool shaped_is(json_t *r, const char *want)
{
	json_t *w = json_loads(want, 0, NULL);
	bool eq = r && json_equal(r, w);

	json_decref(w);
	json_decref(r);
	return eq;
}

static void test_shape(void)
{
	CHECK(shaped_is(shape("\"target\": \"data.items\", \"allow\": [\"id\", \"m.k\"], "
			      "\"mapping\": {\"id\": \"ident\"}, \"group\": \"g\"",
			      "{\"data\": {\"items\": {\"id\": 1, \"x\": 2, \"m\": {\"k\": 3, "
			      "\"j\": 4}}}}"),
			"{\"g\": {\"ident\": 1, \"m\": {\"k\": 3}}}"));
	CHECK(shaped_is(shape("\"deny\": [\"internal\", \"a.b\"]",
			      "{\"internal\": 1, \"a\": {\"b\": 2, \"c\": 3}, \"d\": 4}"),
			"{\"a\": {\"c\": 3}, \"d\": 4}"));
	CHECK(shape("\"target\": \"missing\"", "{\"a\": 1}") == NULL);
	CHECK(shape("\"target\": \"a\"", "{\"a\": [1]}") == NULL); /* not an object */
	CHECK(shaped_is(shape("\"target\": \"a\", \"group\": \"list\"", "{\"a\": [1]}"),
			"{\"list\": [1]}"));
}

static void test_merge(void)
{
	json_t *d = json_loads("{\"a\": [1], \"o\": {\"k\": 1}, \"s\": 1}", 0, NULL);
	json_t *s = json_loads("{\"a\": [2], \"o\": {\"j\": 2}, \"s\": 2, \"n\": null}", 0, NULL);
	json_t *d2 = json_deep_copy(d);

	compose_merge(d, s, true);
	CHECK(shaped_is(d, "{\"a\": [1, 2], \"o\": {\"k\": 1, \"j\": 2}, \"s\": 2, \"n\": null}"));
	compose_merge(d2, s, false);
	CHECK(shaped_is(d2, "{\"a\": [2], \"o\": {\"j\": 2}, \"s\": 2, \"n\": null}"));
	json_decref(s);
}

int main(void)
{
	RUN(test_config);
	RUN(test_templates);
	RUN(test_shape);
	RUN(test_merge);
	return CHECK_DONE();
}
