/*
 * XDP edge shield lifecycle: parse "edge", attach bpf/xdp_shield to the interfaces through
 * libxdp, pin maps under pin_dir (reusing pinned maps on restart), push runtime config
 * into maps on reload, detach on shutdown. Also the operations xgatectl runs on the
 * pinned maps of a running gateway (deny/allow lists, top sources, stats).
 *
 * Deny/allow reload rule: every entry remembers whether the config listed it and whether
 * an operator added it (xgatectl). A start or reload re-asserts the config's entries and
 * removes entries the config no longer lists unless an operator added them too; operator
 * entries survive reloads and restarts. With "keep_operator_entries": false in the config,
 * a start/reload makes the lists exactly the config's. `deny del`/`allow del` removes an
 * entry whatever its origin; a config-listed entry comes back at the next reload.
 *
 * Rates: 0 means that bucket is off (unlimited), for every *_per_s key. In particular
 * "udp_per_ip_per_s": 0 does not block UDP (replies to the host's own DNS queries must
 * pass); UDP floods are still bounded by per_ip.packets_per_s.
 */
#ifndef XGATE_EDGE_EDGE_H
#define XGATE_EDGE_EDGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cfg.h"

#define EDGE_DEFAULT_PIN_DIR "/sys/fs/bpf/xgate"

enum edge_mode { EDGE_MODE_AUTO, EDGE_MODE_NATIVE, EDGE_MODE_GENERIC };

struct edge_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t prefix_len;
};

struct edge_rate {
	uint64_t per_s; /* 0: unlimited */
	uint64_t burst;
};

struct edge_config {
	char **interfaces;
	int ninterfaces;
	enum edge_mode mode;
	char *pin_dir;
	bool port_policy; /* false when allow_tcp_ports is absent: every port accepted */
	uint16_t *tcp_ports;
	int ntcp_ports;
	struct edge_rate syn, packets, udp, icmp;
	/* Sources the shield starts tracking per second, host-wide (split evenly over the
	 * online CPUs); beyond it an untracked source's packets are dropped. per_s 0: off. */
	struct edge_rate new_sources;
	struct edge_cidr *deny, *allow;
	int ndeny, nallow;
	bool keep_operator_entries;
};

struct edge;

struct edge_config *edge_config_parse(json_t *edge, const char *path, struct cfg_errs *errs);
void edge_config_free(struct edge_config *c);
const char *edge_config_pin_dir(const struct edge_config *c);

/* Loads, attaches and pins; NULL with a message naming the interface on failure. */
struct edge *edge_start(const struct edge_config *c, char *err, size_t errlen);
/* Applies rates, ports, deny/allow lists through the maps; no detach. 0 or -errno.
 * Interface, mode and pin_dir changes need a restart: they are logged and ignored. */
int edge_apply(struct edge *e, const struct edge_config *c, char *err, size_t errlen);
/* Detaches from every interface; pinned maps stay (deny lists survive a restart). */
void edge_stop(struct edge *e);

/* For /status and --version: "xg0=native,xg1=generic". */
size_t edge_describe(const struct edge *e, char *out, size_t outlen);

/* Short name of an enum xdp_reason value ("pass", "deny", "syn_rate", ...), NULL if unknown. */
const char *edge_reason_name(int reason);

/* Sums the per-CPU stats map pinned in pin_dir: calls fn(reason_name, packets) per reason,
 * in enum order, zeros included. 0 or -errno. */
int edge_read_stats(const char *pin_dir,
		    void (*fn)(const char *reason, uint64_t packets, void *ctx), void *ctx);

/* ---- xgatectl: operations on the pinned maps of a running gateway ---- */

enum edge_list { EDGE_LIST_DENY, EDGE_LIST_ALLOW };

struct edge_list_entry {
	struct edge_cidr cidr;
	bool from_config;
	bool from_operator;
};

/* cidr: "198.18.0.0/15", "2001:db8::/48" or a bare address. 0 or -errno with err set. */
int edge_list_add(const char *pin_dir, enum edge_list list, const char *cidr, char *err,
		  size_t errlen);
/* -ENOENT (with err) when the CIDR is not in the list. */
int edge_list_del(const char *pin_dir, enum edge_list list, const char *cidr, char *err,
		  size_t errlen);
/* Calls fn for every entry, IPv4 first; a non-zero return from fn stops and is returned. */
int edge_list_read(const char *pin_dir, enum edge_list list,
		   int (*fn)(const struct edge_list_entry *entry, void *ctx), void *ctx, char *err,
		   size_t errlen);

/* "203.0.113.0/24", "2001:db8::/64"; returns the length like snprintf. */
size_t edge_cidr_format(const struct edge_cidr *c, char *out, size_t outlen);

struct edge_source {
	struct edge_cidr source; /* IPv4 /32 or IPv6 /64 */
	uint64_t packets;	 /* seen past deny/allow */
	uint64_t drops;		 /* dropped by a rate limit */
};

enum edge_top_by { EDGE_TOP_PACKETS, EDGE_TOP_DROPS };

/* The `max` busiest sources of rate_v4 and rate_v6, sorted descending by `by` (ties by
 * the other counter). Returns how many were written to out, or -errno with err set. */
ssize_t edge_top(const char *pin_dir, enum edge_top_by by, struct edge_source *out, size_t max,
		 char *err, size_t errlen);

#endif
