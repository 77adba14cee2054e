/* Parsing of the "edge" config section; see edge.h for the meaning of the keys. */
#include "edge/edge.h"

#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* 1e12/s is beyond any NIC; bigger values can only be typos. */
#define EDGE_RATE_MAX 1000000000000LL

static const char *const edge_keys[] = {"interfaces",
					"mode",
					"pin_dir",
					"allow_tcp_ports",
					"per_ip",
					"udp_per_ip_per_s",
					"udp_per_ip_burst",
					"icmp_per_ip_per_s",
					"icmp_per_ip_burst",
					"new_sources_per_s",
					"new_sources_burst",
					"deny",
					"allow",
					"keep_operator_entries",
					NULL};
static const char *const per_ip_keys[] = {"syn_per_s", "syn_burst", "packets_per_s",
					  "packets_burst", NULL};
static const char *const mode_names[] = {"auto", "native", "generic", NULL};

/* Demo values of SPEC.md: a shield without explicit limits still protects. */
static const struct edge_rate default_syn = {100, 200};
static const struct edge_rate default_packets = {20000, 40000};
static const struct edge_rate default_udp = {0, 0};
static const struct edge_rate default_icmp = {10, 10};
/* Most of what rate_v4 (65,536 entries) holds per second: a flood from more spoofed
 * sources than that cannot flush the tracked ones, and legitimate arrivals of new clients
 * at an edge host stay far below it. */
static const struct edge_rate default_new_sources = {50000, 50000};

static void parse_interfaces(struct edge_config *c, json_t *obj, const char *path,
			     struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *arr = cfg_get_array(obj, "interfaces", path, errs), *v;
	size_t i;

	cfg_path_key(p, path, "interfaces");
	if (!arr || !json_array_size(arr)) {
		if (!json_object_get(obj, "interfaces") || arr)
			cfg_err(errs, p, "must list at least one interface");
		return;
	}
	c->interfaces = calloc(json_array_size(arr), sizeof(*c->interfaces));
	if (!c->interfaces) {
		cfg_err(errs, p, "out of memory");
		return;
	}
	json_array_foreach(arr, i, v)
	{
		const char *name = json_string_value(v);
		int j;

		cfg_path_idx(ip, p, i);
		if (!name || !*name || strlen(name) >= IF_NAMESIZE || strchr(name, '/')) {
			cfg_err(errs, ip, "must be an interface name (1 to %d characters)",
				IF_NAMESIZE - 1);
			continue;
		}
		for (j = 0; j < c->ninterfaces; j++)
			if (!strcmp(c->interfaces[j], name))
				break;
		if (j < c->ninterfaces) {
			cfg_err(errs, ip, "interface \"%s\" listed twice", name);
			continue;
		}
		if (!(c->interfaces[c->ninterfaces] = strdup(name))) {
			cfg_err(errs, ip, "out of memory");
			continue;
		}
		c->ninterfaces++;
	}
}

static void parse_ports(struct edge_config *c, json_t *obj, const char *path, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *arr = cfg_get_array(obj, "allow_tcp_ports", path, errs), *v;
	size_t i;

	if (!arr)
		return;
	c->port_policy = true;
	cfg_path_key(p, path, "allow_tcp_ports");
	c->tcp_ports = calloc(json_array_size(arr) + 1, sizeof(*c->tcp_ports));
	if (!c->tcp_ports) {
		cfg_err(errs, p, "out of memory");
		return;
	}
	json_array_foreach(arr, i, v)
	{
		json_int_t port = json_integer_value(v);

		if (!json_is_integer(v) || port < 1 || port > 65535) {
			cfg_err(errs, cfg_path_idx(ip, p, i), "must be a port between 1 and 65535");
			continue;
		}
		c->tcp_ports[c->ntcp_ports++] = port;
	}
}

/* rate at obj.rate_key, burst at obj.burst_key (default: one second's worth). */
static void parse_rate(json_t *obj, const char *path, const char *rate_key, const char *burst_key,
		       struct edge_rate def, struct edge_rate *out, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX];
	long long rate, burst;

	*out = def;
	if (!cfg_get_int(obj, rate_key, path, def.per_s, 0, EDGE_RATE_MAX, &rate, errs))
		return;
	if (json_object_get(obj, rate_key) && !json_object_get(obj, burst_key))
		def.burst = rate;
	if (!cfg_get_int(obj, burst_key, path, def.burst, 0, EDGE_RATE_MAX, &burst, errs))
		return;
	if (rate && !burst) {
		cfg_err(errs, cfg_path_key(p, path, burst_key), "must be at least 1 when %s is set",
			rate_key);
		return;
	}
	out->per_s = rate;
	out->burst = burst;
}

static void parse_cidrs(json_t *obj, const char *key, const char *path, struct edge_cidr **out,
			int *count, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *arr = cfg_get_array(obj, key, path, errs), *v;
	size_t i;

	if (!arr || !json_array_size(arr))
		return;
	cfg_path_key(p, path, key);
	*out = calloc(json_array_size(arr), sizeof(**out));
	if (!*out) {
		cfg_err(errs, p, "out of memory");
		return;
	}
	json_array_foreach(arr, i, v)
	{
		struct edge_cidr *cidr = &(*out)[*count];

		cfg_path_idx(ip, p, i);
		if (!json_is_string(v)) {
			cfg_err(errs, ip, "must be a CIDR string");
			continue;
		}
		if (!cfg_parse_cidr(json_string_value(v), &cidr->family, cidr->addr,
				    &cidr->prefix_len)) {
			cfg_err(errs, ip, "invalid CIDR \"%s\"", json_string_value(v));
			continue;
		}
		(*count)++;
	}
}

struct edge_config *edge_config_parse(json_t *edge, const char *path, struct cfg_errs *errs)
{
	int before = errs->count, mode;
	struct edge_config *c;
	json_t *per_ip;

	if (!json_is_object(edge)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	cfg_check_keys(edge, path, edge_keys, errs);
	parse_interfaces(c, edge, path, errs);
	if (cfg_get_enum(edge, "mode", path, mode_names, EDGE_MODE_AUTO, &mode, errs))
		c->mode = mode;
	cfg_get_str(edge, "pin_dir", path, EDGE_DEFAULT_PIN_DIR, &c->pin_dir, errs);
	if (c->pin_dir && c->pin_dir[0] != '/') {
		char p[CFG_PATH_MAX];

		cfg_err(errs, cfg_path_key(p, path, "pin_dir"), "must be an absolute path");
	}
	parse_ports(c, edge, path, errs);
	per_ip = cfg_get_object(edge, "per_ip", path, errs);
	c->syn = default_syn;
	c->packets = default_packets;
	if (per_ip) {
		char p[CFG_PATH_MAX];

		cfg_path_key(p, path, "per_ip");
		cfg_check_keys(per_ip, p, per_ip_keys, errs);
		parse_rate(per_ip, p, "syn_per_s", "syn_burst", default_syn, &c->syn, errs);
		parse_rate(per_ip, p, "packets_per_s", "packets_burst", default_packets,
			   &c->packets, errs);
	}
	parse_rate(edge, path, "udp_per_ip_per_s", "udp_per_ip_burst", default_udp, &c->udp, errs);
	parse_rate(edge, path, "icmp_per_ip_per_s", "icmp_per_ip_burst", default_icmp, &c->icmp,
		   errs);
	parse_rate(edge, path, "new_sources_per_s", "new_sources_burst", default_new_sources,
		   &c->new_sources, errs);
	parse_cidrs(edge, "deny", path, &c->deny, &c->ndeny, errs);
	parse_cidrs(edge, "allow", path, &c->allow, &c->nallow, errs);
	cfg_get_bool(edge, "keep_operator_entries", path, true, &c->keep_operator_entries, errs);
	if (errs->count != before) {
		edge_config_free(c);
		return NULL;
	}
	return c;
}

void edge_config_free(struct edge_config *c)
{
	int i;

	if (!c)
		return;
	for (i = 0; i < c->ninterfaces; i++)
		free(c->interfaces[i]);
	free(c->interfaces);
	free(c->pin_dir);
	free(c->tcp_ports);
	free(c->deny);
	free(c->allow);
	free(c);
}

const char *edge_config_pin_dir(const struct edge_config *c)
{
	return c->pin_dir;
}
