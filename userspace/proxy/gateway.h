/*
 * Process-wide gateway state shared by the main thread, workers and the admin thread.
 */
#ifndef XGATE_PROXY_GATEWAY_H
#define XGATE_PROXY_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct edge;
struct splice;
struct health_checker;
struct worker;

struct gateway_features {
	bool io_uring_single_issuer, io_uring_defer_taskrun;
	bool ktls;     /* TLS ULP present */
	bool sockmap;  /* splice programs loaded */
	char xdp[256]; /* edge_describe() or "off" */
};

struct gateway {
	_Atomic(struct xg_config *) config; /* current snapshot; workers take refs */
	const char *config_path;
	int64_t started_at;
	int nworkers;
	struct gateway_features features;
	struct edge *edge;
	struct splice *splice;
	struct health_checker *health;
	struct worker *workers;
	atomic_bool stopping;
	int last_reload_ok;
	char last_reload_errors[4096];
};

/* Flows spliced through pipes (proxy/tunnel_pipe.c), over all workers. */
void tunnel_pipe_stats(unsigned long *total, unsigned long *active, unsigned long *bytes);

/* Validates and swaps in the config file (SIGHUP, POST /reload). 0 on success; on failure
 * the old config keeps serving and errs holds every problem. Serialized internally. */
int gateway_reload(struct gateway *gw, struct cfg_errs *errs);
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
/* Makes every worker look at the current config and the stop flag right away. */
void gateway_wake_workers(struct gateway *gw);

#endif
