/*
 * DNS discovery for upstream targets: host-name targets ("users.internal:8080", A and
 * AAAA) and an upstream's SRV name ("dns": {"srv": "_http._tcp.users.internal"}).
 *
 * One resolver thread runs c-ares and never blocks a worker. What it learns lives in
 * process-wide entries (struct dns_entry, keyed by upstream, kind and name; never freed),
 * so a reload starts from the last answers instead of an empty pool.
 *
 * The pool of a DNS upstream is its config's targets array, allocated with room for
 * UPSTREAM_MAX_TARGETS slots. Only the resolver thread (or the loader, before the config
 * is published) writes it, and a published slot's address never changes under a request:
 *  - a new address takes a fresh slot, filled in before ntargets (release) covers it;
 *  - an address that disappeared keeps its slot with weight 0 (never picked again); its
 *    in-flight requests finish and decrement the same target_state;
 *  - when all slots are taken, a slot that has been at weight 0 for DNS_RECYCLE_MS with no
 *    request in flight is reused (its old address string is kept until the config dies).
 * Workers read ntargets with acquire and weights relaxed (balance.c).
 */
#ifndef XGATE_UPSTREAM_DNS_H
#define XGATE_UPSTREAM_DNS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cfg.h"
#include "config/config.h"
#include "upstream/upstream.h"

#define DNS_NAME_MAX 253
#define DNS_RECYCLE_MS 60000
#define DNS_MIN_TTL_S 1
#define DNS_MAX_TTL_S 3600
#define DNS_RETRY_S 5 /* after a failure (or interval_s when shorter) */
#define DNS_STARTUP_WAIT_MS 3000

enum dns_kind { DNS_KIND_ADDR, DNS_KIND_SRV };

enum dns_outcome {
	DNS_OUTCOME_OK,
	DNS_OUTCOME_NXDOMAIN,
	DNS_OUTCOME_NODATA,
	DNS_OUTCOME_TIMEOUT,
	DNS_OUTCOME_ERROR,
	DNS_OUTCOME_COUNT
};

/* One address of an answer: for A/AAAA the port is the target's, for SRV the record's. */
struct dns_addr {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint32_t weight;
};

/* The last answer for one name of one upstream. Fields under the DNS lock (dns_lock()). */
struct dns_entry {
	struct dns_entry *next;
	char *upstream, *name;
	enum dns_kind kind;
	struct dns_addr *addrs; /* sorted, no duplicates; kept when a lookup fails */
	int naddrs;
	bool attempted, resolved, last_ok;
	int64_t last_success, last_failure; /* unix seconds, 0: never */
	char last_error[128];
	uint32_t ttl_s;
	/* resolver thread only */
	uint64_t next_due_ms;
	bool in_flight;
	atomic_uint_least64_t outcomes[DNS_OUTCOME_COUNT];
};

/* A name one upstream resolves: a host-name target or the upstream's SRV name. */
struct dns_source {
	struct dns_entry *entry;
	uint16_t port;	 /* DNS_KIND_ADDR: the target's port */
	uint32_t weight; /* DNS_KIND_ADDR: the target's weight */
	char *text;	 /* as configured: "users.internal:8080" */
};

struct dns_upstream {
	struct dns_source *sources;
	int nsources;
	uint32_t interval_s; /* 0: re-resolve when the TTL expires */
	int nstatic;	     /* targets[0, nstatic) are IP literals from the config */
	/* resolver thread (or loader) only */
	uint64_t dead_since_ms[UPSTREAM_MAX_TARGETS];
	char **retired; /* address strings of reused slots */
	int nretired;
};

void dns_lock(void);
void dns_unlock(void);
/* Stable pointer for the life of the process; NULL on allocation failure. */
struct dns_entry *dns_entry_get(const char *upstream, enum dns_kind kind, const char *name);

/* Pure helpers (unit-tested). */
/* Letters, digits, '-' (not first or last in a label), labels of 1..63, at most 253;
 * `srv` also allows a leading '_' in a label. One trailing dot is allowed. */
bool dns_name_valid(const char *name, bool srv);
/*
 * "name:port" with a valid host name (not an IP literal) and port 1..65535. Returns false
 * with a message in err; *is_name false (no error) when text is an IP literal.
 */
bool dns_parse_target(const char *text, char *host, size_t hostlen, uint16_t *port, bool *is_name,
		      char *err, size_t errlen);
/* Smallest TTL over the answer section of a DNS message; false when malformed/empty. */
bool dns_answer_min_ttl(const unsigned char *msg, int len, uint32_t *ttl);
/* "1.2.3.4:80" / "[::1]:80" */
void dns_format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen);
/* Sorts by address and drops duplicates (the first weight is kept); returns the new n. */
int dns_addrs_normalize(struct dns_addr *a, int n);
/*
 * Makes uc's dynamic slots match `want` (the upstream's whole resolved set). Returns true
 * when slots were added or reused (the health checker must learn them).
 */
bool dns_pool_reconcile(struct upstream_config *uc, const struct dns_addr *want, int nwant,
			uint64_t now_ms);
/* Builds the wanted set from uc's entries and reconciles. */
bool dns_upstream_apply(struct upstream_config *uc, uint64_t now_ms);
/* Seconds until the next lookup after an outcome (TTL clamped, or interval_s). */
uint32_t dns_next_delay_s(const struct dns_upstream *d, bool ok, uint32_t ttl_s);
const char *dns_outcome_name(enum dns_outcome o);

/* Config: "dns", "resolve" of an upstream; "resolver" at top level. */
bool dns_upstream_add_source(struct upstream_config *uc, enum dns_kind kind, const char *name,
			     uint16_t port, uint32_t weight, const char *text);
bool dns_upstream_has_source(const struct upstream_config *uc, const char *text);
/* After the targets: "dns" (SRV) and "resolve". */
void dns_upstream_parse(json_t *u, const char *path, struct upstream_config *uc,
			struct cfg_errs *errs);
/* Records the static targets and seeds the pool from the entries; false: not DNS. */
bool dns_upstream_finish(struct upstream_config *uc, int nstatic);
/* *servers: a c-ares CSV ("1.2.3.4:53,[::1]:53") or NULL for /etc/resolv.conf. */
void dns_resolver_parse(json_t *root, char **servers, struct cfg_errs *errs);
void dns_upstream_free(struct dns_upstream *d);
/* Why a DNS upstream has no target yet (503 reason), NULL when it has or is not DNS. */
const char *dns_unavailable_reason(const struct upstream_config *uc);
/* Host for a request without one: the first host-name target ("users.internal:8080"), else
 * the first target's address (a DNS pool may have none yet: the upstream's name). */
const char *upstream_default_host(const struct upstream_config *uc);
/* GET /status: [{"name", "type", "addresses", "last_success", "last_error", ...}] */
json_t *dns_upstream_status(const struct upstream_config *uc);
/* Live (weight > 0) resolved slots, for xgate_dns_addresses. */
int dns_upstream_live(const struct upstream_config *uc);
uint64_t dns_upstream_outcomes(const struct upstream_config *uc, enum dns_outcome o);

/* The resolver thread. */
struct dns_resolver;
typedef void (*dns_changed_fn)(void *arg, struct xg_config *cfg);
/* Holds a reference to cfg. `changed` runs on the resolver thread when slots were added. */
struct dns_resolver *dns_resolver_start(struct xg_config *cfg, dns_changed_fn changed, void *arg);
void dns_resolver_update(struct dns_resolver *r, struct xg_config *cfg);
/* Waits until every name of the current config had its first answer or failure. */
bool dns_resolver_wait(struct dns_resolver *r, uint32_t timeout_ms);
void dns_resolver_stop(struct dns_resolver *r);

#endif
