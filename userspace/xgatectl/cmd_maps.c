/* deny, allow, top: the commands that work on the pinned XDP maps directly. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "edge/edge.h"
#include "xgatectl/ctl.h"

#define TOP_MAX 10000

int check_pin_dir(const struct ctl_opts *o)
{
	struct stat st;

	errno = 0;
	if (stat(o->pin_dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	fprintf(
	    stderr,
	    "xgatectl: no pinned XDP maps at %s: %s (is xgate running with an \"edge\" section?)\n",
	    o->pin_dir, errno ? strerror(errno) : "not a directory");
	return EXIT_UNREACHABLE;
}

/* Map errors that mean "nothing is there" are reported like a missing gateway. */
static int map_error(int ret, const char *err)
{
	fprintf(stderr, "xgatectl: %s\n", err);
	return ret == -ENOENT && strstr(err, "pinned map") ? EXIT_UNREACHABLE : EXIT_FAILED;
}

struct list_out {
	json_t *json;
	struct table *table;
};

static int list_entry(const struct edge_list_entry *e, void *ctx)
{
	struct list_out *out = ctx;
	const char *source = e->from_config && e->from_operator ? "config+operator"
			     : e->from_config			? "config"
								: "operator";
	char cidr[64];

	edge_cidr_format(&e->cidr, cidr, sizeof(cidr));
	if (out->json)
		return json_array_append_new(out->json, json_pack("{s:s, s:b, s:b}", "cidr", cidr,
								  "config", e->from_config,
								  "operator", e->from_operator));
	table_row(out->table, cidr, source);
	return 0;
}

static int list_show(const struct ctl_opts *o, enum edge_list list)
{
	struct list_out out = {0};
	char err[512] = "";
	int ret;

	if (o->json)
		out.json = json_array();
	else
		out.table = table_new(2, "CIDR", "SOURCE");
	ret = edge_list_read(o->pin_dir, list, list_entry, &out, err, sizeof(err));
	if (ret == 0 && out.json) {
		char *text = json_dumps(out.json, JSON_INDENT(2));

		printf("%s\n", text ? text : "[]");
		free(text);
	} else if (ret == 0) {
		table_print(out.table, stdout);
	}
	json_decref(out.json);
	table_free(out.table);
	return ret ? map_error(ret, err) : EXIT_OK;
}

/* "90s", "10m", "2h", "1d", or plain seconds; -1 when malformed. */
static long long parse_ttl(const char *text)
{
	char *end;
	long long v = strtoll(text, &end, 10);
	long long unit = 1;

	if (end == text || v < 1)
		return -1;
	if (*end == 'm')
		unit = 60;
	else if (*end == 'h')
		unit = 3600;
	else if (*end == 'd')
		unit = 86400;
	else if (*end && *end != 's')
		return -1;
	if (*end && end[1])
		return -1;
	return v * unit;
}

static int cluster_list(const struct ctl_opts *o)
{
	struct http_reply reply;
	json_t *j, *e;
	struct table *t;
	size_t i;
	int rc = admin_request(o, "GET", "/cluster/deny", &reply);

	if (rc)
		return rc;
	j = json_loadb(reply.body, reply.body_len, 0, NULL);
	if (reply.status != 200 || o->json) {
		if (reply.status != 200)
			fprintf(stderr, "xgatectl: deny list --cluster: the admin API answered %d: %s\n",
				reply.status, json_string_value(json_object_get(j, "error")));
		else
			printf("%s\n", reply.body);
		rc = reply.status == 200 ? EXIT_OK : EXIT_FAILED;
		json_decref(j);
		http_reply_free(&reply);
		return rc;
	}
	t = table_new(2, "CIDR", "EXPIRES_MS");
	json_array_foreach(json_object_get(j, "entries"), i, e) {
		char exp[32];

		snprintf(exp, sizeof(exp), "%lld",
			 (long long)json_integer_value(json_object_get(e, "expires_ms")));
		table_row(t, json_string_value(json_object_get(e, "cidr")), exp);
	}
	table_print(t, stdout);
	table_free(t);
	json_decref(j);
	http_reply_free(&reply);
	return EXIT_OK;
}

/* xgatectl deny add|del|list --cluster [CIDR] [--ttl 10m]: through the admin API. */
static int cluster_deny(const struct ctl_opts *o, int argc, char **argv)
{
	struct http_reply reply;
	long long ttl = 0;
	json_t *body, *j;
	char *text;
	int rc;

	if (!strcmp(argv[1], "list"))
		return cluster_list(o);
	if (strcmp(argv[1], "add") && strcmp(argv[1], "del")) {
		fprintf(stderr, "xgatectl: deny: unknown action \"%s\" (add, del, list)\n", argv[1]);
		return EXIT_USAGE;
	}
	if (o->ttl && (strcmp(argv[1], "add") || (ttl = parse_ttl(o->ttl)) < 0)) {
		fprintf(stderr, "xgatectl: --ttl goes with deny add --cluster and wants a duration "
				"such as 90s, 10m, 2h, 1d\n");
		return EXIT_USAGE;
	}
	body = json_pack("{s:s, s:s, s:I}", "action", argv[1], "cidr", argv[2], "ttl_s",
			 (json_int_t)ttl);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text)
		return EXIT_FAILED;
	rc = admin_request_body(o, "POST", "/cluster/deny", text, strlen(text), &reply);
	free(text);
	if (rc)
		return rc;
	j = json_loadb(reply.body, reply.body_len, 0, NULL);
	if (reply.status == 200 && o->json)
		printf("%s\n", reply.body);
	else if (reply.status == 200)
		printf("deny %s (cluster): %s\n", !strcmp(argv[1], "add") ? "added" : "deleted",
		       json_string_value(json_object_get(j, "cidr")));
	else
		fprintf(stderr, "xgatectl: deny %s --cluster: the admin API answered %d: %s\n",
			argv[1], reply.status, json_string_value(json_object_get(j, "error")));
	rc = reply.status == 200 ? EXIT_OK : reply.status == 400 ? EXIT_USAGE : EXIT_FAILED;
	json_decref(j);
	http_reply_free(&reply);
	return rc;
}

/* xgatectl deny|allow add|del|list [CIDR] */
int cmd_list(const struct ctl_opts *o, int argc, char **argv)
{
	enum edge_list list = strcmp(argv[0], "deny") ? EDGE_LIST_ALLOW : EDGE_LIST_DENY;
	char err[512] = "";
	int ret, rc;

	if (argc < 2 || (strcmp(argv[1], "list") && argc != 3) ||
	    (!strcmp(argv[1], "list") && argc != 2)) {
		fprintf(stderr, "xgatectl: usage: %s add|del CIDR, or %s list\n", argv[0], argv[0]);
		return EXIT_USAGE;
	}
	if ((o->cluster || o->ttl) && list != EDGE_LIST_DENY) {
		fprintf(stderr, "xgatectl: --cluster and --ttl are for deny only\n");
		return EXIT_USAGE;
	}
	if (o->cluster)
		return cluster_deny(o, argc, argv);
	if (o->ttl) {
		fprintf(stderr, "xgatectl: --ttl needs --cluster (local entries do not expire)\n");
		return EXIT_USAGE;
	}
	rc = check_pin_dir(o);
	if (rc)
		return rc;
	if (!strcmp(argv[1], "list"))
		return list_show(o, list);
	if (!strcmp(argv[1], "add"))
		ret = edge_list_add(o->pin_dir, list, argv[2], err, sizeof(err));
	else if (!strcmp(argv[1], "del"))
		ret = edge_list_del(o->pin_dir, list, argv[2], err, sizeof(err));
	else {
		fprintf(stderr, "xgatectl: %s: unknown action \"%s\" (add, del, list)\n", argv[0],
			argv[1]);
		return EXIT_USAGE;
	}
	if (ret == -EINVAL) {
		fprintf(stderr, "xgatectl: %s\n", err);
		return EXIT_USAGE;
	}
	if (ret)
		return map_error(ret, err);
	if (o->json)
		printf("{\"status\": \"ok\", \"list\": \"%s\", \"action\": \"%s\", \"cidr\": "
		       "\"%s\"}\n",
		       argv[0], argv[1], argv[2]);
	else
		printf("%s %s: %s\n", argv[0], !strcmp(argv[1], "add") ? "added" : "deleted",
		       argv[2]);
	return EXIT_OK;
}

static void print_top(const struct ctl_opts *o, const struct edge_source *src, ssize_t n)
{
	if (o->json) {
		json_t *arr = json_array();
		char *text;

		for (ssize_t i = 0; arr && i < n; i++) {
			char cidr[64];

			edge_cidr_format(&src[i].source, cidr, sizeof(cidr));
			json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "source", cidr,
							     "packets", (json_int_t)src[i].packets,
							     "drops", (json_int_t)src[i].drops));
		}
		text = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
		printf("%s\n", text ? text : "[]");
		free(text);
		json_decref(arr);
		return;
	}
	struct table *t = table_new(3, "SOURCE", "PACKETS", "DROPS");
	for (ssize_t i = 0; i < n; i++) {
		char cidr[64], packets[32], drops[32];

		edge_cidr_format(&src[i].source, cidr, sizeof(cidr));
		snprintf(packets, sizeof(packets), "%llu", (unsigned long long)src[i].packets);
		snprintf(drops, sizeof(drops), "%llu", (unsigned long long)src[i].drops);
		table_row(t, cidr, packets, drops);
	}
	table_print(t, stdout);
	table_free(t);
}

/* xgatectl top [N] [--by drops] (the option is parsed by main into argv "--by=...") */
int cmd_top(const struct ctl_opts *o, int argc, char **argv)
{
	enum edge_top_by by = EDGE_TOP_PACKETS;
	struct edge_source *src;
	long n = 10;
	char err[512] = "", *end;
	ssize_t got;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "drops") || !strcmp(argv[i], "--by=drops")) {
			by = EDGE_TOP_DROPS;
			continue;
		}
		if (!strcmp(argv[i], "packets") || !strcmp(argv[i], "--by=packets"))
			continue;
		n = strtol(argv[i], &end, 10);
		if (*end || n < 1 || n > TOP_MAX) {
			fprintf(stderr,
				"xgatectl: top [N] [packets|drops]: N is 1..%d, got \"%s\"\n",
				TOP_MAX, argv[i]);
			return EXIT_USAGE;
		}
	}
	rc = check_pin_dir(o);
	if (rc)
		return rc;
	src = calloc(n, sizeof(*src));
	if (!src) {
		fprintf(stderr, "xgatectl: out of memory\n");
		return EXIT_FAILED;
	}
	got = edge_top(o->pin_dir, by, src, n, err, sizeof(err));
	if (got < 0) {
		free(src);
		return map_error((int)got, err);
	}
	print_top(o, src, got);
	free(src);
	return EXIT_OK;
}
