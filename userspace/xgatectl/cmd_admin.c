/* status, reload, stats: the commands that talk to the admin API. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edge/edge.h"
#include "xgatectl/ctl.h"

static json_t *fetch_json(const struct ctl_opts *o, const char *method, const char *path,
			  int *status, int *rc)
{
	struct http_reply reply;
	json_error_t jerr;
	json_t *j;

	*rc = admin_request(o, method, path, &reply);
	if (*rc)
		return NULL;
	*status = reply.status;
	j = json_loadb(reply.body, reply.body_len, 0, &jerr);
	if (!j) {
		fprintf(stderr, "xgatectl: %s %s answered %d with a body that is not JSON: %s\n",
			method, path, reply.status, jerr.text);
		*rc = EXIT_FAILED;
	}
	http_reply_free(&reply);
	return j;
}

static void print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_INDENT(2));

	if (text)
		printf("%s\n", text);
	free(text);
}

static const char *yes_no(json_t *v)
{
	return json_is_true(v) ? "yes" : "no";
}

static void format_uptime(long long s, char *out, size_t outlen)
{
	if (s >= 86400)
		snprintf(out, outlen, "%lldd%02lldh%02lldm", s / 86400, s % 86400 / 3600,
			 s % 3600 / 60);
	else
		snprintf(out, outlen, "%lldh%02lldm%02llds", s / 3600, s % 3600 / 60, s % 60);
}

static void format_time(long long t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_status(json_t *j)
{
	json_t *cfg = json_object_get(j, "config"), *feat = json_object_get(j, "features");
	json_t *uring = json_object_get(feat, "io_uring"), *ups, *up, *errs, *e;
	char uptime[64], loaded[64];
	size_t i, k;

	format_uptime(json_integer_value(json_object_get(j, "uptime_s")), uptime, sizeof(uptime));
	format_time(json_integer_value(json_object_get(cfg, "loaded_at")), loaded, sizeof(loaded));
	printf("xgate %s, up %s, %lld workers, %lld connections\n",
	       json_string_value(json_object_get(j, "version")), uptime,
	       json_integer_value(json_object_get(j, "workers")),
	       json_integer_value(json_object_get(j, "connections_active")));
	printf("config:   generation %lld, loaded %s from %s\n",
	       json_integer_value(json_object_get(cfg, "generation")), loaded,
	       json_string_value(json_object_get(cfg, "path")));
	printf("reload:   %s\n", json_is_true(json_object_get(cfg, "last_reload_ok"))
				     ? "last reload ok"
				     : "LAST RELOAD REJECTED (old config still serving):");
	errs = json_object_get(cfg, "last_reload_errors");
	json_array_foreach(errs, i, e) printf("          %s\n", json_string_value(e));
	printf(
	    "features: xdp %s, ktls %s, sockmap %s, io_uring single_issuer %s defer_taskrun %s\n",
	    json_string_value(json_object_get(feat, "xdp")), yes_no(json_object_get(feat, "ktls")),
	    yes_no(json_object_get(feat, "sockmap")),
	    yes_no(json_object_get(uring, "single_issuer")),
	    yes_no(json_object_get(uring, "defer_taskrun")));
	ups = json_object_get(j, "upstreams");
	if (!json_array_size(ups))
		return;
	printf("\n");
	struct table *t = table_new(5, "UPSTREAM", "TARGET", "HEALTH", "BREAKER", "ACTIVE");
	json_array_foreach(ups, i, up)
	{
		json_t *target;

		json_array_foreach(json_object_get(up, "targets"), k, target)
		{
			char active[32];

			snprintf(active, sizeof(active), "%lld",
				 json_integer_value(json_object_get(target, "active")));
			table_row(t, json_string_value(json_object_get(up, "name")),
				  json_string_value(json_object_get(target, "address")),
				  json_is_true(json_object_get(target, "up")) ? "up" : "DOWN",
				  json_string_value(json_object_get(target, "breaker")), active);
		}
	}
	table_print(t, stdout);
	table_free(t);
}

int cmd_status(const struct ctl_opts *o, int argc, char **argv)
{
	int status = 0, rc;
	json_t *j;

	if (argc != 1) {
		fprintf(stderr, "xgatectl: status takes no arguments\n");
		return EXIT_USAGE;
	}
	j = fetch_json(o, "GET", "/status", &status, &rc);
	if (!j)
		return rc;
	if (status != 200) {
		fprintf(stderr, "xgatectl: GET /status answered %d\n", status);
		json_decref(j);
		return EXIT_FAILED;
	}
	if (o->json)
		print_json(j);
	else
		print_status(j);
	json_decref(j);
	return EXIT_OK;
}

int cmd_reload(const struct ctl_opts *o, int argc, char **argv)
{
	int status = 0, rc;
	json_t *j, *e;
	size_t i;

	if (argc != 1) {
		fprintf(stderr, "xgatectl: reload takes no arguments\n");
		return EXIT_USAGE;
	}
	j = fetch_json(o, "POST", "/reload", &status, &rc);
	if (!j)
		return rc;
	rc = status == 200 ? EXIT_OK : EXIT_FAILED;
	if (o->json) {
		print_json(j);
	} else if (status == 200) {
		printf("reloaded: generation %lld\n",
		       json_integer_value(json_object_get(j, "generation")));
	} else if (status == 422) {
		fprintf(stderr, "xgatectl: reload rejected, the old config keeps serving:\n");
		json_array_foreach(json_object_get(j, "errors"), i, e)
		    fprintf(stderr, "  %s\n", json_string_value(e));
	} else {
		fprintf(stderr, "xgatectl: POST /reload answered %d: %s\n", status,
			json_string_value(json_object_get(j, "error")));
	}
	json_decref(j);
	return rc;
}

/* ---- stats ---- */

/* Label value between quotes with \\, \" and \n escapes; returns past the closing quote. */
static char *parse_label_value(char *p, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *p && *p != '"'; p++) {
		char c = *p;

		if (c == '\\' && p[1]) {
			p++;
			c = *p == 'n' ? '\n' : *p;
		}
		if (n < outlen - 1)
			out[n++] = c;
	}
	out[n] = '\0';
	return *p == '"' ? p + 1 : NULL;
}

/* Parses `{a="x",b="y"}` at p into labels; returns past the '}' or NULL. */
static char *parse_labels(char *p, json_t *labels)
{
	char val[1024];

	p++;
	while (*p && *p != '}') {
		char *eq = strchr(p, '=');

		if (!eq || eq[1] != '"')
			return NULL;
		*eq = '\0';
		const char *key = p;
		p = parse_label_value(eq + 2, val, sizeof(val));
		if (!p)
			return NULL;
		json_object_set_new(labels, key, json_string(val));
		if (*p == ',')
			p++;
	}
	return *p == '}' ? p + 1 : NULL;
}

/* One exposition line `name{a="x"} 12` into out[name][] = {labels, value}. */
static void parse_sample(char *line, json_t *out)
{
	char *p = line + strcspn(line, "{ "), *end;
	json_t *labels = json_object(), *arr;
	double value;

	if (!labels || !*p)
		goto bad;
	if (*p == '{') {
		*p = '\0';
		p = parse_labels(p, labels);
		if (!p)
			goto bad;
	} else {
		*p++ = '\0';
	}
	value = strtod(p, &end);
	if (end == p)
		goto bad;
	arr = json_object_get(out, line);
	if (!arr) {
		arr = json_array();
		json_object_set_new(out, line, arr);
	}
	json_array_append_new(arr, json_pack("{s:o, s:f}", "labels", labels, "value", value));
	return;
bad:
	json_decref(labels);
}

static json_t *parse_metrics(char *text)
{
	json_t *out = json_object();

	for (char *line = strtok(text, "\n"); out && line; line = strtok(NULL, "\n"))
		if (*line != '#')
			parse_sample(line, out);
	return out;
}

static void format_value(double v, char *out, size_t outlen)
{
	if (v == (double)(long long)v)
		snprintf(out, outlen, "%lld", (long long)v);
	else
		snprintf(out, outlen, "%.6g", v);
}

static const char *cell(json_t *labels, const char *key)
{
	const char *v = json_string_value(json_object_get(labels, key));

	return v && *v ? v : "-";
}

/* One table per family: its label names as columns, then VALUE; zero counters hidden. */
static void print_family(const char *name, json_t *samples)
{
	json_t *first = json_object_get(json_array_get(samples, 0), "labels"), *s, *v;
	bool counter = strlen(name) > 6 && !strcmp(name + strlen(name) - 6, "_total");
	const char *key, *cols[4] = {NULL};
	int ncols = 0, shown = 0;
	struct table *t;
	size_t i;

	if (strstr(name, "_bucket") || !json_object_size(first))
		return;
	json_object_foreach(first, key, v) if (ncols < 3) cols[ncols++] = key;
	t = table_new(ncols + 1, ncols > 0 ? cols[0] : "VALUE", ncols > 1 ? cols[1] : "VALUE",
		      ncols > 2 ? cols[2] : "VALUE", "VALUE");
	json_array_foreach(samples, i, s)
	{
		double value = json_real_value(json_object_get(s, "value"));
		json_t *labels = json_object_get(s, "labels");
		char text[64];

		if (counter && value == 0)
			continue;
		format_value(value, text, sizeof(text));
		table_row(t, ncols > 0 ? cell(labels, cols[0]) : text,
			  ncols > 1 ? cell(labels, cols[1]) : text,
			  ncols > 2 ? cell(labels, cols[2]) : text, text);
		shown++;
	}
	if (shown) {
		printf("%s\n", name);
		table_print(t, stdout);
		printf("\n");
	}
	table_free(t);
}

/* Families without labels, one NAME VALUE table (zero counters hidden). */
static void print_scalars(json_t *families)
{
	struct table *t = table_new(2, "METRIC", "VALUE");
	const char *name;
	json_t *samples;

	json_object_foreach(families, name, samples)
	{
		json_t *s = json_array_get(samples, 0);
		double value = json_real_value(json_object_get(s, "value"));
		size_t len = strlen(name);
		char text[64];

		if (json_object_size(json_object_get(s, "labels")) || strstr(name, "_bucket") ||
		    (len > 6 && !strcmp(name + len - 6, "_total") && value == 0))
			continue;
		format_value(value, text, sizeof(text));
		table_row(t, name, text);
	}
	table_print(t, stdout);
	table_free(t);
}

static void collect_xdp(const char *reason, uint64_t packets, void *ctx)
{
	json_object_set_new(ctx, reason, json_integer((json_int_t)packets));
}

/* XDP counters straight from the pinned stats map; NULL (with a note) when not there. */
static json_t *xdp_stats(const struct ctl_opts *o)
{
	json_t *x = json_object();
	int rc;

	if (!x)
		return NULL;
	rc = edge_read_stats(o->pin_dir, collect_xdp, x);
	if (rc) {
		fprintf(stderr,
			"xgatectl: no XDP counters under %s: %s (edge not configured, or xgate not "
			"running)\n",
			o->pin_dir, strerror(-rc));
		json_decref(x);
		return NULL;
	}
	return x;
}

static void print_xdp(json_t *x)
{
	struct table *t = table_new(2, "REASON", "PACKETS");
	const char *reason;
	json_t *v;

	json_object_foreach(x, reason, v)
	{
		char n[32];

		snprintf(n, sizeof(n), "%lld", json_integer_value(v));
		table_row(t, reason, n);
	}
	printf("xdp packets (%s)\n", "pinned stats map");
	table_print(t, stdout);
	printf("\n");
	table_free(t);
}

int cmd_stats(const struct ctl_opts *o, int argc, char **argv)
{
	struct http_reply reply;
	json_t *xdp, *gw = NULL, *samples;
	const char *name;
	int rc;

	if (argc != 1) {
		fprintf(stderr, "xgatectl: stats takes no arguments\n");
		return EXIT_USAGE;
	}
	xdp = xdp_stats(o);
	rc = admin_request(o, "GET", "/metrics", &reply);
	if (!rc && reply.status != 200) {
		fprintf(stderr, "xgatectl: GET /metrics answered %d\n", reply.status);
		rc = EXIT_FAILED;
	}
	if (!rc)
		gw = parse_metrics(reply.body);
	if (!rc)
		http_reply_free(&reply);
	if (o->json) {
		json_t *all = json_pack("{s:o*, s:o*}", "xdp", xdp ? json_incref(xdp) : json_null(),
					"gateway", gw ? json_incref(gw) : json_null());

		print_json(all);
		json_decref(all);
	} else {
		if (xdp)
			print_xdp(xdp);
		json_object_foreach(gw, name, samples) print_family(name, samples);
		print_scalars(gw);
	}
	json_decref(xdp);
	json_decref(gw);
	return rc;
}
