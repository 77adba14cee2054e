/*
 * Config publication and reload. Workers take a reference under config_lock, so the main
 * thread can drop the old snapshot right after swapping in the new one.
 */
#include "proxy/gateway.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "accesslog/accesslog.h"
#include "common/log.h"
#include "edge/edge.h"
#include "metrics/metrics.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"
#include "splice/splice.h"
#include "upstream/dns.h"
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

static const char *const source_names[] = {
    [CONFIG_SOURCE_FILE] = "file", [CONFIG_SOURCE_API] = "api",
    [CONFIG_SOURCE_ROLLBACK] = "rollback"};

static void config_sha256(json_t *raw, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *text = json_dumps(raw, JSON_SORT_KEYS | JSON_COMPACT);

	out[0] = '\0';
	if (text && EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL))
		for (unsigned int i = 0; i < mdlen && i < 32; i++)
			snprintf(out + 2 * i, 3, "%02x", md[i]);
	free(text);
}

/* Under reload_lock: appends cfg as the newest kept generation, dropping the oldest. */
static void record_generation(struct gateway *gw, const struct xg_config *cfg,
			      enum config_source source)
{
	struct config_generation *g;

	if (gw->ngenerations == GATEWAY_GENERATIONS) {
		json_decref(gw->generations[0].raw);
		memmove(&gw->generations[0], &gw->generations[1],
			sizeof(gw->generations[0]) * (GATEWAY_GENERATIONS - 1));
		gw->ngenerations--;
	}
	g = &gw->generations[gw->ngenerations++];
	g->generation = cfg->generation;
	g->time = cfg->loaded_at;
	g->source = source;
	g->raw = json_incref(cfg->raw);
	config_sha256(cfg->raw, g->sha256);
}

void gateway_record_initial(struct gateway *gw, const struct xg_config *cfg)
{
	pthread_mutex_lock(&reload_lock);
	record_generation(gw, cfg, CONFIG_SOURCE_FILE);
	pthread_mutex_unlock(&reload_lock);
}

void gateway_set_health(struct gateway *gw, struct health_checker *hc)
{
	pthread_mutex_lock(&reload_lock);
	gw->health = hc;
	pthread_mutex_unlock(&reload_lock);
}

/* The current config, not the resolver's: a reload may have replaced that one already. */
void gateway_dns_changed(void *arg, struct xg_config *cfg)
{
	struct gateway *gw = arg;
	struct xg_config *cur;

	pthread_mutex_lock(&reload_lock);
	cur = gateway_config(gw);
	if (gw->health && cur == cfg)
		health_checker_update(gw->health, cur);
	config_put(cur);
	pthread_mutex_unlock(&reload_lock);
}

void gateway_generations_free(struct gateway *gw)
{
	for (int i = 0; i < gw->ngenerations; i++)
		json_decref(gw->generations[i].raw);
	gw->ngenerations = 0;
}

/*
 * Under reload_lock: applies and publishes a loaded config (NULL: it did not load) as the
 * next generation, or keeps the old one serving. Every path to a new config goes here.
 */
static int install(struct gateway *gw, struct xg_config *cfg, enum config_source source,
		   const char *what, struct cfg_errs *errs)
{
	struct xg_config *old = gateway_config(gw);
	int ret = -1;

	if (cfg && !gateway_apply(gw, cfg, errs)) {
		cfg->generation = old->generation + 1;
		if (gw->health)
			health_checker_update(gw->health, cfg);
		dns_resolver_update(gw->dns, cfg);
		record_generation(gw, cfg, source);
		gateway_publish(gw, config_get(cfg));
		metrics_set_config_generation(cfg->generation, cfg->loaded_at, 1);
		gw->last_reload_ok = 1;
		gw->last_reload_errors[0] = '\0';
		log_info("config", "%s: generation %llu (%s)", what,
			 (unsigned long long)cfg->generation, source_names[source]);
		ret = 0;
	} else {
		gw->last_reload_ok = 0;
		snprintf(gw->last_reload_errors, sizeof(gw->last_reload_errors), "%s",
			 errs->text ? errs->text : "unknown error");
		metrics_set_config_generation(old->generation, old->loaded_at, 0);
		log_error("config", "%s rejected, generation %llu keeps serving:\n%s", what,
			  (unsigned long long)old->generation, errs->text ? errs->text : "");
	}
	config_put(cfg);
	config_put(old);
	return ret;
}

int gateway_reload(struct gateway *gw, struct cfg_errs *errs)
{
	char what[300];
	int ret;

	pthread_mutex_lock(&reload_lock);
	snprintf(what, sizeof(what), "reload of %s", gw->config_path);
	ret = install(gw, config_load_file(gw->config_path, errs), CONFIG_SOURCE_FILE, what, errs);
	pthread_mutex_unlock(&reload_lock);
	return ret;
}

int gateway_apply_text(struct gateway *gw, const char *text, size_t len, struct cfg_errs *errs)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	int ret;

	if (!root)
		cfg_err(errs, "", "body:%d:%d: %s", jerr.line, jerr.column, jerr.text);
	pthread_mutex_lock(&reload_lock);
	ret = install(gw, root ? config_load_json(root, gw->config_path, errs) : NULL,
		      CONFIG_SOURCE_API, "config from the admin API", errs);
	pthread_mutex_unlock(&reload_lock);
	json_decref(root);
	return ret;
}

int gateway_rollback(struct gateway *gw, uint64_t generation, struct cfg_errs *errs)
{
	json_t *raw = NULL;
	int ret;

	pthread_mutex_lock(&reload_lock);
	if (!generation && gw->ngenerations >= 2)
		generation = gw->generations[gw->ngenerations - 2].generation;
	for (int i = 0; generation && i < gw->ngenerations; i++)
		if (gw->generations[i].generation == generation)
			raw = json_incref(gw->generations[i].raw);
	if (!raw) {
		if (generation)
			cfg_err(errs, "generation", "generation %llu is not kept (the last %d are)",
				(unsigned long long)generation, GATEWAY_GENERATIONS);
		else
			cfg_err(errs, "generation", "no generation before the current one");
		pthread_mutex_unlock(&reload_lock);
		return -ENOENT;
	}
	ret = install(gw, config_load_json(raw, gw->config_path, errs), CONFIG_SOURCE_ROLLBACK,
		      "rollback", errs) ? -EINVAL : 0;
	json_decref(raw);
	pthread_mutex_unlock(&reload_lock);
	return ret;
}

json_t *gateway_generations_json(struct gateway *gw)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&reload_lock);
	for (int i = 0; arr && i < gw->ngenerations; i++) {
		const struct config_generation *g = &gw->generations[i];

		json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:s}", "generation",
						     (json_int_t)g->generation, "time",
						     (json_int_t)g->time, "sha256", g->sha256,
						     "source", source_names[g->source]));
	}
	pthread_mutex_unlock(&reload_lock);
	return json_pack("{s:o*}", "generations", arr);
}
