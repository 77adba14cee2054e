/* Map helpers shared by the loader (edge.c), the xgatectl operations and the BPF tests. */
#ifndef XGATE_EDGE_EDGE_INTERNAL_H
#define XGATE_EDGE_EDGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edge/edge.h"

/* Names under pin_dir; equal to the map names in bpf/xdp_shield.bpf.c. */
#define EDGE_MAP_STATS "stats"
#define EDGE_MAP_CONFIG "config"
#define EDGE_MAP_DENY_V4 "deny_v4"
#define EDGE_MAP_DENY_V6 "deny_v6"
#define EDGE_MAP_ALLOW_V4 "allow_v4"
#define EDGE_MAP_ALLOW_V6 "allow_v6"
#define EDGE_MAP_RATE_V4 "rate_v4"
#define EDGE_MAP_RATE_V6 "rate_v6"
#define EDGE_MAP_DROP_CACHE "drop_cache"
#define EDGE_MAP_LISTS_GEN "lists_gen"

/* Opens pin_dir/name; -errno with a message naming the path. */
int edge_pin_open(const char *pin_dir, const char *name, char *err, size_t errlen);

/* Fills the config map from c; clock_offset_ns is for tests (the gateway passes 0). */
int edge_write_config(int config_fd, const struct edge_config *c, uint64_t clock_offset_ns);

/* Applies the reload rule of edge.h to one list (both families). 0 or -errno. */
int edge_sync_list(int v4_fd, int v6_fd, const struct edge_cidr *cidrs, int n,
		   bool keep_operator_entries);

/* Tells the program the deny/allow lists changed (call after the change): cached
 * refusals computed under the old lists stop applying. 0 or -errno. */
int edge_lists_changed(int lists_gen_fd);

#endif
