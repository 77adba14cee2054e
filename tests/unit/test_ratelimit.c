/* userspace/ratelimit: parsing with paths, fake-clock buckets, sharing across reloads,
 * bounded tables, and two threads hammering one key. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "ratelimit/ratelimit.h"

#define MS 1000000ULL
#define S 1000000000ULL

static struct ratelimit_policy *parse(const char *text, const char *route, struct cfg_errs *errs)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	struct ratelimit_policy *p = ratelimit_policy_parse(j, "routes[1].rate_limit", route, errs);

	json_decref(j);
	return p;
}

static struct ratelimit_policy *parse_ok(const char *text, const char *route)
{
	struct cfg_errs errs = {0};
	struct ratelimit_policy *p = parse(text, route, &errs);

	CHECK_EQ(errs.count, 0);
	cfg_errs_free(&errs);
	return p;
}

static void expect_error(const char *text, const char *message)
{
	struct cfg_errs errs = {0};
	struct ratelimit_policy *p = parse(text, "r", &errs);

	CHECK(p == NULL);
	CHECK_STR(errs.text, message);
	cfg_errs_free(&errs);
	ratelimit_policy_free(p);
}

static void test_parse(void)
{
	struct ratelimit_policy *p =
	    parse_ok("{\"per_s\": 100, \"burst\": 200, \"by\": \"consumer\"}", "parse");

	CHECK(p != NULL);
	if (!p)
		return;
	CHECK_EQ(ratelimit_policy_by(p), RL_BY_CONSUMER);
	CHECK_EQ(ratelimit_policy_per_s(p), 100);
	CHECK_EQ(ratelimit_policy_burst(p), 200);
	ratelimit_policy_free(p);
	/* Defaults: burst = per_s, by = ip. */
	p = parse_ok("{\"per_s\": 7}", "parse");
	CHECK(p && ratelimit_policy_burst(p) == 7 && ratelimit_policy_by(p) == RL_BY_IP);
	ratelimit_policy_free(p);
}

static void test_parse_errors(void)
{
	expect_error("{\"burst\": 5}", "routes[1].rate_limit.per_s: is required\n");
	expect_error("{\"per_s\": 0}",
		     "routes[1].rate_limit.per_s: must be between 1 and 1000000000\n");
	expect_error("{\"per_s\": \"10\"}", "routes[1].rate_limit.per_s: must be an integer\n");
	expect_error("{\"per_s\": 10, \"burst\": 0}",
		     "routes[1].rate_limit.burst: must be between 1 and 1000000000\n");
	expect_error("{\"per_s\": 10, \"by\": \"host\"}",
		     "routes[1].rate_limit.by: must be one of \"ip\", \"consumer\", \"route\"\n");
	expect_error("{\"per_s\": 10, \"per_m\": 3}", "routes[1].rate_limit.per_m: unknown key\n");
	expect_error("[10]", "routes[1].rate_limit: must be an object\n");
}

static void test_burst_refill_retry_after(void)
{
	struct ratelimit_policy *p = parse_ok("{\"per_s\": 2, \"burst\": 3}", "refill");
	uint64_t t0 = 100 * S;
	uint32_t retry = 0;
	int i;

	if (!p)
		return;
	for (i = 0; i < 3; i++)
		CHECK(ratelimit_take(p, "k", 1, t0, &retry));
	CHECK(!ratelimit_take(p, "k", 1, t0, &retry));
	CHECK_EQ(retry, 1);
	/* Another key is independent. */
	CHECK(ratelimit_take(p, "other", 5, t0, &retry));
	CHECK(!ratelimit_take(p, "k", 1, t0 + 499 * MS, &retry));
	CHECK(ratelimit_take(p, "k", 1, t0 + 500 * MS, &retry));
	ratelimit_policy_free(p);

	/* Retry-After rounds up to whole seconds: 1 per 10 s. */
	p = parse_ok("{\"per_s\": 1, \"burst\": 1}", "slow");
	if (!p)
		return;
	CHECK(ratelimit_take(p, "k", 1, t0, &retry));
	CHECK(!ratelimit_take(p, "k", 1, t0 + 200 * MS, &retry));
	CHECK_EQ(retry, 1);
	ratelimit_policy_free(p);
}

static void test_buckets_survive_reload(void)
{
	struct ratelimit_policy *old = parse_ok("{\"per_s\": 1, \"burst\": 2}", "reload");
	struct ratelimit_policy *same, *changed, *other_route;
	uint64_t t0 = 50 * S;

	if (!old)
		return;
	CHECK(ratelimit_take(old, "k", 1, t0, NULL));
	CHECK(ratelimit_take(old, "k", 1, t0, NULL));
	/* The new generation is parsed while the old one still serves. */
	same = parse_ok("{\"per_s\": 1, \"burst\": 2}", "reload");
	changed = parse_ok("{\"per_s\": 1, \"burst\": 3}", "reload");
	other_route = parse_ok("{\"per_s\": 1, \"burst\": 2}", "reload-2");
	ratelimit_policy_free(old);
	CHECK(same && changed && other_route);
	if (same)
		CHECK(!ratelimit_take(same, "k", 1, t0, NULL));
	if (changed)
		CHECK(ratelimit_take(changed, "k", 1, t0, NULL));
	if (other_route)
		CHECK(ratelimit_take(other_route, "k", 1, t0, NULL));
	ratelimit_policy_free(same);
	ratelimit_policy_free(changed);
	ratelimit_policy_free(other_route);
	/* Once every generation is gone the table is too: a fresh burst. */
	same = parse_ok("{\"per_s\": 1, \"burst\": 2}", "reload");
	if (same)
		CHECK(ratelimit_take(same, "k", 1, t0, NULL));
	ratelimit_policy_free(same);
}

static void test_table_is_bounded(void)
{
	struct ratelimit_policy *p = parse_ok("{\"per_s\": 1, \"burst\": 1}", "bounded");
	uint64_t t0 = 10 * S;
	uint32_t i;

	if (!p)
		return;
	CHECK(ratelimit_take(p, "first", 5, t0, NULL));
	for (i = 0; i < 3 * RATELIMIT_MAX_KEYS; i++)
		ratelimit_take(p, &i, sizeof(i), t0 + 1, NULL);
	CHECK(ratelimit_policy_keys(p) <= RATELIMIT_MAX_KEYS);
	CHECK(ratelimit_policy_keys(p) > RATELIMIT_MAX_KEYS / 2);
	/* The idle key was evicted, and comes back with a full bucket. */
	CHECK(ratelimit_take(p, "first", 5, t0 + 2, NULL));
	/* A recently used key is kept: its bucket is still empty. */
	CHECK(!ratelimit_take(p, "first", 5, t0 + 3, NULL));
	ratelimit_policy_free(p);
}

static void test_long_keys(void)
{
	struct ratelimit_policy *p = parse_ok("{\"per_s\": 1, \"burst\": 1}", "long");
	char a[600], b[600];

	if (!p)
		return;
	memset(a, 'a', sizeof(a));
	memset(b, 'a', sizeof(b));
	b[599] = 'b'; /* differs only beyond RATELIMIT_KEY_MAX: same key */
	CHECK(ratelimit_take(p, a, sizeof(a), S, NULL));
	CHECK(!ratelimit_take(p, b, sizeof(b), S, NULL));
	ratelimit_policy_free(p);
}

struct hammer {
	struct ratelimit_policy *p;
	uint64_t end_ns;
	long granted;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * S + ts.tv_nsec;
}

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	uint64_t now;

	while ((now = mono_ns()) < h->end_ns)
		h->granted += ratelimit_take(h->p, "shared", 6, now, NULL);
	return NULL;
}

static void test_two_threads_share_one_bucket(void)
{
	struct ratelimit_policy *p = parse_ok("{\"per_s\": 1000, \"burst\": 100}", "hammer");
	struct hammer h[2];
	pthread_t th[2];
	uint64_t start;
	double expect, got;
	int i;

	if (!p)
		return;
	start = mono_ns();
	for (i = 0; i < 2; i++) {
		h[i] = (struct hammer){.p = p, .end_ns = start + 300 * MS};
		pthread_create(&th[i], NULL, hammer_thread, &h[i]);
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	got = h[0].granted + h[1].granted;
	expect = 100 + 1000 * (mono_ns() - start) / (double)S;
	/* burst + rate * time, not twice that; both threads got some. */
	CHECK(got <= expect * 1.05 + 2);
	CHECK(got >= expect * 0.9 - 20);
	CHECK(h[0].granted > 0 && h[1].granted > 0);
	ratelimit_policy_free(p);
}

static void test_ip_key(void)
{
	char k[RATELIMIT_IP_KEY_LEN], small[8];

	CHECK_EQ(ratelimit_ip_key("192.0.2.7", k, sizeof(k)), strlen("ip:192.0.2.7"));
	CHECK_STR(k, "ip:192.0.2.7");
	/* one /64, one key; the neighbouring /64 is another */
	ratelimit_ip_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", k, sizeof(k));
	CHECK_STR(k, "ip:2001:db8:1:2::/64");
	ratelimit_ip_key("2001:db8:1:2::1", k, sizeof(k));
	CHECK_STR(k, "ip:2001:db8:1:2::/64");
	ratelimit_ip_key("2001:DB8:1:2:ffff:ffff:ffff:ffff", k, sizeof(k));
	CHECK_STR(k, "ip:2001:db8:1:2::/64");
	ratelimit_ip_key("2001:db8:1:3::1", k, sizeof(k));
	CHECK_STR(k, "ip:2001:db8:1:3::/64");
	ratelimit_ip_key("::1", k, sizeof(k));
	CHECK_STR(k, "ip:::/64");
	ratelimit_ip_key("fe80::1:2:3:4", k, sizeof(k));
	CHECK_STR(k, "ip:fe80::/64");
	/* IPv4-mapped: the IPv4 address */
	ratelimit_ip_key("::ffff:192.0.2.7", k, sizeof(k));
	CHECK_STR(k, "ip:192.0.2.7");
	/* not an address: as it is, still in the ip: space */
	ratelimit_ip_key("", k, sizeof(k));
	CHECK_STR(k, "ip:");
	ratelimit_ip_key("junk", k, sizeof(k));
	CHECK_STR(k, "ip:junk");
	/* the longest IPv6 text fits the documented size */
	CHECK(ratelimit_ip_key("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", k, sizeof(k)) <
	      sizeof(k));
	CHECK_STR(k, "ip:ffff:ffff:ffff:ffff::/64");
	/* truncation stays inside the buffer */
	CHECK_EQ(ratelimit_ip_key("192.0.2.7", small, sizeof(small)), sizeof(small) - 1);
	CHECK_STR(small, "ip:192.");
	CHECK_EQ(ratelimit_ip_key("192.0.2.7", small, 0), 0);
}

int main(void)
{
	RUN(test_ip_key);
	RUN(test_parse);
	RUN(test_parse_errors);
	RUN(test_burst_refill_retry_after);
	RUN(test_buckets_survive_reload);
	RUN(test_table_is_bounded);
	RUN(test_long_keys);
	RUN(test_two_threads_share_one_bucket);
	return CHECK_DONE();
}
