/*
 * XDP edge shield lifecycle: parse "edge", attach bpf/xdp_shield to the interfaces through
 * libxdp, pin maps under pin_dir (reusing pinned maps on restart), push runtime config
 * into maps on reload, detach on shutdown.
 */
#ifndef XGATE_EDGE_EDGE_H
#define XGATE_EDGE_EDGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"

struct edge_config;
struct edge;

struct edge_config *edge_config_parse(json_t *edge, const char *path, struct cfg_errs *errs);
void edge_config_free(struct edge_config *c);
const char *edge_config_pin_dir(const struct edge_config *c);

/* Loads, attaches and pins; NULL with a message naming the interface on failure. */
struct edge *edge_start(const struct edge_config *c, char *err, size_t errlen);
/* Applies rates, ports, deny/allow lists through the maps; no detach. 0 or -errno. */
int edge_apply(struct edge *e, const struct edge_config *c, char *err, size_t errlen);
void edge_stop(struct edge *e);

/* For /status and --version: "xg0=native,xg1=generic". */
size_t edge_describe(const struct edge *e, char *out, size_t outlen);

/* Sums the per-CPU stats map pinned in pin_dir: calls fn(reason_name, packets) per reason. */
int edge_read_stats(const char *pin_dir,
		    void (*fn)(const char *reason, uint64_t packets, void *ctx), void *ctx);

#endif
