/*
 * Config of DNS discovery: host-name targets (collected by the upstream parser), an
 * upstream's "dns": {"srv": NAME} and "resolve": {"interval_s": N}, and the top-level
 * "resolver": {"servers": ["IP:PORT", ...]}.
 */
#include "upstream/dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

bool dns_upstream_add_source(struct upstream_config *uc, enum dns_kind kind, const char *name,
			     uint16_t port, uint32_t weight, const char *text)
{
	struct dns_source *grown, *src;

	if (!uc->dns) {
		uc->dns = calloc(1, sizeof(*uc->dns));
		if (!uc->dns)
			return false;
	}
	grown = realloc(uc->dns->sources, (uc->dns->nsources + 1) * sizeof(*grown));
	if (!grown)
		return false;
	uc->dns->sources = grown;
	src = &grown[uc->dns->nsources];
	memset(src, 0, sizeof(*src));
	src->entry = dns_entry_get(uc->name ? uc->name : "", kind, name);
	src->port = port;
	src->weight = weight;
	src->text = strdup(text);
	if (!src->entry || !src->text) {
		free(src->text);
		return false;
	}
	uc->dns->nsources++;
	return true;
}

bool dns_upstream_has_source(const struct upstream_config *uc, const char *text)
{
	for (int i = 0; uc->dns && i < uc->dns->nsources; i++)
		if (!strcasecmp(uc->dns->sources[i].text, text))
			return true;
	return false;
}

static void parse_srv(json_t *u, const char *path, struct upstream_config *uc,
		      struct cfg_errs *errs)
{
	static const char *const keys[] = {"srv", NULL};
	char p[CFG_PATH_MAX], sp[CFG_PATH_MAX], *srv = NULL;
	json_t *o = cfg_get_object(u, "dns", path, errs);

	if (!o)
		return;
	cfg_path_key(p, path, "dns");
	cfg_check_keys(o, p, keys, errs);
	cfg_path_key(sp, p, "srv");
	if (!cfg_get_str(o, "srv", p, NULL, &srv, errs))
		return;
	if (!srv || !*srv)
		cfg_err(errs, sp, "required: the SRV name, e.g. \"_http._tcp.users.internal\"");
	else if (!dns_name_valid(srv, true))
		cfg_err(errs, sp, "invalid SRV name \"%s\"", srv);
	else if (!dns_upstream_add_source(uc, DNS_KIND_SRV, srv, 0, 0, srv))
		cfg_err(errs, sp, "out of memory");
	free(srv);
}

void dns_upstream_parse(json_t *u, const char *path, struct upstream_config *uc,
			struct cfg_errs *errs)
{
	static const char *const keys[] = {"interval_s", NULL};
	char p[CFG_PATH_MAX];
	json_t *o;
	long long v;

	parse_srv(u, path, uc, errs);
	o = cfg_get_object(u, "resolve", path, errs);
	if (!o)
		return;
	cfg_path_key(p, path, "resolve");
	cfg_check_keys(o, p, keys, errs);
	if (!uc->dns) {
		cfg_err(errs, p, "only valid with host-name targets or \"dns\"");
		return;
	}
	cfg_get_int(o, "interval_s", p, 0, 1, 86400, &v, errs);
	uc->dns->interval_s = v;
}

void dns_resolver_parse(json_t *root, char **servers, struct cfg_errs *errs)
{
	static const char *const keys[] = {"servers", NULL};
	json_t *o = cfg_get_object(root, "resolver", "", errs), *arr, *s;
	char p[CFG_PATH_MAX], msg[128], text[80];
	size_t i, len = 0;
	char *csv;

	*servers = NULL;
	if (!o)
		return;
	cfg_check_keys(o, "resolver", keys, errs);
	arr = cfg_get_array(o, "servers", "resolver", errs);
	if (!arr)
		return;
	if (!json_array_size(arr)) {
		cfg_err(errs, "resolver.servers",
			"at least one server (omit it for /etc/resolv.conf)");
		return;
	}
	csv = calloc(json_array_size(arr), sizeof(text) + 1);
	if (!csv)
		return;
	json_array_foreach(arr, i, s)
	{
		struct sockaddr_storage ss;
		socklen_t sl;

		cfg_path_idx(p, "resolver.servers", i);
		if (!json_is_string(s)) {
			cfg_err(errs, p, "must be a string \"IP:PORT\"");
			continue;
		}
		if (!strchr(json_string_value(s), ':') || json_string_value(s)[0] == '*') {
			cfg_err(errs, p, "expected \"IP:PORT\" or \"[IPv6]:PORT\"");
			continue;
		}
		if (!cfg_parse_addr(json_string_value(s), &ss, &sl, msg, sizeof(msg))) {
			cfg_err(errs, p, "%s", msg);
			continue;
		}
		dns_format_addr(&ss, text, sizeof(text));
		len += sprintf(csv + len, "%s%s", len ? "," : "", text);
	}
	*servers = csv;
}

bool dns_upstream_finish(struct upstream_config *uc, int nstatic)
{
	if (!uc->dns)
		return false;
	uc->dns->nstatic = nstatic;
	/* Seeds the pool with the last answers: a reload does not start empty. */
	dns_upstream_apply(uc, clock_mono_ms());
	return true;
}
