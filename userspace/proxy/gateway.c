/*
 * Config publication and reload. Workers take a reference under config_lock, so the main
 * thread can drop the old snapshot right after swapping in the new one.
 */
#include "proxy/gateway.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "accesslog/accesslog.h"
#include "common/log.h"
#include "edge/edge.h"
#include "metrics/metrics.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"
#include "splice/splice.h"
#include "upstream/upstream.h"

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

struct xg_config *gateway_config(struct gateway *gw)
{
	struct xg_config *cfg;

	pthread_mutex_lock(&config_lock);
	cfg = config_get(atomic_load(&gw->config));
	pthread_mutex_unlock(&config_lock);
	return cfg;
}

void gateway_publish(struct gateway *gw, struct xg_config *cfg)
{
	struct xg_config *old;

	pthread_mutex_lock(&config_lock);
	old = atomic_exchange(&gw->config, cfg);
	pthread_mutex_unlock(&config_lock);
	if (old)
		config_put(old);
	gateway_wake_workers(gw);
}

void gateway_wake_workers(struct gateway *gw)
{
	for (int i = 0; gw->workers && i < gw->nworkers; i++)
		if (gw->workers[i].started)
			worker_wake(&gw->workers[i]);
}

void gateway_worker_stats(struct gateway *gw, unsigned long *connections_active)
{
	unsigned long total = 0;

	for (int i = 0; gw->workers && i < gw->nworkers; i++)
		total += atomic_load_explicit(&gw->workers[i].active_conns, memory_order_relaxed);
	*connections_active = total;
}

/* Brings the XDP shield in line with the new config: start, apply through maps, or stop. */
static int apply_edge(struct gateway *gw, struct xg_config *cfg, struct cfg_errs *errs)
{
	char err[512] = "";

	if (cfg->edge && gw->edge) {
		if (edge_apply(gw->edge, cfg->edge, err, sizeof(err))) {
			cfg_err(errs, "edge", "%s", err);
			return -1;
		}
	} else if (cfg->edge) {
		gw->edge = edge_start(cfg->edge, err, sizeof(err));
		if (!gw->edge) {
			cfg_err(errs, "edge", "%s", err);
			return -1;
		}
	} else if (gw->edge) {
		edge_stop(gw->edge);
		gw->edge = NULL;
	}
	if (gw->edge)
		edge_describe(gw->edge, gw->features.xdp, sizeof(gw->features.xdp));
	else
		snprintf(gw->features.xdp, sizeof(gw->features.xdp), "off");
	return 0;
}

static int apply_access_log(struct xg_config *old, struct xg_config *cfg, struct cfg_errs *errs)
{
	int ret;

	if (!cfg->access_log.enabled) {
		accesslog_close();
		return 0;
	}
	if (old && old->access_log.enabled && !strcmp(old->access_log.path, cfg->access_log.path))
		return 0;
	ret = accesslog_open(cfg->access_log.path);
	if (ret) {
		cfg_err(errs, "access_log.path", "cannot open \"%s\": %s", cfg->access_log.path,
			strerror(-ret));
		return -1;
	}
	return 0;
}

int gateway_apply(struct gateway *gw, struct xg_config *cfg, struct cfg_errs *errs)
{
	struct xg_config *old = atomic_load(&gw->config);

	if (apply_edge(gw, cfg, errs) || apply_access_log(old, cfg, errs))
		return -1;
	if (gw->splice)
		splice_set_inflight_limit(gw->splice, cfg->limits.splice_max_inflight_bytes);
	return 0;
}

bool gateway_reload_status(struct gateway *gw, char *errors, size_t len)
{
	bool ok;

	pthread_mutex_lock(&reload_lock);
	ok = gw->last_reload_ok != 0;
	snprintf(errors, len, "%s", gw->last_reload_errors);
	pthread_mutex_unlock(&reload_lock);
	return ok;
}

int gateway_reload(struct gateway *gw, struct cfg_errs *errs)
{
	struct xg_config *cfg, *old;
	int ret = -1;

	pthread_mutex_lock(&reload_lock);
	old = gateway_config(gw);
	cfg = config_load_file(gw->config_path, errs);
	if (cfg && !gateway_apply(gw, cfg, errs)) {
		cfg->generation = old->generation + 1;
		if (gw->health)
			health_checker_update(gw->health, cfg);
		gateway_publish(gw, config_get(cfg));
		metrics_set_config_generation(cfg->generation, cfg->loaded_at, 1);
		gw->last_reload_ok = 1;
		gw->last_reload_errors[0] = '\0';
		log_info("config", "reloaded %s: generation %llu", gw->config_path,
			 (unsigned long long)cfg->generation);
		ret = 0;
	} else {
		gw->last_reload_ok = 0;
		snprintf(gw->last_reload_errors, sizeof(gw->last_reload_errors), "%s",
			 errs->text ? errs->text : "unknown error");
		metrics_set_config_generation(old->generation, old->loaded_at, 0);
		log_error("config", "reload of %s rejected, generation %llu keeps serving:\n%s",
			  gw->config_path, (unsigned long long)old->generation,
			  errs->text ? errs->text : "");
	}
	config_put(cfg);
	config_put(old);
	pthread_mutex_unlock(&reload_lock);
	return ret;
}
