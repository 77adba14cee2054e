/*
 * Web application firewall: ModSecurity (libmodsecurity3) rules, typically the OWASP CRS,
 * evaluated for every request of the routes that do not opt out.
 *
 * The rule set is parsed once per config snapshot (at load and at every reload, on the
 * main thread) and shared read-only by every worker; a transaction is per request and
 * lives in the WAF filter's stream state. One process-wide ModSecurity engine carries the
 * log callback: rule messages go to the transaction that produced them (to collect the
 * ids of the rules that matched), never to stderr.
 */
#ifndef XGATE_WAF_WAF_H
#define XGATE_WAF_WAF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cfg.h"
#include "http/http.h"

enum waf_mode {
	WAF_BLOCK,  /* an intervention answers 403 */
	WAF_DETECT, /* an intervention is logged and counted, the request goes on */
};

struct waf_config {
	struct Rules_t *rules; /* libmodsecurity's RulesSet */
	enum waf_mode mode;
	uint64_t inspect_body_bytes; /* bytes of a request body the rules see; 0: none */
};

/* The top-level "waf" object at `path`: loads every rules file. NULL after an error. */
struct waf_config *waf_config_parse(json_t *o, const char *path, struct cfg_errs *errs);
void waf_config_free(struct waf_config *w);

/* The request as the rules see it; strings need not be NUL-terminated. */
struct waf_request {
	const struct sockaddr *peer, *local; /* local NULL: unknown */
	struct http_str method, target;
	int minor_version;
	const struct http_header *headers;
	int nheaders;
};

#define WAF_MAX_RULE_IDS 16

struct waf_tx;

/* NULL on memory exhaustion. */
struct waf_tx *waf_tx_new(const struct waf_config *w);
/* Phase 1 (connection, URI, headers): true when the rules intervene. */
bool waf_tx_headers(struct waf_tx *t, const struct waf_request *r);
/* Phase 2 with the body (len may be 0): true when the rules intervene. */
bool waf_tx_body(struct waf_tx *t, const char *body, size_t len);
/* The ids of the rules that logged a match so far, as a JSON array ("[942100,949110]");
 * written into out (at least 2 bytes), truncated to whole ids. */
void waf_tx_rule_ids(const struct waf_tx *t, char *out, size_t cap);
void waf_tx_free(struct waf_tx *t);

#endif
