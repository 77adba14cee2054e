/* CORS: policy parsing (errors with JSON paths, credentials with "*"), exact origin
 * matching without reflection, preflight checks and the 204's header lines. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cors/cors.h"
#include "unit/check.h"

static struct cors_policy *parse(const char *json, struct cfg_errs *errs)
{
	json_t *o = json_loads(json, 0, NULL);
	struct cors_policy *p;

	cfg_errs_free(errs);
	memset(errs, 0, sizeof(*errs));
	p = cors_policy_parse(o, "routes[2].cors", errs);
	json_decref(o);
	return p;
}

static const char *allow(const struct cors_policy *p, const char *origin)
{
	struct http_str o = {origin, strlen(origin)};

	return cors_allow_origin(p, o);
}

static void test_config_errors(void)
{
	struct cfg_errs errs = {0};

	CHECK(!parse("{\"origins\": [\"*\"], \"credentials\": true}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.credentials: credentials need explicit origins"));
	CHECK(!parse("{}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.origins: is required"));
	CHECK(!parse("{\"origins\": []}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.origins: at least one"));
	CHECK(!parse("{\"origins\": [\"https://a.example\", \"*\"]}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.origins[1]"));
	CHECK(!parse("{\"origins\": [\"https://a.example/\"]}", &errs));
	CHECK(strstr(errs.text,
		     "routes[2].cors.origins[0]: \"https://a.example/\" is not an origin"));
	CHECK(!parse("{\"origins\": [\"a.example\"]}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.origins[0]"));
	CHECK(!parse("{\"origins\": [\"null\"]}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.origins[0]: the \"null\" origin"));
	CHECK(!parse("{\"origins\": [\"https://a\"], \"headers\": [\"X Y\"]}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.headers[0]"));
	CHECK(!parse("{\"origins\": [\"https://a\"], \"expose\": [\"a:b\"]}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.expose[0]"));
	CHECK(!parse("{\"origins\": [\"https://a\"], \"max_age_s\": 86401}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.max_age_s"));
	CHECK(!parse("{\"origins\": [\"https://a\"], \"allow\": 1}", &errs));
	CHECK(strstr(errs.text, "routes[2].cors.allow"));
	CHECK(!parse("[]", &errs));
	CHECK(strstr(errs.text, "routes[2].cors: must be an object"));
	cfg_errs_free(&errs);
}

static void test_origin_matching_is_exact(void)
{
	struct cfg_errs errs = {0};
	struct cors_policy *p =
	    parse("{\"origins\": [\"https://App.example\", \"http://localhost:3000\"]}", &errs);
	struct cors_policy *any = parse("{\"origins\": [\"*\"]}", &errs);

	CHECK(p != NULL && any != NULL);
	CHECK_STR(allow(p, "https://app.example"), "https://app.example");
	CHECK_STR(allow(p, "HTTPS://APP.EXAMPLE"), "https://app.example"); /* ours, not theirs */
	CHECK_STR(allow(p, "http://localhost:3000"), "http://localhost:3000");
	CHECK(!allow(p, "http://localhost:30001"));
	CHECK(!allow(p, "http://localhost"));
	CHECK(!allow(p, "https://app.example.evil"));
	CHECK(!allow(p, "https://evil.app.example"));
	CHECK(!allow(p, "http://app.example"));
	CHECK(!allow(p, "https://app.exampl"));
	CHECK(!allow(p, "null"));
	CHECK(!allow(p, ""));
	CHECK_STR(allow(any, "https://whoever.example"), "*");
	CHECK(!allow(any, ""));
	/* Defaults: the simple methods, no headers, 600 s. */
	CHECK_STR(p->methods_text, "GET, HEAD, POST");
	CHECK_STR(p->headers_text, "");
	CHECK_EQ(p->max_age_s, 600);
	CHECK(!p->credentials);
	cors_policy_free(p);
	cors_policy_free(any);
	cfg_errs_free(&errs);
}

static enum cors_verdict check(const struct cors_policy *p, const char *raw, char *out, size_t cap,
			       bool *fits)
{
	struct http_request req;
	int n = http_parse_request(raw, strlen(raw), NULL, &req);

	CHECK(n > 0);
	CHECK(cors_is_preflight(&req));
	return cors_preflight(p, &req, out, cap, fits);
}

static void test_preflight(void)
{
	struct cfg_errs errs = {0};
	struct cors_policy *p =
	    parse("{\"origins\": [\"https://app.example\"], \"methods\": [\"GET\", \"PUT\"],"
		  " \"headers\": [\"Authorization\", \"X-Trace\"], \"credentials\": true,"
		  " \"max_age_s\": 120}",
		  &errs);
	char out[1024];
	bool fits;
	struct http_request req;
	const char *plain = "OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n\r\n";

	CHECK(p != NULL);
	CHECK_EQ(check(p,
		       "OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
		       "Access-Control-Request-Method: PUT\r\n"
		       "Access-Control-Request-Headers: x-trace,  AUTHORIZATION\r\n\r\n",
		       out, sizeof(out), &fits),
		 CORS_OK);
	CHECK(fits);
	CHECK(strstr(out, "Access-Control-Allow-Origin: https://app.example\r\n"));
	CHECK(strstr(out, "Access-Control-Allow-Methods: GET, PUT\r\n"));
	CHECK(strstr(out, "Access-Control-Allow-Headers: authorization, x-trace\r\n"));
	CHECK(strstr(out, "Access-Control-Max-Age: 120\r\n"));
	CHECK(strstr(out, "Access-Control-Allow-Credentials: true\r\n"));
	CHECK(strstr(out, "Vary: Origin, "));
	CHECK_EQ(check(p,
		       "OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://other.example\r\n"
		       "Access-Control-Request-Method: PUT\r\n\r\n",
		       out, sizeof(out), &fits),
		 CORS_DENY_ORIGIN);
	/* Methods are case-sensitive (Fetch): "put" is not "PUT". */
	CHECK_EQ(check(p,
		       "OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
		       "Access-Control-Request-Method: put\r\n\r\n",
		       out, sizeof(out), &fits),
		 CORS_DENY_METHOD);
	CHECK_EQ(check(p,
		       "OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
		       "Access-Control-Request-Method: GET\r\n"
		       "Access-Control-Request-Headers: x-trace, x-secret\r\n\r\n",
		       out, sizeof(out), &fits),
		 CORS_DENY_HEADERS);
	/* Header lines that do not fit are reported, never truncated silently. */
	CHECK_EQ(check(p,
		       "OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
		       "Access-Control-Request-Method: GET\r\n\r\n",
		       out, 40, &fits),
		 CORS_OK);
	CHECK(!fits);
	/* Not preflights: no request method announced, or not OPTIONS. */
	CHECK(http_parse_request(plain, strlen(plain), NULL, &req) > 0);
	CHECK(!cors_is_preflight(&req));
	plain = "GET /x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
		"Access-Control-Request-Method: GET\r\n\r\n";
	CHECK(http_parse_request(plain, strlen(plain), NULL, &req) > 0);
	CHECK(!cors_is_preflight(&req));
	cors_policy_free(p);
	cfg_errs_free(&errs);
}

int main(void)
{
	RUN(test_config_errors);
	RUN(test_origin_matching_is_exact);
	RUN(test_preflight);
	return CHECK_DONE();
}
