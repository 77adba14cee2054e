/* apply, rollback, generations: config deployment through the admin API (POST /config). */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xgatectl/ctl.h"

#define MAX_CONFIG_BYTES (64 * 1024) /* the admin API's body limit */

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	char *buf = malloc(MAX_CONFIG_BYTES + 1);
	size_t n;

	if (!f || !buf) {
		fprintf(stderr, "xgatectl: %s: %s\n", path, strerror(errno));
		free(buf);
		return EXIT_FAILED;
	}
	n = fread(buf, 1, MAX_CONFIG_BYTES + 1, f);
	if (f != stdin)
		fclose(f);
	if (n > MAX_CONFIG_BYTES) {
		fprintf(stderr, "xgatectl: %s: larger than %d bytes, the admin API's limit\n", path,
			MAX_CONFIG_BYTES);
		free(buf);
		return EXIT_FAILED;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Prints the answer of POST /config or /config/rollback; exit code. */
static int report(const struct ctl_opts *o, const char *what, const struct http_reply *reply)
{
	json_t *j = json_loadb(reply->body, reply->body_len, 0, NULL), *e;
	size_t i;
	int rc = reply->status == 200 ? EXIT_OK : EXIT_FAILED;

	if (o->json && j) {
		char *text = json_dumps(j, JSON_INDENT(2));

		printf("%s\n", text ? text : "");
		free(text);
	} else if (reply->status == 200) {
		printf("%s: generation %lld\n", what,
		       json_integer_value(json_object_get(j, "generation")));
	} else if (json_object_get(j, "errors")) {
		fprintf(stderr, "xgatectl: %s refused, the running config keeps serving:\n", what);
		json_array_foreach(json_object_get(j, "errors"), i, e)
		    fprintf(stderr, "  %s\n", json_string_value(e));
	} else {
		fprintf(stderr, "xgatectl: %s: the admin API answered %d: %s\n", what,
			reply->status, json_string_value(json_object_get(j, "error")));
	}
	json_decref(j);
	return rc;
}

int cmd_apply(const struct ctl_opts *o, int argc, char **argv)
{
	struct http_reply reply;
	char *text;
	size_t len;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "xgatectl: apply takes one FILE (- for stdin)\n");
		return EXIT_USAGE;
	}
	rc = read_file(argv[1], &text, &len);
	if (rc)
		return rc;
	rc = admin_request_body(o, "POST", "/config", text, len, &reply);
	free(text);
	if (rc)
		return rc;
	rc = report(o, "applied", &reply);
	http_reply_free(&reply);
	return rc;
}

int cmd_rollback(const struct ctl_opts *o, int argc, char **argv)
{
	struct http_reply reply;
	char body[64] = "", *end;
	long long n;
	int rc;

	if (argc > 2) {
		fprintf(stderr, "xgatectl: rollback takes at most one GENERATION\n");
		return EXIT_USAGE;
	}
	if (argc == 2) {
		n = strtoll(argv[1], &end, 10);
		if (*end || n < 1) {
			fprintf(stderr, "xgatectl: rollback wants a generation number >= 1\n");
			return EXIT_USAGE;
		}
		snprintf(body, sizeof(body), "{\"generation\": %lld}", n);
	}
	rc = admin_request_body(o, "POST", "/config/rollback", body, strlen(body), &reply);
	if (rc)
		return rc;
	rc = report(o, "rolled back", &reply);
	http_reply_free(&reply);
	return rc;
}

int cmd_generations(const struct ctl_opts *o, int argc, char **argv)
{
	struct http_reply reply;
	struct table *t;
	json_t *j, *g;
	size_t i;
	int rc;

	if (argc != 1) {
		fprintf(stderr, "xgatectl: generations takes no arguments\n");
		return EXIT_USAGE;
	}
	rc = admin_request(o, "GET", "/config/generations", &reply);
	if (rc)
		return rc;
	j = json_loadb(reply.body, reply.body_len, 0, NULL);
	if (reply.status != 200 || !j) {
		fprintf(stderr, "xgatectl: GET /config/generations answered %d\n", reply.status);
		json_decref(j);
		http_reply_free(&reply);
		return EXIT_FAILED;
	}
	if (o->json) {
		printf("%s\n", reply.body);
	} else {
		t = table_new(4, "GENERATION", "ACTIVATED", "SOURCE", "SHA256");
		json_array_foreach(json_object_get(j, "generations"), i, g)
		{
			char gen[32], when[64];
			time_t at = (time_t)json_integer_value(json_object_get(g, "time"));

			snprintf(gen, sizeof(gen), "%lld",
				 json_integer_value(json_object_get(g, "generation")));
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&at));
			table_row(t, gen, when, json_string_value(json_object_get(g, "source")),
				  json_string_value(json_object_get(g, "sha256")));
		}
		table_print(t, stdout);
		table_free(t);
	}
	json_decref(j);
	http_reply_free(&reply);
	return EXIT_OK;
}
