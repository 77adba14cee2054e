/* Traffic split: config, match entries and weighted rendezvous hashing (see split.h). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "metrics/metrics.h"
#include "split/split.h"
#include "upstream/upstream.h"

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static char *lower_dup(const char *s)
{
	char *d = strdup(s);

	for (char *p = d; p && *p; p++)
		*p = tolower((unsigned char)*p);
	return d;
}

static void parse_match(json_t *m, const char *path, struct split_entry *e, struct cfg_errs *errs)
{
	static const char *const keys[] = {"headers", NULL};
	char hp[CFG_PATH_MAX], kp[CFG_PATH_MAX];
	json_t *hdrs, *v;
	const char *name;

	if (!json_is_object(m)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(m, path, keys, errs);
	hdrs = cfg_get_object(m, "headers", path, errs);
	cfg_path_key(hp, path, "headers");
	if (!hdrs || !json_object_size(hdrs)) {
		cfg_err(errs, hp, "at least one header is required");
		return;
	}
	e->match = calloc(json_object_size(hdrs), sizeof(*e->match));
	if (!e->match) {
		cfg_err(errs, hp, "out of memory");
		return;
	}
	json_object_foreach(hdrs, name, v)
	{
		struct header_match *hm = &e->match[e->nmatch];

		if (!json_is_string(v) && !json_is_null(v)) {
			cfg_err(errs, cfg_path_key(kp, hp, name), "must be a string or null");
			continue;
		}
		hm->name = lower_dup(name);
		hm->value = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
		e->nmatch++;
	}
}

static void parse_entry(json_t *o, const char *path, struct split_entry *e,
			const struct xg_config *cfg, struct cfg_errs *errs)
{
	static const char *const keys[] = {"upstream", "weight", "match", NULL};
	char p[CFG_PATH_MAX];
	char *name = NULL;
	long long w;
	json_t *m;

	e->upstream = -1;
	if (!json_is_object(o)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(o, path, keys, errs);
	cfg_path_key(p, path, "upstream");
	if (cfg_get_str(o, "upstream", path, NULL, &name, errs)) {
		if (!name)
			cfg_err(errs, p, "required");
		else if ((e->upstream = config_upstream_index(cfg, name)) < 0)
			cfg_err(errs, p, "unknown upstream \"%s\"", name);
		else
			e->id = mix64(hash_key64(name, strlen(name)));
	}
	free(name);
	cfg_get_int(o, "weight", path, 0, 0, 1000000, &w, errs);
	e->weight = w;
	m = json_object_get(o, "match");
	if (m)
		parse_match(m, cfg_path_key(p, path, "match"), e, errs);
}

static void parse_sticky(json_t *s, const char *path, struct split_policy *p, struct cfg_errs *errs)
{
	const char *v = json_is_string(s) ? json_string_value(s) : NULL;

	if (!v) {
		cfg_err(errs, path,
			"must be \"cookie:NAME\", \"header:NAME\", \"ip\" or \"consumer\"");
		return;
	}
	if (!strcmp(v, "ip")) {
		p->sticky = SPLIT_STICKY_IP;
	} else if (!strcmp(v, "consumer")) {
		p->sticky = SPLIT_STICKY_CONSUMER;
	} else if (!strncmp(v, "cookie:", 7) && v[7]) {
		p->sticky = SPLIT_STICKY_COOKIE;
		p->sticky_name = strdup(v + 7);
	} else if (!strncmp(v, "header:", 7) && v[7]) {
		p->sticky = SPLIT_STICKY_HEADER;
		p->sticky_name = lower_dup(v + 7);
	} else {
		cfg_err(errs, path,
			"\"%s\": must be \"cookie:NAME\", \"header:NAME\", \"ip\" or \"consumer\"",
			v);
		return;
	}
	if (p->sticky_name && (strpbrk(p->sticky_name, " \t;,=:\"") != NULL))
		cfg_err(errs, path, "\"%s\": not a valid name", p->sticky_name);
}

struct split_policy *split_policy_parse(json_t *arr, json_t *sticky, const char *route_path,
					const char *route_name, const struct xg_config *cfg,
					struct cfg_errs *errs)
{
	struct split_policy *p;
	char sp[CFG_PATH_MAX], ep[CFG_PATH_MAX], up[CFG_PATH_MAX];
	int before = errs->count;
	uint64_t total = 0;
	json_t *o;
	size_t i;

	cfg_path_key(sp, route_path, "split");
	if (!json_is_array(arr) || json_array_size(arr) < 2) {
		cfg_err(errs, sp, "must be an array of at least two entries");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p)
		p->entries = calloc(json_array_size(arr), sizeof(*p->entries));
	if (!p || !p->entries) {
		free(p);
		cfg_err(errs, sp, "out of memory");
		return NULL;
	}
	json_array_foreach(arr, i, o)
	{
		struct split_entry *e = &p->entries[p->n++];

		cfg_path_idx(ep, sp, i);
		parse_entry(o, ep, e, cfg, errs);
		total += e->weight;
		e->metrics_slot =
		    e->upstream >= 0
			? metrics_split_slot(route_name, cfg->upstreams[e->upstream].name)
			: -1;
		for (int j = 0; j < p->n - 1; j++)
			if (e->upstream >= 0 && p->entries[j].upstream == e->upstream)
				cfg_err(errs, cfg_path_key(up, ep, "upstream"),
					"upstream listed twice in the split");
	}
	if (!total)
		cfg_err(errs, sp, "at least one entry needs a weight above 0");
	if (sticky)
		parse_sticky(sticky, cfg_path_key(ep, route_path, "sticky"), p, errs);
	if (errs->count > before) {
		split_policy_free(p);
		return NULL;
	}
	return p;
}

void split_policy_free(struct split_policy *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n; i++) {
		for (int j = 0; j < p->entries[i].nmatch; j++) {
			free(p->entries[i].match[j].name);
			free(p->entries[i].match[j].value);
		}
		free(p->entries[i].match);
	}
	free(p->entries);
	free(p->sticky_name);
	free(p);
}

static bool header_holds(const struct http_request *req, const struct header_match *m)
{
	for (int i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];

		if (!http_str_eq_nocase(h->name, m->name))
			continue;
		if (!m->value || (h->value.len == strlen(m->value) &&
				  !memcmp(h->value.p, m->value, h->value.len)))
			return true;
	}
	return false;
}

int split_match(const struct split_policy *p, const struct http_request *req)
{
	for (int i = 0; i < p->n; i++) {
		const struct split_entry *e = &p->entries[i];
		bool all = e->nmatch > 0;

		for (int j = 0; all && j < e->nmatch; j++)
			all = header_holds(req, &e->match[j]);
		if (all)
			return i;
	}
	return -1;
}

int split_pick(const struct split_policy *p, uint64_t key)
{
	double best = -1;
	int pick = -1;

	for (int i = 0; i < p->n; i++) {
		const struct split_entry *e = &p->entries[i];
		/* 53 random bits, offset by half a step so u is never 0 or 1. */
		double u = ((double)(mix64(key ^ e->id) >> 11) + 0.5) / 9007199254740992.0;
		double score;

		if (!e->weight)
			continue;
		score = (double)e->weight / -log(u);
		if (score > best) {
			best = score;
			pick = i;
		}
	}
	return pick;
}

/* NAME=value in the Cookie fields ("a=1; b=2"). */
static bool cookie_value(const struct http_request *req, const char *name, struct http_str *out)
{
	size_t nlen = strlen(name);

	for (int i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		const char *p = h->value.p, *end = h->value.p + h->value.len;

		if (!http_str_eq_nocase(h->name, "cookie"))
			continue;
		while (p < end) {
			const char *semi = memchr(p, ';', end - p), *stop = semi ? semi : end;

			while (p < stop && (*p == ' ' || *p == '\t'))
				p++;
			if ((size_t)(stop - p) > nlen && !memcmp(p, name, nlen) && p[nlen] == '=') {
				out->p = p + nlen + 1;
				out->len = stop - out->p;
				while (out->len && (out->p[out->len - 1] == ' ' ||
						    out->p[out->len - 1] == '\t'))
					out->len--;
				return out->len > 0;
			}
			p = semi ? semi + 1 : end;
		}
	}
	return false;
}

bool split_sticky_value(const struct split_policy *p, const struct http_request *req,
			const char *peer_ip, const char *consumer, struct http_str *out)
{
	const struct http_header *h;

	switch (p->sticky) {
	case SPLIT_STICKY_COOKIE:
		return cookie_value(req, p->sticky_name, out);
	case SPLIT_STICKY_HEADER:
		h = http_find_header(req->headers, req->nheaders, p->sticky_name);
		if (!h || !h->value.len)
			return false;
		*out = h->value;
		return true;
	case SPLIT_STICKY_IP:
		out->p = peer_ip;
		out->len = peer_ip ? strlen(peer_ip) : 0;
		return out->len > 0;
	case SPLIT_STICKY_CONSUMER:
		out->p = consumer;
		out->len = consumer ? strlen(consumer) : 0;
		return out->len > 0;
	case SPLIT_STICKY_NONE:
		break;
	}
	return false;
}
