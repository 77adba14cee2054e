/* userspace/cluster: config parsing with JSON paths, what keeps a connection across a
 * reload, the local share of cluster-scoped limits, and the redis_up aggregation. */
#include <stdlib.h>

#include "check.h"
#include "cluster/cluster.h"
#include "ratelimit/ratelimit.h"

static struct cluster_config *parse(const char *text, struct cfg_errs *errs)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	struct cluster_config *cc = cluster_config_parse(j, "cluster", errs);

	json_decref(j);
	return cc;
}

static void expect_error(const char *text, const char *message)
{
	struct cfg_errs errs = {0};
	struct cluster_config *cc = parse(text, &errs);

	CHECK(cc == NULL);
	CHECK_STR(errs.text, message);
	cfg_errs_free(&errs);
}

static void test_parse_defaults_and_values(void)
{
	struct cfg_errs errs = {0};
	struct cluster_config *cc = parse("{\"redis\": {\"address\": \"127.0.0.1:6380\"}}", &errs);

	CHECK(cc != NULL);
	CHECK_EQ(errs.count, 0);
	CHECK_STR(cc->host, "127.0.0.1");
	CHECK_EQ(cc->port, 6380);
	CHECK(cc->password == NULL);
	CHECK_EQ(cc->db, 0);
	CHECK_EQ(cc->timeout_ms, 50);
	CHECK_STR(cc->key_prefix, "xgate:");
	CHECK_EQ(cc->nodes, 1);
	CHECK_EQ(cc->on_error, CLUSTER_ON_ERROR_LOCAL);
	cluster_config_free(cc);
	cc = parse("{\"redis\": {\"address\": \"[::1]:7000\", \"password\": \"pw\", \"db\": 2, "
		   "\"timeout_ms\": 9, \"key_prefix\": \"p:\"}, \"nodes\": 4, "
		   "\"on_redis_error\": \"closed\"}",
		   &errs);
	CHECK(cc != NULL);
	CHECK_STR(cc->host, "::1");
	CHECK_EQ(cc->port, 7000);
	CHECK_STR(cc->password, "pw");
	CHECK_EQ(cc->db, 2);
	CHECK_EQ(cc->timeout_ms, 9);
	CHECK_STR(cc->key_prefix, "p:");
	CHECK_EQ(cc->nodes, 4);
	CHECK_EQ(cc->on_error, CLUSTER_ON_ERROR_CLOSED);
	cluster_config_free(cc);
	/* An empty password (an unset-but-empty ${VAR}) means no AUTH. */
	cc = parse("{\"redis\": {\"address\": \"10.0.0.1:6379\", \"password\": \"\"}}", &errs);
	CHECK(cc && cc->password == NULL);
	cluster_config_free(cc);
	cfg_errs_free(&errs);
}

static void test_parse_errors_name_paths(void)
{
	expect_error("[]", "cluster: must be an object\n");
	expect_error("{}", "cluster.redis: is required\n");
	expect_error("{\"redis\": {}}", "cluster.redis.address: is required\n");
	expect_error("{\"redis\": {\"address\": \"0.0.0.0:6379\"}}",
		     "cluster.redis.address: must name the Redis host, not a wildcard\n");
	expect_error("{\"redis\": {\"address\": \"127.0.0.1:6379\", \"user\": \"x\"}}",
		     "cluster.redis.user: unknown key\n");
	expect_error("{\"redis\": {\"address\": \"127.0.0.1:6379\"}, \"nodes\": 2000}",
		     "cluster.nodes: must be between 1 and 1024\n");
}

static void test_same_redis(void)
{
	struct cfg_errs errs = {0};
	struct cluster_config *a = parse("{\"redis\": {\"address\": \"127.0.0.1:1\", "
					 "\"key_prefix\": \"a:\"}, \"nodes\": 2}",
					 &errs);
	struct cluster_config *b = parse("{\"redis\": {\"address\": \"127.0.0.1:1\", "
					 "\"key_prefix\": \"b:\"}, \"nodes\": 3}",
					 &errs);
	struct cluster_config *c = parse("{\"redis\": {\"address\": \"127.0.0.1:1\", "
					 "\"password\": \"x\"}}",
					 &errs);

	/* Prefix and node count are read per request: no reconnect for them. */
	CHECK(cluster_config_same_redis(a, b));
	CHECK(!cluster_config_same_redis(a, c));
	CHECK(!cluster_config_same_redis(a, NULL));
	CHECK(cluster_config_same_redis(NULL, NULL));
	cluster_config_free(a);
	cluster_config_free(b);
	cluster_config_free(c);
	cfg_errs_free(&errs);
}

static void test_local_share(void)
{
	struct cfg_errs errs = {0};
	json_t *j = json_loads("{\"per_s\": 10, \"burst\": 30, \"scope\": \"cluster\"}", 0, NULL);
	struct ratelimit_policy *p =
	    ratelimit_policy_parse(j, "routes[0].rate_limit", "share", &errs);
	uint32_t retry;
	int allowed = 0;

	CHECK(p && ratelimit_policy_cluster(p));
	CHECK(ratelimit_policy_set_nodes(p, "share", 3));
	CHECK_EQ(ratelimit_policy_per_s(p), 10);
	CHECK_EQ(ratelimit_policy_burst(p), 30);
	CHECK_EQ(ratelimit_policy_local_per_s(p), 3);
	CHECK_EQ(ratelimit_policy_local_burst(p), 10);
	for (int i = 0; i < 20; i++)
		allowed += ratelimit_take(p, "k", 1, 1000, &retry);
	CHECK_EQ(allowed, 10);
	/* More nodes than the limit: at least one token each. */
	CHECK(ratelimit_policy_set_nodes(p, "share", 50));
	CHECK_EQ(ratelimit_policy_local_per_s(p), 1);
	CHECK_EQ(ratelimit_policy_local_burst(p), 1);
	ratelimit_policy_free(p);
	json_decref(j);
	cfg_errs_free(&errs);
}

static void test_redis_up_gauge(void)
{
	CHECK_EQ(cluster_metrics_up(), -1);
	cluster_metrics_set_up(0, true);
	cluster_metrics_set_up(3, false);
	CHECK_EQ(cluster_metrics_up(), 0);
	cluster_metrics_set_up(3, true);
	CHECK_EQ(cluster_metrics_up(), 1);
	cluster_metrics_clear(0);
	cluster_metrics_clear(3);
	CHECK_EQ(cluster_metrics_up(), -1);
}

int main(void)
{
	RUN(test_parse_defaults_and_values);
	RUN(test_parse_errors_name_paths);
	RUN(test_same_redis);
	RUN(test_local_share);
	RUN(test_redis_up_gauge);
	return CHECK_DONE();
}
