/*
 * Process-wide gateway state shared by the main thread, workers and the admin thread.
 */
#ifndef XGATE_PROXY_GATEWAY_H
#define XGATE_PROXY_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"

struct edge;
struct splice;
struct health_checker;
struct dns_resolver;
struct worker;

struct gateway_features {
	bool io_uring_single_issuer, io_uring_defer_taskrun;
	bool ktls;     /* TLS ULP present */
	bool sockmap;  /* splice programs loaded */
	char xdp[256]; /* edge_describe() or "off" */
};

/* Where a generation's config came from (GET /config/generations "source"). */
enum config_source { CONFIG_SOURCE_FILE, CONFIG_SOURCE_API, CONFIG_SOURCE_ROLLBACK };

#define GATEWAY_GENERATIONS 10

/* One config that was active: kept (before ${ENV} substitution) so it can be rolled back to. */
struct config_generation {
	uint64_t generation;
	int64_t time; /* unix seconds it became active */
	char sha256[65]; /* of the config's canonical JSON (sorted keys, compact) */
	enum config_source source;
	json_t *raw;
};

struct gateway {
	_Atomic(struct xg_config *) config; /* current snapshot; workers take refs */
	const char *config_path;
	int64_t started_at;
	int nworkers;
	struct gateway_features features;
	struct edge *edge;
	struct splice *splice;
	struct health_checker *health; /* set with gateway_set_health() */
	struct dns_resolver *dns;
	struct worker *workers;
	atomic_bool stopping;
	int last_reload_ok;
	char last_reload_errors[4096];
	/* The last GATEWAY_GENERATIONS active configs, oldest first (under the reload lock). */
	struct config_generation generations[GATEWAY_GENERATIONS];
	int ngenerations;
};

/* Flows spliced through pipes (proxy/tunnel_pipe.c), over all workers. */
void tunnel_pipe_stats(unsigned long *total, unsigned long *active, unsigned long *bytes);

/* Validates and swaps in the config file (SIGHUP, POST /reload). 0 on success; on failure
 * the old config keeps serving and errs holds every problem. Serialized internally. */
int gateway_reload(struct gateway *gw, struct cfg_errs *errs);
/* POST /config: validates the JSON text and swaps it in like a reload (source "api"). */
int gateway_apply_text(struct gateway *gw, const char *text, size_t len, struct cfg_errs *errs);
/*
 * POST /config/rollback: swaps back to a kept generation (0: the one active before the
 * current one), recorded as a new generation (source "rollback"). -ENOENT when there is no
 * such generation (errs says which); -EINVAL when it no longer loads (errs has the paths).
 */
int gateway_rollback(struct gateway *gw, uint64_t generation, struct cfg_errs *errs);
/* {"generations": [{"generation", "time", "sha256", "source"}, ...]}, newest last. */
json_t *gateway_generations_json(struct gateway *gw);
/* Records the config the gateway started with as generation 1 (source "file"). */
void gateway_record_initial(struct gateway *gw, const struct xg_config *cfg);
/* Frees the kept generations (at exit). */
void gateway_generations_free(struct gateway *gw);
/* Result of the last reload, consistent with its error text (copied into errors). */
bool gateway_reload_status(struct gateway *gw, char *errors, size_t len);
/* Takes a reference to the current config; release with config_put(). */
struct xg_config *gateway_config(struct gateway *gw);
/* Live connection/worker numbers for /status. */
void gateway_worker_stats(struct gateway *gw, unsigned long *connections_active);
/* Applies the process-wide parts of cfg (XDP, access log) before it is published. */
int gateway_apply(struct gateway *gw, struct xg_config *cfg, struct cfg_errs *errs);
/* Publishes cfg as the current config (takes over the caller's reference). */
void gateway_publish(struct gateway *gw, struct xg_config *cfg);
/* Under the reload lock, so a reload and a DNS pool change never race. */
void gateway_set_health(struct gateway *gw, struct health_checker *hc);
/* The resolver added targets (dns_changed_fn): the health checker learns them. */
void gateway_dns_changed(void *gw, struct xg_config *cfg);
/* Makes every worker look at the current config and the stop flag right away. */
void gateway_wake_workers(struct gateway *gw);

#endif
