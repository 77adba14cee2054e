/*
 * DNS discovery: the entry registry, the pure helpers and the pool of a DNS upstream
 * (see dns.h for the slot rules that keep in-flight requests safe).
 */
#include "upstream/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "metrics/metrics.h"

static pthread_mutex_t dns_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct dns_entry *entries;

void dns_lock(void)
{
	pthread_mutex_lock(&dns_mutex);
}

void dns_unlock(void)
{
	pthread_mutex_unlock(&dns_mutex);
}

/* Entries are never freed: configs and in-flight lookups keep the pointer. */
struct dns_entry *dns_entry_get(const char *upstream, enum dns_kind kind, const char *name)
{
	struct dns_entry *e;

	dns_lock();
	for (e = entries; e; e = e->next)
		if (e->kind == kind && !strcmp(e->upstream, upstream) && !strcasecmp(e->name, name))
			goto out;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->upstream = strdup(upstream);
	e->name = strdup(name);
	if (!e->upstream || !e->name) {
		free(e->upstream);
		free(e->name);
		free(e);
		e = NULL;
		goto out;
	}
	e->kind = kind;
	e->next = entries;
	entries = e;
out:
	dns_unlock();
	return e;
}

static bool label_char(char c)
{
	return isalnum((unsigned char)c) || c == '-';
}

bool dns_name_valid(const char *name, bool srv)
{
	size_t len = strlen(name), label = 0;

	if (len && name[len - 1] == '.')
		len--;
	if (!len || len > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? name[i] : '.';

		if (c == '.') {
			if (!label || label > 63 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (label == 0 && c == '-')
			return false;
		if (!label_char(c) && !(srv && c == '_' && label == 0))
			return false;
		label++;
	}
	return true;
}

/* Digits and dots only: meant as an IPv4 literal (and then judged as one). */
static bool looks_ipv4(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && s[i] != '.')
			return false;
	return n > 0;
}

bool dns_parse_target(const char *text, char *host, size_t hostlen, uint16_t *port, bool *is_name,
		      char *err, size_t errlen)
{
	const char *colon = strrchr(text, ':');
	size_t n;
	char *end;
	long v;

	*is_name = false;
	if (text[0] == '[' || text[0] == '*' || !colon || looks_ipv4(text, colon - text) ||
	    memchr(text, ':', colon - text))
		return true; /* an IP literal (or malformed as one): cfg_parse_addr judges */
	n = colon - text;
	*is_name = true;
	if (n >= hostlen || n > DNS_NAME_MAX + 1) {
		snprintf(err, errlen, "host name too long");
		return false;
	}
	memcpy(host, text, n);
	host[n] = '\0';
	if (!dns_name_valid(host, false)) {
		snprintf(err, errlen, "invalid host name \"%s\"", host);
		return false;
	}
	errno = 0;
	v = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || v < 1 || v > 65535 || colon[1] == '+' ||
	    colon[1] == '-') {
		snprintf(err, errlen, "invalid port in \"%s\"", text);
		return false;
	}
	*port = v;
	return true;
}

static bool rd16(const unsigned char *m, int len, int off, unsigned *v)
{
	if (off + 2 > len)
		return false;
	*v = (unsigned)m[off] << 8 | m[off + 1];
	return true;
}

/* Offset just past the (possibly compressed) name at off; -1 when malformed. */
static int skip_name(const unsigned char *m, int len, int off)
{
	for (int guard = 0; guard < 128; guard++) {
		if (off >= len)
			return -1;
		if ((m[off] & 0xc0) == 0xc0)
			return off + 2 <= len ? off + 2 : -1;
		if (m[off] & 0xc0)
			return -1;
		if (!m[off])
			return off + 1;
		off += m[off] + 1;
	}
	return -1;
}

bool dns_answer_min_ttl(const unsigned char *m, int len, uint32_t *ttl)
{
	unsigned qd, an, rdlen;
	int off = 12;
	bool any = false;

	if (len < 12 || !rd16(m, len, 4, &qd) || !rd16(m, len, 6, &an))
		return false;
	for (unsigned i = 0; i < qd; i++) {
		off = skip_name(m, len, off);
		if (off < 0 || off + 4 > len)
			return false;
		off += 4;
	}
	for (unsigned i = 0; i < an; i++) {
		uint32_t t;

		off = skip_name(m, len, off);
		if (off < 0 || off + 10 > len)
			return false;
		t = (uint32_t)m[off + 4] << 24 | (uint32_t)m[off + 5] << 16 |
		    (uint32_t)m[off + 6] << 8 | m[off + 7];
		rd16(m, len, off + 8, &rdlen);
		off += 10 + rdlen;
		if (off > len)
			return false;
		if (!any || t < *ttl)
			*ttl = t;
		any = true;
	}
	return any;
}

void dns_format_addr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

/* IPv4 before IPv6, then by address, then by port: the order /status lists them in. */
static int addr_cmp(const struct dns_addr *a, const struct dns_addr *b)
{
	const struct sockaddr_in6 *x6 = (const void *)&a->addr, *y6 = (const void *)&b->addr;
	const struct sockaddr_in *x4 = (const void *)&a->addr, *y4 = (const void *)&b->addr;
	int c;

	if (a->addr.ss_family != b->addr.ss_family)
		return a->addr.ss_family == AF_INET ? -1 : 1;
	if (a->addr.ss_family == AF_INET6) {
		c = memcmp(&x6->sin6_addr, &y6->sin6_addr, sizeof(x6->sin6_addr));
		if (!c && x6->sin6_scope_id != y6->sin6_scope_id)
			c = x6->sin6_scope_id < y6->sin6_scope_id ? -1 : 1;
		return c ? c : (int)ntohs(x6->sin6_port) - (int)ntohs(y6->sin6_port);
	}
	c = memcmp(&x4->sin_addr, &y4->sin_addr, sizeof(x4->sin_addr));
	return c ? c : (int)ntohs(x4->sin_port) - (int)ntohs(y4->sin_port);
}

int dns_addrs_normalize(struct dns_addr *a, int n)
{
	int out = 0;

	/* Insertion sort: stable (the first weight of a duplicate wins), n is small. */
	for (int i = 1; i < n; i++) {
		struct dns_addr x = a[i];
		int j = i;

		while (j > 0 && addr_cmp(&a[j - 1], &x) > 0) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = x;
	}
	for (int i = 0; i < n; i++)
		if (!out || addr_cmp(&a[out - 1], &a[i]))
			a[out++] = a[i];
	return out;
}

static int find_slot(const struct upstream_config *uc, int from, const char *text)
{
	for (int i = from; i < uc->ntargets; i++)
		if (!strcmp(uc->targets[i].address_text, text))
			return i;
	return -1;
}

static void slot_weight(struct upstream_config *uc, int i, uint32_t w, uint64_t now_ms)
{
	struct dns_upstream *d = uc->dns;
	uint32_t old = __atomic_load_n(&uc->targets[i].weight, __ATOMIC_RELAXED);

	if (!w && old)
		d->dead_since_ms[i] = now_ms;
	if (w != old) {
		__atomic_store_n(&uc->targets[i].weight, w, __ATOMIC_RELAXED);
		log_info("dns", "upstream %s: %s %s", uc->name, uc->targets[i].address_text,
			 w ? (old ? "reweighted" : "added")
			   : "removed (in-flight requests finish)");
	}
}

/* A slot at weight 0 long enough and idle; -1 when none. */
static int reusable_slot(const struct upstream_config *uc, uint64_t now_ms)
{
	const struct dns_upstream *d = uc->dns;

	for (int i = d->nstatic; i < uc->ntargets; i++) {
		const struct target_config *tc = &uc->targets[i];

		if (!__atomic_load_n(&tc->weight, __ATOMIC_RELAXED) &&
		    now_ms - d->dead_since_ms[i] >= DNS_RECYCLE_MS &&
		    (!tc->state || atomic_load(&tc->state->active) <= 0))
			return i;
	}
	return -1;
}

static bool retire(struct dns_upstream *d, char *text)
{
	char **r = realloc(d->retired, (d->nretired + 1) * sizeof(*r));

	if (!r)
		return false;
	d->retired = r;
	r[d->nretired++] = text;
	return true;
}

/* Fills slot i (not visible to workers: fresh or at weight 0) with a new address. */
static bool slot_fill(struct upstream_config *uc, int i, const struct dns_addr *a, const char *text)
{
	struct target_config *tc = &uc->targets[i];
	char *dup = strdup(text);
	char *old = tc->address_text;

	if (!dup || (old && !retire(uc->dns, old))) {
		free(dup);
		return false;
	}
	tc->addr = a->addr;
	tc->addrlen = a->addrlen;
	tc->state = target_state_get(uc->name, text);
	tc->metrics_slot = metrics_target_slot(uc->name, text);
	__atomic_store_n(&tc->address_text, dup, __ATOMIC_RELEASE);
	return true;
}

static bool add_address(struct upstream_config *uc, const struct dns_addr *a, const char *text,
			uint64_t now_ms)
{
	int i = uc->ntargets;

	if (i < UPSTREAM_MAX_TARGETS) {
		if (!slot_fill(uc, i, a, text))
			return false;
		uc->targets[i].weight = a->weight;
		/* Publishes the filled slot: balance_pick reads ntargets with acquire. */
		__atomic_store_n(&uc->ntargets, i + 1, __ATOMIC_RELEASE);
	} else {
		i = reusable_slot(uc, now_ms);
		if (i < 0 || !slot_fill(uc, i, a, text)) {
			log_error("dns", "upstream %s: no free target slot for %s (%d in use)",
				  uc->name, text, UPSTREAM_MAX_TARGETS);
			return false;
		}
		__atomic_store_n(&uc->targets[i].weight, a->weight, __ATOMIC_RELEASE);
	}
	log_info("dns", "upstream %s: %s added", uc->name, text);
	return true;
}

bool dns_pool_reconcile(struct upstream_config *uc, const struct dns_addr *want, int nwant,
			uint64_t now_ms)
{
	struct dns_upstream *d = uc->dns;
	bool used[UPSTREAM_MAX_TARGETS] = {false}, vanished[UPSTREAM_MAX_TARGETS] = {false};
	bool changed = false;
	int nold = uc->ntargets;
	char text[64];

	/* Kept addresses take their new weight now; vanished ones are retired only after the
	 * new ones are in, so the pool never has a moment without a usable address. */
	for (int i = d->nstatic; i < nold; i++) {
		uint32_t w = 0;

		for (int k = 0; k < nwant && k < UPSTREAM_MAX_TARGETS; k++) {
			dns_format_addr(&want[k].addr, text, sizeof(text));
			if (!used[k] && !strcmp(text, uc->targets[i].address_text)) {
				used[k] = true;
				w = want[k].weight ? want[k].weight : 1;
				break;
			}
		}
		if (w)
			slot_weight(uc, i, w, now_ms);
		else
			vanished[i] =
			    __atomic_load_n(&uc->targets[i].weight, __ATOMIC_RELAXED) != 0;
	}
	for (int k = 0; k < nwant && k < UPSTREAM_MAX_TARGETS; k++) {
		struct dns_addr a = want[k];

		if (used[k])
			continue;
		dns_format_addr(&a.addr, text, sizeof(text));
		if (find_slot(uc, 0, text) >= 0)
			continue; /* an IP literal of the config names it already */
		if (!a.weight)
			a.weight = 1;
		changed |= add_address(uc, &a, text, now_ms);
	}
	/* A slot reused above was at weight 0 already, so it is not among these. */
	for (int i = d->nstatic; i < nold; i++)
		if (vanished[i])
			slot_weight(uc, i, 0, now_ms);
	return changed;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

bool dns_upstream_apply(struct upstream_config *uc, uint64_t now_ms)
{
	struct dns_addr want[UPSTREAM_MAX_TARGETS];
	int n = 0;

	if (!uc->dns)
		return false;
	dns_lock();
	for (int s = 0; s < uc->dns->nsources; s++) {
		const struct dns_source *src = &uc->dns->sources[s];
		const struct dns_entry *e = src->entry;

		for (int i = 0; e && i < e->naddrs && n < UPSTREAM_MAX_TARGETS; i++) {
			want[n] = e->addrs[i];
			if (e->kind == DNS_KIND_ADDR) {
				set_port(&want[n].addr, src->port);
				want[n].weight = src->weight;
			}
			n++;
		}
	}
	dns_unlock();
	n = dns_addrs_normalize(want, n);
	return dns_pool_reconcile(uc, want, n, now_ms);
}

uint32_t dns_next_delay_s(const struct dns_upstream *d, bool ok, uint32_t ttl_s)
{
	uint32_t period = d->interval_s;

	if (!period)
		period = ttl_s < DNS_MIN_TTL_S	 ? DNS_MIN_TTL_S
			 : ttl_s > DNS_MAX_TTL_S ? DNS_MAX_TTL_S
						 : ttl_s;
	if (!ok && period > DNS_RETRY_S)
		period = DNS_RETRY_S;
	return period;
}

const char *dns_outcome_name(enum dns_outcome o)
{
	static const char *const names[DNS_OUTCOME_COUNT] = {
	    [DNS_OUTCOME_OK] = "ok",	     [DNS_OUTCOME_NXDOMAIN] = "nxdomain",
	    [DNS_OUTCOME_NODATA] = "nodata", [DNS_OUTCOME_TIMEOUT] = "timeout",
	    [DNS_OUTCOME_ERROR] = "error",
	};

	return o < DNS_OUTCOME_COUNT ? names[o] : "error";
}

void dns_upstream_free(struct dns_upstream *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->nsources; i++)
		free(d->sources[i].text);
	for (int i = 0; i < d->nretired; i++)
		free(d->retired[i]);
	free(d->sources);
	free(d->retired);
	free(d);
}

const char *dns_unavailable_reason(const struct upstream_config *uc)
{
	bool resolved = false, pending = false;

	if (!uc->dns || uc->dns->nstatic)
		return NULL;
	dns_lock();
	for (int s = 0; s < uc->dns->nsources; s++) {
		const struct dns_entry *e = uc->dns->sources[s].entry;

		resolved |= e && e->resolved;
		pending |= e && !e->attempted;
	}
	dns_unlock();
	if (resolved)
		return NULL;
	return pending ? "upstream name not resolved yet" : "upstream name does not resolve";
}

const char *upstream_default_host(const struct upstream_config *uc)
{
	int nt = __atomic_load_n(&uc->ntargets, __ATOMIC_ACQUIRE);

	for (int s = 0; uc->dns && !uc->dns->nstatic && s < uc->dns->nsources; s++)
		if (uc->dns->sources[s].entry && uc->dns->sources[s].entry->kind == DNS_KIND_ADDR)
			return uc->dns->sources[s].text;
	return nt ? uc->targets[0].address_text : uc->name;
}

static json_t *entry_addresses(const struct dns_entry *e, const struct dns_source *src)
{
	json_t *arr = json_array();
	char text[64];

	for (int i = 0; arr && i < e->naddrs; i++) {
		struct sockaddr_storage ss = e->addrs[i].addr;

		if (e->kind == DNS_KIND_ADDR)
			set_port(&ss, src->port);
		dns_format_addr(&ss, text, sizeof(text));
		json_array_append_new(arr, json_string(text));
	}
	return arr;
}

json_t *dns_upstream_status(const struct upstream_config *uc)
{
	json_t *arr = json_array();

	if (!uc->dns)
		return arr;
	dns_lock();
	for (int s = 0; arr && s < uc->dns->nsources; s++) {
		const struct dns_source *src = &uc->dns->sources[s];
		const struct dns_entry *e = src->entry;

		if (!e)
			continue;
		json_array_append_new(
		    arr, json_pack("{s:s, s:s, s:o*, s:b, s:I, s:s?, s:I, s:i}", "name", e->name,
				   "type", e->kind == DNS_KIND_SRV ? "SRV" : "A/AAAA", "addresses",
				   entry_addresses(e, src), "ok", e->last_ok, "last_success",
				   (json_int_t)e->last_success, "last_error",
				   e->last_error[0] ? e->last_error : NULL, "last_failure",
				   (json_int_t)e->last_failure, "ttl_s", (int)e->ttl_s));
	}
	dns_unlock();
	return arr;
}

int dns_upstream_live(const struct upstream_config *uc)
{
	int n = 0, nt;

	if (!uc->dns)
		return 0;
	nt = __atomic_load_n(&uc->ntargets, __ATOMIC_ACQUIRE);
	for (int i = uc->dns->nstatic; i < nt; i++)
		if (__atomic_load_n(&uc->targets[i].weight, __ATOMIC_RELAXED))
			n++;
	return n;
}

uint64_t dns_upstream_outcomes(const struct upstream_config *uc, enum dns_outcome o)
{
	uint64_t n = 0;

	if (!uc->dns)
		return 0;
	for (int s = 0; s < uc->dns->nsources; s++)
		if (uc->dns->sources[s].entry)
			n += atomic_load(&uc->dns->sources[s].entry->outcomes[o]);
	return n;
}
