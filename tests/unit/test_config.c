/* Config loading: every error names its JSON path; valid configs load with defaults. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config/config.h"

static const char *base_upstreams =
	"\"upstreams\": [{\"name\": \"users\", \"targets\": [{\"address\": \"127.0.0.1:9101\"},"
	" {\"address\": \"127.0.0.1:9102\", \"weight\": 3}]}]";

/* Loads text; returns the config (or NULL) and leaves the error text in errs. */
static struct xg_config *load(const char *text, struct cfg_errs *errs)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	struct xg_config *cfg;

	if (!root) {
		fprintf(stderr, "bad test JSON: %s\n%s\n", jerr.text, text);
		return NULL;
	}
	cfg = config_load_json(root, "test.json", errs);
	json_decref(root);
	return cfg;
}

static bool load_fails_with(const char *body, const char *expected)
{
	char text[4096];
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg;
	bool ok;

	snprintf(text, sizeof(text),
		 "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}], %s, %s}",
		 base_upstreams, body);
	cfg = load(text, &errs);
	ok = !cfg && errs.text && strstr(errs.text, expected);
	if (!ok)
		fprintf(stderr, "expected error containing '%s', got:\n%s\n", expected,
			errs.text ? errs.text : "(no error)");
	config_put(cfg);
	cfg_errs_free(&errs);
	return ok;
}

static void test_valid_config_defaults(void)
{
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg = load(
		"{\"workers\": 2, \"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
		" \"upstreams\": [{\"name\": \"users\", \"balance\": \"least_conn\", \"targets\": "
		"[{\"address\": \"127.0.0.1:9101\"}], \"circuit_breaker\": {}}],"
		" \"routes\": [{\"name\": \"users\", \"paths\": [\"/api/users\"], \"methods\": "
		"[\"GET\", \"POST\"], \"hosts\": [\"API.Example.com\"], \"upstream\": \"users\","
		" \"cache\": {\"ttl_s\": 5}}]}",
		&errs);

	CHECK(cfg != NULL);
	if (!cfg) {
		fprintf(stderr, "%s", errs.text);
		return;
	}
	CHECK_EQ(cfg->workers, 2);
	CHECK_EQ(cfg->limits.max_header_bytes, 16384);
	CHECK_EQ(cfg->limits.header_timeout_ms, 10000);
	CHECK_EQ(cfg->limits.body_timeout_ms, 10000); /* defaults to header_timeout_ms */
	CHECK_EQ(cfg->limits.body_min_rate, 1024);
	CHECK_EQ(cfg->limits.splice_max_inflight_bytes, 4 << 20);
	CHECK_EQ(cfg->listeners[0].splice, SPLICE_OFF);
	CHECK_EQ(cfg->nupstreams, 1);
	CHECK_EQ(cfg->upstreams[0].balance, BALANCE_LEAST_CONN);
	CHECK(cfg->upstreams[0].breaker.enabled);
	CHECK_EQ(cfg->upstreams[0].breaker.failures, 5);
	CHECK_EQ(cfg->upstreams[0].targets[0].weight, 1);
	CHECK(cfg->upstreams[0].targets[0].state != NULL);
	CHECK_EQ(cfg->routes[0].upstream, 0);
	CHECK_STR(cfg->routes[0].hosts[0], "api.example.com");
	CHECK_EQ(cfg->routes[0].cache_ttl_s, 5);
	CHECK(cfg->router != NULL);
	CHECK(!cfg->admin.enabled);
	CHECK(!cfg->access_log.enabled);
	CHECK_EQ(cfg->headers.underscores, UNDERSCORE_DROP_LOOKALIKES);
	CHECK(!cfg->routes[0].websocket);
	config_put(cfg);
	cfg_errs_free(&errs);
}

/* Keys of issue 10: header policy, websocket routes, route hosts and paths. */
static void test_hardening_keys(void)
{
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg = load(
		"{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
		" \"headers\": {\"underscores\": \"drop\"},"
		" \"upstreams\": [{\"name\": \"u\", \"targets\": [{\"address\": \"127.0.0.1:9\"}]}],"
		" \"routes\": [{\"name\": \"ws\", \"paths\": [\"/ws\"], \"upstream\": \"u\","
		" \"websocket\": true, \"hosts\": [\"Api.Example.COM.\", \"*.Wild.test\", \"[::1]\"]}]}",
		&errs);

	CHECK(cfg != NULL);
	if (!cfg) {
		fprintf(stderr, "%s", errs.text);
		cfg_errs_free(&errs);
		return;
	}
	CHECK_EQ(cfg->headers.underscores, UNDERSCORE_DROP);
	CHECK(cfg->routes[0].websocket);
	CHECK_STR(cfg->routes[0].hosts[0], "api.example.com");
	CHECK_STR(cfg->routes[0].hosts[1], "*.wild.test");
	CHECK_STR(cfg->routes[0].hosts[2], "[::1]");
	config_put(cfg);
	cfg_errs_free(&errs);
	CHECK(load_fails_with("\"headers\": {\"underscores\": \"keep\"}",
			      "headers.underscores: must be one of"));
	CHECK(load_fails_with("\"headers\": {\"underscore\": \"drop\"}",
			      "headers.underscore: unknown key"));
	CHECK(load_fails_with("\"routes\": [{\"paths\": [\"/\"], \"upstream\": \"users\","
			      " \"websocket\": 1}]",
			      "routes[0].websocket:"));
	CHECK(load_fails_with("\"routes\": [{\"paths\": [\"/\"], \"upstream\": \"users\","
			      " \"hosts\": [\"a.test\", \"a.test:80\"]}]",
			      "routes[0].hosts[1]: must be a host name"));
	CHECK(load_fails_with("\"routes\": [{\"paths\": [\"/ok\", \"/admin;x\"], \"upstream\": "
			      "\"users\"}]",
			      "routes[0].paths[1]: \"/admin;x\" is not a normalised path"));
	CHECK(load_fails_with("\"routes\": [{\"paths\": [\"/a/../b$\"], \"upstream\": "
			      "\"users\"}]",
			      "routes[0].paths[0]:"));
}

static void test_errors_name_json_paths(void)
{
	CHECK(load_fails_with("\"routes\": [{\"paths\": [\"/\"], \"upstream\": \"pay\"}]",
			      "routes[0].upstream: unknown upstream \"pay\""));
	CHECK(load_fails_with("\"routes\": [{\"paths\": [\"x\"], \"upstream\": \"users\"}]",
			      "routes[0].paths[0]: must start with \"/\""));
	CHECK(load_fails_with("\"routes\": [{\"paths\": [], \"upstream\": \"users\"}]",
			      "routes[0].paths: at least one path is required"));
	CHECK(load_fails_with("\"routes\": [{\"paths\": [\"/\"], \"upstream\": \"users\","
			      " \"methods\": [\"GET\", \"YELL\"]}]",
			      "routes[0].methods[1]: unknown method \"YELL\""));
	CHECK(load_fails_with("\"limits\": {\"max_header_bytes\": 10}",
			      "limits.max_header_bytes: must be between"));
	CHECK(load_fails_with("\"limits\": {\"idle_timeout\": 10}",
			      "limits.idle_timeout: unknown key"));
	CHECK(load_fails_with("\"admin\": {\"address\": \"nowhere\"}", "admin.address:"));
	CHECK(load_fails_with("\"access_log\": {\"format\": \"xml\"}",
			      "access_log.format: must be one of \"json\""));
	CHECK(load_fails_with("\"workers\": -1", "workers: must be between"));
	CHECK(load_fails_with("\"routes\": [{\"name\": \"a\", \"paths\": [\"/\"], \"upstream\": "
			      "\"users\"}, {\"name\": \"a\", \"paths\": [\"/b\"], \"upstream\": "
			      "\"users\"}]",
			      "routes[1].name: duplicate route \"a\""));
}

static void test_upstream_errors(void)
{
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg = load(
		"{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"},"
		" {\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
		" \"upstreams\": [{\"name\": \"u\", \"balance\": \"hash\", \"hash_on\": \"cookie:x\","
		" \"targets\": [{\"address\": \"127.0.0.1:1\", \"weight\": 0}, {\"address\": "
		"\"[::1:1\"}], \"timeouts_ms\": {\"connect\": 0}, \"health_check\": {\"path\": "
		"\"health\"}}]}",
		&errs);

	CHECK(cfg == NULL);
	CHECK(errs.text && strstr(errs.text, "upstreams[0].hash_on: must be"));
	CHECK(errs.text && strstr(errs.text, "upstreams[0].targets[0].weight: must be between 1"));
	CHECK(errs.text && strstr(errs.text, "upstreams[0].targets[1].address:"));
	CHECK(errs.text && strstr(errs.text, "upstreams[0].timeouts_ms.connect: must be between"));
	CHECK(errs.text && strstr(errs.text, "upstreams[0].health_check: path must start"));
	CHECK(errs.text && strstr(errs.text, "listeners[1]: duplicate listener name \"p\""));
	CHECK(errs.count >= 6);
	config_put(cfg);
	cfg_errs_free(&errs);
}

/* "protocol" and "max_streams_per_connection": defaults, values, bad values, and proxied
 * routes refused on HTTP/2 upstreams (compose may use them). */
static void test_upstream_protocol(void)
{
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg = load(
		"{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
		" \"upstreams\": [{\"name\": \"a\", \"targets\": [{\"address\": \"127.0.0.1:1\"}]},"
		" {\"name\": \"g\", \"protocol\": \"h2c\", \"max_streams_per_connection\": 7,"
		" \"targets\": [{\"address\": \"127.0.0.1:2\"}]}],"
		" \"routes\": [{\"paths\": [\"/c\"], \"compose\": {\"calls\": [{\"name\": \"x\","
		" \"upstream\": \"g\", \"path\": \"/x\"}]}}, {\"paths\": [\"/\"], \"upstream\": \"a\"}]}",
		&errs);

	CHECK(cfg != NULL);
	if (!cfg) {
		fprintf(stderr, "%s\n", errs.text ? errs.text : "");
	} else {
		CHECK(cfg->upstreams[0].protocol == UPSTREAM_HTTP1);
		CHECK(cfg->upstreams[0].max_streams_per_connection == 100);
		CHECK(cfg->upstreams[1].protocol == UPSTREAM_H2C);
		CHECK(cfg->upstreams[1].max_streams_per_connection == 7);
	}
	config_put(cfg);
	cfg_errs_free(&errs);
}

static void test_upstream_protocol_errors(void)
{
	char text[2048];
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg;

	snprintf(text, sizeof(text), "%s",
		 "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
		 " \"upstreams\": [{\"name\": \"a\", \"protocol\": \"spdy\", \"targets\": "
		 "[{\"address\": \"127.0.0.1:1\"}]}, {\"name\": \"b\", \"max_streams_per_connection\": "
		 "5, \"targets\": [{\"address\": \"127.0.0.1:1\"}]}, {\"name\": \"g\", \"protocol\": "
		 "\"h2\", \"max_streams_per_connection\": 0, \"targets\": [{\"address\": \"127.0.0.1:2\"}]},"
		 " {\"name\": \"h\", \"protocol\": \"h2c\", \"targets\": [{\"address\": \"127.0.0.1:3\"}]}],"
		 " \"routes\": [{\"paths\": [\"/x\"], \"upstream\": \"a\"}]}");
	cfg = load(text, &errs);
	CHECK(cfg == NULL);
	CHECK(errs.text && strstr(errs.text, "upstreams[0].protocol: must be one of"));
	CHECK(errs.text && strstr(errs.text, "upstreams[1].max_streams_per_connection: only valid with"));
	CHECK(errs.text && strstr(errs.text, "upstreams[2].max_streams_per_connection: must be between 1"));
	config_put(cfg);
	cfg_errs_free(&errs);
	snprintf(text, sizeof(text), "%s",
		 "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
		 " \"upstreams\": [{\"name\": \"b\", \"targets\": [{\"address\": \"127.0.0.1:1\"}]},"
		 " {\"name\": \"h\", \"protocol\": \"h2c\", \"targets\": [{\"address\": \"127.0.0.1:3\"}]}],"
		 " \"routes\": [{\"paths\": [\"/x\"], \"upstream\": \"h\"},"
		 " {\"paths\": [\"/y\"], \"split\": [{\"upstream\": \"b\", \"weight\": 1},"
		 " {\"upstream\": \"h\", \"weight\": 1}]}]}");
	memset(&errs, 0, sizeof(errs));
	cfg = load(text, &errs);
	/* proxied routes reach h2c/h2 upstreams from HTTP/2 clients (h2conn.c streams) */
	CHECK(cfg != NULL);
	CHECK(cfg && cfg->upstreams[cfg->routes[0].upstream].protocol == UPSTREAM_H2C);
	if (errs.text)
		fprintf(stderr, "%s\n", errs.text);
	config_put(cfg);
	cfg_errs_free(&errs);
}

static void test_env_substitution(void)
{
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg;

	setenv("XG_TEST_PORT", "8181", 1);
	unsetenv("XG_TEST_MISSING");
	cfg = load("{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:${XG_TEST_PORT}\"}]}",
		   &errs);
	CHECK(cfg != NULL);
	if (cfg) {
		CHECK_STR(cfg->listeners[0].address_text, "127.0.0.1:8181");
		/* The raw copy keeps the reference, so GET /config never shows the value. */
		CHECK_STR(json_string_value(json_object_get(
				  json_array_get(json_object_get(cfg->raw, "listeners"), 0), "address")),
			  "127.0.0.1:${XG_TEST_PORT}");
	}
	config_put(cfg);
	cfg = load("{\"listeners\": [{\"name\": \"p\", \"address\": \"${XG_TEST_MISSING}\"}]}",
		   &errs);
	CHECK(cfg == NULL);
	CHECK(errs.text && strstr(errs.text, "listeners[0].address: environment variable "
					     "XG_TEST_MISSING is not set"));
	cfg_errs_free(&errs);
}

static void test_addresses_and_cidrs(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[128];
	uint8_t addr[16], plen;
	int fam;

	CHECK(cfg_parse_addr("127.0.0.1:80", &ss, &len, err, sizeof(err)));
	CHECK(cfg_parse_addr("[::1]:443", &ss, &len, err, sizeof(err)) && ss.ss_family == AF_INET6);
	CHECK(cfg_parse_addr("*:8080", &ss, &len, err, sizeof(err)));
	CHECK(!cfg_parse_addr("127.0.0.1", &ss, &len, err, sizeof(err)));
	CHECK(!cfg_parse_addr("127.0.0.1:65536", &ss, &len, err, sizeof(err)));
	CHECK(!cfg_parse_addr("127.0.0.1:-1", &ss, &len, err, sizeof(err)));
	CHECK(!cfg_parse_addr("example.com:80", &ss, &len, err, sizeof(err)));
	CHECK(cfg_parse_cidr("198.18.7.9/15", &fam, addr, &plen));
	CHECK_EQ(fam, AF_INET);
	CHECK_EQ(plen, 15);
	CHECK_EQ(addr[1], 18);
	CHECK_EQ(addr[2], 0); /* host bits cleared */
	CHECK(cfg_parse_cidr("2001:db8::1/32", &fam, addr, &plen) && fam == AF_INET6 && plen == 32);
	CHECK_EQ(addr[15], 0);
	CHECK(!cfg_parse_cidr("1.2.3.4/33", &fam, addr, &plen));
	CHECK(!cfg_parse_cidr("1.2.3.4/", &fam, addr, &plen));
	CHECK(!cfg_parse_cidr("1.2.3/8", &fam, addr, &plen));
}

/* Found by fuzzing: references to an upstream whose name is missing or not a string. */
static void test_nameless_upstream_references(void)
{
	static const char *const texts[] = {
	    "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
	    " \"upstreams\": [{\"targets\": [{\"address\": \"127.0.0.1:1\"}]}],"
	    " \"routes\": [{\"paths\": [\"/\"], \"upstream\": \"x\"}]}",
	    "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
	    " \"upstreams\": [{\"name\": 5, \"targets\": [{\"address\": \"127.0.0.1:1\"}]}],"
	    " \"routes\": [{\"paths\": [\"/\"], \"upstream\": [\"x\"]}]}",
	    "{\"listeners\": [{\"name\": \"t\", \"address\": \"127.0.0.1:1\", \"mode\": \"tcp\","
	    " \"sni_routes\": {\"a\": \"b\"}, \"upstream\": \"c\"}],"
	    " \"upstreams\": [{\"targets\": [{\"address\": \"127.0.0.1:1\"}]}]}",
	};
	static const char *const expect[][2] = {
	    {"upstreams[0].name: required", "routes[0].upstream: unknown upstream \"x\""},
	    {"upstreams[0].name: must be a string", "routes[0].upstream: must be a string"},
	    {"listeners[0].upstream: unknown upstream \"c\"",
	     "listeners[0].sni_routes.a: unknown upstream \"b\""},
	};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct cfg_errs errs = {0};
		struct xg_config *cfg = load(texts[i], &errs);

		CHECK(cfg == NULL);
		CHECK(errs.text && strstr(errs.text, expect[i][0]));
		CHECK(errs.text && strstr(errs.text, expect[i][1]));
		if (errs.text && (!strstr(errs.text, expect[i][0]) || !strstr(errs.text, expect[i][1])))
			fprintf(stderr, "config %zu errors:\n%s", i, errs.text);
		config_put(cfg);
		cfg_errs_free(&errs);
	}
}

/* config_load_buffer: same rules as a file, JSON errors with the given name and position. */
static void test_load_buffer(void)
{
	static const char ok[] =
	    "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}]}";
	static const char dup[] = "{\"workers\": 1, \"workers\": 2}";
	struct cfg_errs errs = {0};
	struct xg_config *cfg = config_load_buffer(ok, sizeof(ok) - 1, "mem.json", &errs);

	CHECK(cfg != NULL && errs.count == 0 && cfg->nlisteners == 1);
	CHECK_STR(cfg ? cfg->path : NULL, "mem.json");
	config_put(cfg);
	/* a length short of the text is honoured: the object is cut, so it is a syntax error */
	cfg = config_load_buffer(ok, sizeof(ok) - 2, "mem.json", &errs);
	CHECK(cfg == NULL && errs.count == 1 && errs.text && strstr(errs.text, "(root): mem.json:1:"));
	cfg_errs_free(&errs);
	cfg = config_load_buffer(dup, sizeof(dup) - 1, "dup.json", &errs);
	CHECK(cfg == NULL && errs.text && strstr(errs.text, "dup.json:1:") &&
	      strstr(errs.text, "duplicate"));
	cfg_errs_free(&errs);
	cfg = config_load_buffer("\x00\xff", 2, NULL, &errs);
	CHECK(cfg == NULL && errs.count == 1);
	cfg_errs_free(&errs);
}

/* Found by fuzzing: a key with a line break split one error into two lines. */
static void test_error_lines_stay_single(void)
{
	struct cfg_errs errs = {0};
	struct xg_config *cfg = load("{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\","
				     " \"bad\\nkey\\u001b[31m\": 1}]}",
				     &errs);

	CHECK(cfg == NULL);
	CHECK_EQ(errs.count, 1);
	CHECK(errs.text && strchr(errs.text, '\n') == errs.text + errs.len - 1);
	CHECK(errs.text && strstr(errs.text, "listeners[0].bad?key?[31m: unknown key"));
	config_put(cfg);
	cfg_errs_free(&errs);
}

int main(void)
{
	RUN(test_valid_config_defaults);
	RUN(test_errors_name_json_paths);
	RUN(test_hardening_keys);
	RUN(test_upstream_errors);
	RUN(test_env_substitution);
	RUN(test_addresses_and_cidrs);
	RUN(test_nameless_upstream_references);
	RUN(test_load_buffer);
	RUN(test_error_lines_stay_single);
	RUN(test_upstream_protocol);
	RUN(test_upstream_protocol_errors);
	return CHECK_DONE();
}
