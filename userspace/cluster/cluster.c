/* Cluster config and the xgate_cluster_redis_up state: see cluster.h. */
#include "cluster/cluster.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

static const char *const on_error_names[] = {"local", "open", "closed", NULL};

static bool parse_redis_address(json_t *redis, const char *path, struct cluster_config *cc,
				struct cfg_errs *errs)
{
	char kp[CFG_PATH_MAX], err[128];
	struct sockaddr_storage ss;
	socklen_t len;

	cfg_path_key(kp, path, "address");
	if (!json_object_get(redis, "address")) {
		cfg_err(errs, kp, "is required");
		return false;
	}
	if (!cfg_get_str(redis, "address", path, NULL, &cc->address_text, errs))
		return false;
	if (!cfg_parse_addr(cc->address_text, &ss, &len, err, sizeof(err))) {
		cfg_err(errs, kp, "%s", err);
		return false;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, cc->host, sizeof(cc->host));
		cc->port = ntohs(s6->sin6_port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		if (s4->sin_addr.s_addr == htonl(INADDR_ANY)) {
			cfg_err(errs, kp, "must name the Redis host, not a wildcard");
			return false;
		}
		inet_ntop(AF_INET, &s4->sin_addr, cc->host, sizeof(cc->host));
		cc->port = ntohs(s4->sin_port);
	}
	if (!cc->port) {
		cfg_err(errs, kp, "port 0 is not a Redis port");
		return false;
	}
	return true;
}

static void parse_redis(json_t *redis, const char *path, struct cluster_config *cc,
			struct cfg_errs *errs)
{
	static const char *const keys[] = {"address",	 "password",   "db",
					   "timeout_ms", "key_prefix", NULL};
	long long v;

	cfg_check_keys(redis, path, keys, errs);
	parse_redis_address(redis, path, cc, errs);
	cfg_get_str(redis, "password", path, NULL, &cc->password, errs);
	if (cc->password && !cc->password[0]) {
		free(cc->password); /* "${UNSET}" → "": no AUTH, as with no password */
		cc->password = NULL;
	}
	cfg_get_int(redis, "db", path, 0, 0, 1 << 20, &v, errs);
	cc->db = v;
	cfg_get_int(redis, "timeout_ms", path, 50, 1, 60000, &v, errs);
	cc->timeout_ms = v;
	cfg_get_str(redis, "key_prefix", path, "xgate:", &cc->key_prefix, errs);
}

struct cluster_config *cluster_config_parse(json_t *obj, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"redis", "nodes", "on_redis_error", NULL};
	struct cluster_config *cc;
	int before = errs->count, e = CLUSTER_ON_ERROR_LOCAL;
	char kp[CFG_PATH_MAX];
	long long v;
	json_t *redis;

	if (!json_is_object(obj)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	cc = calloc(1, sizeof(*cc));
	if (!cc) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	cfg_check_keys(obj, path, keys, errs);
	redis = cfg_get_object(obj, "redis", path, errs);
	if (redis)
		parse_redis(redis, cfg_path_key(kp, path, "redis"), cc, errs);
	else if (!json_object_get(obj, "redis"))
		cfg_err(errs, cfg_path_key(kp, path, "redis"), "is required");
	cfg_get_int(obj, "nodes", path, 1, 1, 1024, &v, errs);
	cc->nodes = v;
	cfg_get_enum(obj, "on_redis_error", path, on_error_names, CLUSTER_ON_ERROR_LOCAL, &e, errs);
	cc->on_error = e;
	if (errs->count != before) {
		cluster_config_free(cc);
		return NULL;
	}
	return cc;
}

void cluster_config_free(struct cluster_config *cc)
{
	if (!cc)
		return;
	free(cc->address_text);
	free(cc->password);
	free(cc->key_prefix);
	free(cc);
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

bool cluster_config_same_redis(const struct cluster_config *a, const struct cluster_config *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a->host, b->host) && a->port == b->port && a->db == b->db &&
	       a->timeout_ms == b->timeout_ms && str_eq(a->password, b->password);
}

/* Per worker: 0 no cluster connection, 1 down, 2 up. */
static _Atomic unsigned char worker_up[METRICS_MAX_WORKERS];

void cluster_metrics_set_up(int worker_id, bool up)
{
	if (worker_id >= 0 && worker_id < METRICS_MAX_WORKERS)
		atomic_store(&worker_up[worker_id], up ? 2 : 1);
}

void cluster_metrics_clear(int worker_id)
{
	if (worker_id >= 0 && worker_id < METRICS_MAX_WORKERS)
		atomic_store(&worker_up[worker_id], 0);
}

int cluster_metrics_up(void)
{
	int seen = 0, up = 1;

	for (int i = 0; i < METRICS_MAX_WORKERS; i++) {
		unsigned char v = atomic_load(&worker_up[i]);

		if (!v)
			continue;
		seen = 1;
		if (v != 2)
			up = 0;
	}
	return seen ? up : -1;
}

/* Per worker, each written by its worker only. */
static _Atomic uint64_t lease_hits[METRICS_MAX_WORKERS], lease_waits[METRICS_MAX_WORKERS];

void cluster_metrics_lease(int worker_id, bool hit)
{
	if (worker_id < 0 || worker_id >= METRICS_MAX_WORKERS)
		return;
	atomic_fetch_add_explicit(hit ? &lease_hits[worker_id] : &lease_waits[worker_id], 1,
				  memory_order_relaxed);
}

void cluster_metrics_lease_totals(uint64_t *hits, uint64_t *waits)
{
	*hits = *waits = 0;
	for (int i = 0; i < METRICS_MAX_WORKERS; i++) {
		*hits += atomic_load_explicit(&lease_hits[i], memory_order_relaxed);
		*waits += atomic_load_explicit(&lease_waits[i], memory_order_relaxed);
	}
}
