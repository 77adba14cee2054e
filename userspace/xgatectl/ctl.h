/* xgatectl internals: options, the admin API client, output tables, map commands. */
#ifndef XGATE_XGATECTL_CTL_H
#define XGATE_XGATECTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit codes (documented in --help and xgatectl(8)). */
enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* the gateway refused or the operation failed */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3, /* admin API or pinned maps not there: gateway not running? */
};

struct ctl_opts {
	const char *admin; /* HOST:PORT */
	const char *token; /* XGATE_ADMIN_TOKEN: sent as Authorization: Bearer */
	const char *pin_dir;
	bool json;
	int timeout_ms;
	bool cluster;	 /* deny: the cluster list, through the admin API */
	const char *ttl; /* deny add --cluster: "90s", "10m", "2h", "1d" or seconds */
};

struct http_reply {
	int status;
	char *body; /* NUL-terminated */
	size_t body_len;
};

/*
 * One request to the admin API (Connection: close). Returns 0, or prints
 * "xgatectl: cannot reach the admin API at ADDR: REASON (is xgate running?)" and
 * returns EXIT_UNREACHABLE.
 */
int admin_request(const struct ctl_opts *o, const char *method, const char *path,
		  struct http_reply *reply);
/* The same with a request body (Content-Type: application/json). */
int admin_request_body(const struct ctl_opts *o, const char *method, const char *path,
		       const char *body, size_t body_len, struct http_reply *reply);
void http_reply_free(struct http_reply *r);

/* Column-aligned text tables. */
struct table;
struct table *table_new(int ncols, ...); /* header cells */
void table_row(struct table *t, ...);	 /* ncols cells (copied) */
void table_print(struct table *t, FILE *out);
void table_free(struct table *t);

int cmd_status(const struct ctl_opts *o, int argc, char **argv);
int cmd_reload(const struct ctl_opts *o, int argc, char **argv);
int cmd_stats(const struct ctl_opts *o, int argc, char **argv);
int cmd_list(const struct ctl_opts *o, int argc, char **argv); /* deny|allow */
int cmd_top(const struct ctl_opts *o, int argc, char **argv);
int cmd_apply(const struct ctl_opts *o, int argc, char **argv);
int cmd_rollback(const struct ctl_opts *o, int argc, char **argv);
int cmd_generations(const struct ctl_opts *o, int argc, char **argv);

/* Prints why the pinned maps cannot be used and returns EXIT_UNREACHABLE, or 0 if present. */
int check_pin_dir(const struct ctl_opts *o);

#endif
