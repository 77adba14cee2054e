/* Split: config errors with JSON paths, match entries, weighted shares over 2,000 keys,
 * consistency (changing one weight moves only that entry's share) and sticky values. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "split/split.h"
#include "upstream/upstream.h"
#include "unit/check.h"

static struct upstream_config ups[3] = {
    {.name = "users"}, {.name = "users-v2"}, {.name = "users-v3"}};
static struct xg_config cfg = {.upstreams = ups, .nupstreams = 3};

static struct split_policy *parse(const char *split, const char *sticky, struct cfg_errs *errs)
{
	json_t *a = json_loads(split, JSON_DECODE_ANY, NULL);
	json_t *s = sticky ? json_loads(sticky, JSON_DECODE_ANY, NULL) : NULL;
	struct split_policy *p;

	cfg_errs_free(errs);
	memset(errs, 0, sizeof(*errs));
	p = split_policy_parse(a, s, "routes[3]", "users", &cfg, errs);
	json_decref(a);
	json_decref(s);
	return p;
}

static void test_config_errors(void)
{
	struct cfg_errs errs = {0};

	CHECK(!parse("[{\"upstream\": \"users\", \"weight\": 1}, {\"upstream\": \"nope\"}]", NULL,
		     &errs));
	CHECK(strstr(errs.text, "routes[3].split[1].upstream: unknown upstream \"nope\""));
	CHECK(!parse("[{\"upstream\": \"users\"}, {\"upstream\": \"users-v2\"}]", NULL, &errs));
	CHECK(strstr(errs.text, "routes[3].split: at least one entry needs a weight"));
	CHECK(!parse("[{\"upstream\": \"users\", \"weight\": 1}]", NULL, &errs));
	CHECK(strstr(errs.text, "routes[3].split: must be an array of at least two"));
	CHECK(!parse("[{\"upstream\": \"users\", \"weight\": 1}, {\"upstream\": \"users\"}]", NULL,
		     &errs));
	CHECK(strstr(errs.text, "routes[3].split[1].upstream: upstream listed twice"));
	CHECK(!parse("[{\"upstream\": \"users\", \"weight\": -1}, {\"upstream\": \"users-v2\"}]",
		     NULL, &errs));
	CHECK(strstr(errs.text, "routes[3].split[0].weight"));
	CHECK(!parse("[{\"upstream\": \"users\", \"weight\": 1, \"match\": {}},"
		     " {\"upstream\": \"users-v2\", \"match\": {\"headers\": {\"x\": 1}}}]",
		     NULL, &errs));
	CHECK(strstr(errs.text, "routes[3].split[0].match.headers: at least one header"));
	CHECK(strstr(errs.text, "routes[3].split[1].match.headers.x: must be a string or null"));
	CHECK(!parse(
	    "[{\"upstream\": \"users\", \"weight\": 1, \"w\": 2}, {\"upstream\": \"users-v2\"}]",
	    NULL, &errs));
	CHECK(strstr(errs.text, "routes[3].split[0].w"));
	CHECK(!parse("[{\"upstream\": \"users\", \"weight\": 1}, {\"upstream\": \"users-v2\"}]",
		     "\"cookie:\"", &errs));
	CHECK(strstr(errs.text, "routes[3].sticky: "));
	CHECK(!parse("[{\"upstream\": \"users\", \"weight\": 1}, {\"upstream\": \"users-v2\"}]",
		     "\"moon\"", &errs));
	CHECK(strstr(errs.text, "routes[3].sticky: \"moon\""));
	cfg_errs_free(&errs);
}

static uint64_t key_of(int i)
{
	char k[32];

	snprintf(k, sizeof(k), "client-%d", i);
	return hash_key64(k, strlen(k));
}

static void test_shares_within_tolerance(void)
{
	struct cfg_errs errs = {0};
	struct split_policy *p = parse("[{\"upstream\": \"users-v2\", \"weight\": 10}, "
				       "{\"upstream\": \"users\", \"weight\": 90}]",
				       NULL, &errs);
	struct split_policy *q = parse("[{\"upstream\": \"users\", \"weight\": 50}, {\"upstream\": "
				       "\"users-v2\", \"weight\": 30},"
				       " {\"upstream\": \"users-v3\", \"weight\": 20}]",
				       NULL, &errs);
	int n[3] = {0}, m[3] = {0};

	CHECK(p && q);
	for (int i = 0; i < 2000; i++) {
		n[split_pick(p, key_of(i))]++;
		m[split_pick(q, key_of(i))]++;
	}
	/* Each share within 2.5 points over 2,000 keys (about 2.5 standard deviations)... */
	CHECK(n[0] >= 150 && n[0] <= 250);
	CHECK(m[0] >= 950 && m[0] <= 1050);
	CHECK(m[1] >= 550 && m[1] <= 650);
	CHECK(m[2] >= 350 && m[2] <= 450);
	/* ...and converging: within 0.5 points over 200,000 (no bias in the hashing). */
	memset(m, 0, sizeof(m));
	for (int i = 0; i < 200000; i++)
		m[split_pick(q, key_of(i))]++;
	CHECK(m[0] >= 99000 && m[0] <= 101000);
	CHECK(m[1] >= 59000 && m[1] <= 61000);
	CHECK(m[2] >= 39000 && m[2] <= 41000);
	split_policy_free(p);
	split_policy_free(q);
	cfg_errs_free(&errs);
}

static void test_weight_change_moves_only_its_share(void)
{
	struct cfg_errs errs = {0};
	/* Same entries in another order: the order never matters to the hash. */
	struct split_policy *a = parse("[{\"upstream\": \"users\", \"weight\": 60}, {\"upstream\": "
				       "\"users-v2\", \"weight\": 30},"
				       " {\"upstream\": \"users-v3\", \"weight\": 10}]",
				       NULL, &errs);
	struct split_policy *b = parse("[{\"upstream\": \"users-v3\", \"weight\": 30}, "
				       "{\"upstream\": \"users\", \"weight\": 60},"
				       " {\"upstream\": \"users-v2\", \"weight\": 30}]",
				       NULL, &errs);
	int moved = 0, wrong = 0;

	CHECK(a && b);
	for (int i = 0; i < 4000; i++) {
		int ua = a->entries[split_pick(a, key_of(i))].upstream;
		int ub = b->entries[split_pick(b, key_of(i))].upstream;

		if (ua == ub)
			continue;
		moved++;
		if (ub != 2) /* a key may only move to the entry that grew */
			wrong++;
	}
	CHECK_EQ(wrong, 0);
	/* v3 goes from 10 % to 30/120 = 25 %: about 15 % of the keys move. */
	CHECK(moved > 4000 * 0.12 && moved < 4000 * 0.18);
	split_policy_free(a);
	split_policy_free(b);
	cfg_errs_free(&errs);
}

static void test_match_pins_and_sticky_values(void)
{
	struct cfg_errs errs = {0};
	struct split_policy *p = parse("[{\"upstream\": \"users\", \"weight\": 100},"
				       " {\"upstream\": \"users-v2\", \"weight\": 0, \"match\": "
				       "{\"headers\": {\"X-Canary\": \"1\","
				       " \"X-Beta\": null}}}]",
				       "\"cookie:uid\"", &errs);
	struct http_request req;
	struct http_str v;
	const char *r1 = "GET / HTTP/1.1\r\nHost: a\r\nx-canary: 1\r\nX-Beta: yes\r\n"
			 "Cookie: a=1; uid=u-42 ; b=2\r\n\r\n";
	const char *r2 = "GET / HTTP/1.1\r\nHost: a\r\nX-Canary: 1\r\nCookie: uidx=9; u=3\r\n\r\n";
	const char *r3 = "GET / HTTP/1.1\r\nHost: a\r\nX-Canary: 2\r\nX-Beta: \r\n\r\n";

	CHECK(p != NULL);
	CHECK(http_parse_request(r1, strlen(r1), NULL, &req) > 0);
	CHECK_EQ(split_match(p, &req), 1);
	CHECK(split_sticky_value(p, &req, "1.2.3.4", "", &v));
	CHECK(v.len == 4 && !memcmp(v.p, "u-42", 4));
	CHECK(http_parse_request(r2, strlen(r2), NULL, &req) > 0);
	CHECK_EQ(split_match(p, &req), -1); /* X-Beta missing: every header must hold */
	CHECK(!split_sticky_value(p, &req, "1.2.3.4", "", &v)); /* "uidx" is not "uid" */
	CHECK(http_parse_request(r3, strlen(r3), NULL, &req) > 0);
	CHECK_EQ(split_match(p, &req), -1);
	/* Weight 0: never picked by weight, only by its match. */
	for (int i = 0; i < 200; i++)
		CHECK_EQ(split_pick(p, key_of(i)), 0);
	split_policy_free(p);
	p = parse("[{\"upstream\": \"users\", \"weight\": 1}, {\"upstream\": \"users-v2\", "
		  "\"weight\": 1}]",
		  "\"header:X-User\"", &errs);
	CHECK(http_parse_request(r1, strlen(r1), NULL, &req) > 0);
	CHECK(!split_sticky_value(p, &req, "1.2.3.4", "", &v));
	split_policy_free(p);
	p = parse("[{\"upstream\": \"users\", \"weight\": 1}, {\"upstream\": \"users-v2\", "
		  "\"weight\": 1}]",
		  "\"consumer\"", &errs);
	CHECK(!split_sticky_value(p, &req, "1.2.3.4", "", &v));
	CHECK(split_sticky_value(p, &req, "1.2.3.4", "app", &v) && v.len == 3);
	split_policy_free(p);
	p = parse("[{\"upstream\": \"users\", \"weight\": 1}, {\"upstream\": \"users-v2\", "
		  "\"weight\": 1}]",
		  "\"ip\"", &errs);
	CHECK(split_sticky_value(p, &req, "1.2.3.4", "app", &v) && v.len == 7);
	split_policy_free(p);
	cfg_errs_free(&errs);
}

int main(void)
{
	RUN(test_config_errors);
	RUN(test_shares_within_tolerance);
	RUN(test_weight_change_moves_only_its_share);
	RUN(test_match_pins_and_sticky_values);
	return CHECK_DONE();
}
