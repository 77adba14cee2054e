/* ModSecurity rule sets per config snapshot and transactions per request (see waf.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

#include "waf/waf.h"

/*
 * Set before the operator's files, which may still override them: the engine enforces
 * (whether an intervention blocks is the gateway's "mode", so detect mode still sees
 * which rules would have blocked) and reads request bodies (CRS's phase 2). With these a
 * bare owasp-crs.load works; config/waf/crs.conf is the recommended set.
 */
static const char base_rules[] = "SecRuleEngine On\n"
				 "SecRequestBodyAccess On\n"
				 "SecResponseBodyAccess Off\n";

struct waf_tx {
	Transaction *tx;
	int nids;
	unsigned ids[WAF_MAX_RULE_IDS];
};

static ModSecurity *engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

/* Reads "<digits>" at p followed by `end`; 0 when it is not that. */
static unsigned digits_then(const char *p, const char *end, const char **after)
{
	unsigned long v = 0;
	const char *q = p;

	while (isdigit((unsigned char)*q) && q - p < 10)
		v = v * 10 + (*q++ - '0');
	if (q == p || strncmp(q, end, strlen(end)) || v > 0xffffffffUL)
		return 0;
	*after = q + strlen(end);
	return v;
}

/*
 * A rule message is `Matched "... (Value: `V' )` then ModSecurity's details: ` [file "F"]
 * [line "N"] [id "N"] ... [data "D"] ... [uri "U"] ...`. The id is the first
 * `[line "N"] [id "N"]` pair. D is escaped, but V (the matched value, before the details)
 * and U (the path, after them) are not: a path imitating the pair changes nothing, a
 * matched value that does can put a made-up id in that request's log line in place of
 * the real one (the verdict does not depend on it). The C API has no structured message.
 */
static unsigned message_rule_id(const char *msg)
{
	const char *p = msg, *after;

	while ((p = strstr(p, "[line \"")) != NULL) {
		unsigned id;

		p += strlen("[line \"");
		if (!digits_then(p, "\"] [id \"", &after))
			continue;
		id = digits_then(after, "\"]", &after);
		if (id)
			return id;
	}
	return 0;
}

static void note_rule(struct waf_tx *t, const char *msg)
{
	unsigned id = msg ? message_rule_id(msg) : 0;

	if (!t || !id || t->nids == WAF_MAX_RULE_IDS)
		return;
	for (int i = 0; i < t->nids; i++)
		if (t->ids[i] == id)
			return;
	t->ids[t->nids++] = id;
}

/* Every logged rule match of a transaction (data is its struct waf_tx): keep the id. */
static void log_cb(void *data, const void *msg)
{
	note_rule(data, msg);
}

static void engine_init(void)
{
	engine = msc_init();
	if (!engine)
		return;
	msc_set_connector_info(engine, "xgate");
	msc_set_log_cb(engine, log_cb);
}

/* ModSecurity's messages end with a newline; a config error is one line. */
static void report(struct cfg_errs *errs, const char *path, const char *what, const char *err)
{
	char *text = strdup(err ? err : "cannot load");
	size_t n;

	if (!text) {
		cfg_err(errs, path, "%s", what);
		return;
	}
	for (char *c = text; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	n = strlen(text);
	while (n && text[n - 1] == ' ')
		text[--n] = '\0';
	cfg_err(errs, path, "%s: %s", what, text);
	free(text);
}

static bool load_rules(struct waf_config *w, char **files, int n, const char *path,
		       struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	const char *err = NULL;
	bool ok = true;

	pthread_once(&engine_once, engine_init);
	w->rules = engine ? msc_create_rules_set() : NULL;
	if (!w->rules || msc_rules_add(w->rules, base_rules, &err) < 0) {
		report(errs, path, "cannot set up ModSecurity", err);
		free((char *)err);
		return false;
	}
	cfg_path_key(p, path, "rules");
	for (int i = 0; i < n; i++) {
		err = NULL;
		if (msc_rules_add_file(w->rules, files[i], &err) >= 0)
			continue;
		report(errs, cfg_path_idx(ip, p, i), "rules not loaded", err);
		free((char *)err); /* strdup'd by libmodsecurity */
		ok = false;
	}
	return ok;
}

struct waf_config *waf_config_parse(json_t *o, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"rules", "mode", "inspect_body_bytes", NULL};
	static const char *const modes[] = {"block", "detect", NULL};
	struct waf_config *w;
	char p[CFG_PATH_MAX];
	char **files = NULL;
	int nfiles = 0, mode = WAF_BLOCK, before = errs->count;
	long long body;
	bool ok;

	if (!json_is_object(o)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	cfg_check_keys(o, path, keys, errs);
	cfg_get_strings(o, "rules", path, false, &files, &nfiles, errs);
	if (!nfiles && errs->count == before)
		cfg_err(errs, cfg_path_key(p, path, "rules"),
			"at least one rules file is required");
	cfg_get_enum(o, "mode", path, modes, WAF_BLOCK, &mode, errs);
	cfg_get_int(o, "inspect_body_bytes", path, 131072, 0, 1LL << 30, &body, errs);
	w = calloc(1, sizeof(*w));
	if (!w || errs->count > before) {
		cfg_strings_free(files, nfiles);
		free(w);
		return NULL;
	}
	w->mode = mode;
	w->inspect_body_bytes = body;
	ok = load_rules(w, files, nfiles, path, errs);
	cfg_strings_free(files, nfiles);
	if (!ok) {
		waf_config_free(w);
		return NULL;
	}
	return w;
}

void waf_config_free(struct waf_config *w)
{
	if (!w)
		return;
	if (w->rules)
		msc_rules_cleanup(w->rules);
	free(w);
}

struct waf_tx *waf_tx_new(const struct waf_config *w)
{
	struct waf_tx *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->tx = msc_new_transaction(engine, w->rules, t);
	if (!t->tx) {
		free(t);
		return NULL;
	}
	return t;
}

void waf_tx_free(struct waf_tx *t)
{
	if (!t)
		return;
	msc_transaction_cleanup(t->tx);
	free(t);
}

static bool intervened(struct waf_tx *t)
{
	ModSecurityIntervention it = {.status = 200};
	int r = msc_intervention(t->tx, &it);

	/* the disruptive rule's message comes here, not through the log callback */
	if (r)
		note_rule(t, it.log);
	free(it.url);
	free(it.log);
	return r != 0;
}

/* "1.2.3.4" / "::1" and the port of an address; "" and 0 when there is none. */
static int addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
	out[0] = '\0';
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, out, cap);
		return ntohs(in->sin_port);
	}
	if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, out, cap);
		return ntohs(in6->sin6_port);
	}
	return 0;
}

bool waf_tx_headers(struct waf_tx *t, const struct waf_request *r)
{
	char peer[INET6_ADDRSTRLEN], local[INET6_ADDRSTRLEN];
	int pport = addr_text(r->peer, peer, sizeof(peer));
	int lport = addr_text(r->local, local, sizeof(local));
	char *uri = strndup(r->target.p, r->target.len);
	char *method = strndup(r->method.p, r->method.len);

	msc_process_connection(t->tx, peer, pport, local, lport);
	if (uri && method)
		msc_process_uri(t->tx, uri, method, r->minor_version ? "1.1" : "1.0");
	free(uri);
	free(method);
	if (intervened(t))
		return true;
	for (int i = 0; i < r->nheaders; i++)
		msc_add_n_request_header(
		    t->tx, (const unsigned char *)r->headers[i].name.p, r->headers[i].name.len,
		    (const unsigned char *)r->headers[i].value.p, r->headers[i].value.len);
	msc_process_request_headers(t->tx);
	return intervened(t);
}

bool waf_tx_body(struct waf_tx *t, const char *body, size_t len)
{
	if (len)
		msc_append_request_body(t->tx, (const unsigned char *)body, len);
	msc_process_request_body(t->tx);
	return intervened(t);
}

void waf_tx_rule_ids(const struct waf_tx *t, char *out, size_t cap)
{
	size_t len = 1;

	out[0] = '[';
	for (int i = 0; i < t->nids; i++) {
		char one[16];
		int n = snprintf(one, sizeof(one), "%s%u", i ? "," : "", t->ids[i]);

		if (len + n + 2 > cap)
			break;
		memcpy(out + len, one, n);
		len += n;
	}
	out[len++] = ']';
	out[len] = '\0';
}
