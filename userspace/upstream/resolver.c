/*
 * The resolver thread: c-ares on one poll() loop. It holds a reference to the current
 * config, looks up every due name of its DNS upstreams (A+AAAA through ares_getaddrinfo,
 * SRV through ares_query and then the records' host names), stores the answers in the
 * process-wide entries and rewrites the config's pools (dns_upstream_apply). Workers only
 * ever read pools, so no lookup can stall a request.
 *
 * A failed lookup (NXDOMAIN, timeout, ...) leaves the entry's addresses as they were: the
 * pool keeps serving the last answer until health checks take targets out.
 */
#include "upstream/dns.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

#define RESOLVER_TIMEOUT_MS 1000
#define RESOLVER_TRIES 2
#define RESOLVER_MAX_POLL_MS 1000

struct dns_resolver {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct xg_config *pending; /* under lock */
	bool stop;		   /* under lock */
	bool settled;		   /* under lock: every name of cfg was looked up once */
	int wake_fd;
	dns_changed_fn changed;
	void *changed_arg;
	/* resolver thread only */
	struct xg_config *cfg;
	ares_channel channel;
	bool have_channel;
	char *servers; /* what the channel was built with */
	bool dirty;    /* an entry changed: pools to re-apply */
};

/* One lookup in flight for an entry; an SRV lookup fans out to its records' names. */
struct lookup {
	struct dns_resolver *r;
	struct dns_entry *e;
	int pending; /* SRV: host-name lookups outstanding */
	struct dns_addr *addrs;
	int naddrs;
	uint32_t ttl;
	bool have_ttl;
	int last_status;
};

struct srv_host {
	struct lookup *l;
	uint16_t port;
	uint32_t weight;
};

static enum dns_outcome outcome_of(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return DNS_OUTCOME_OK;
	case ARES_ENOTFOUND:
	case ARES_ENONAME:
		return DNS_OUTCOME_NXDOMAIN;
	case ARES_ENODATA:
		return DNS_OUTCOME_NODATA;
	case ARES_ETIMEOUT:
		return DNS_OUTCOME_TIMEOUT;
	default:
		return DNS_OUTCOME_ERROR;
	}
}

static uint32_t entry_interval(const struct dns_resolver *r, const struct dns_entry *e, bool ok,
			       uint32_t ttl)
{
	struct dns_upstream dflt = {0};

	/* The entry's upstream in the current config decides interval_s. */
	for (int u = 0; r->cfg && u < r->cfg->nupstreams; u++) {
		const struct upstream_config *uc = &r->cfg->upstreams[u];

		for (int s = 0; uc->dns && s < uc->dns->nsources; s++)
			if (uc->dns->sources[s].entry == e)
				return dns_next_delay_s(uc->dns, ok, ttl);
	}
	return dns_next_delay_s(&dflt, ok, ttl);
}

/* Records a finished lookup; status ARES_SUCCESS with addrs, else an error. */
static void lookup_commit(struct lookup *l, int status)
{
	struct dns_entry *e = l->e;
	enum dns_outcome o = outcome_of(status);
	bool ok = status == ARES_SUCCESS && l->naddrs;
	uint32_t delay;

	if (status == ARES_SUCCESS && !l->naddrs)
		o = DNS_OUTCOME_NODATA;
	atomic_fetch_add(&e->outcomes[o], 1);
	dns_lock();
	e->attempted = true;
	e->last_ok = ok;
	if (ok) {
		free(e->addrs);
		e->naddrs = dns_addrs_normalize(l->addrs, l->naddrs);
		e->addrs = l->addrs;
		l->addrs = NULL;
		e->ttl_s = l->have_ttl ? l->ttl : 0;
		e->last_success = time(NULL);
		e->resolved = true;
	} else {
		e->last_failure = time(NULL);
		snprintf(e->last_error, sizeof(e->last_error), "%s: %s", dns_outcome_name(o),
			 status == ARES_SUCCESS ? "no usable address" : ares_strerror(status));
	}
	dns_unlock();
	if (!ok)
		log_warn("dns", "upstream %s: %s %s failed (%s); keeping %d address(es)",
			 e->upstream, e->kind == DNS_KIND_SRV ? "SRV" : "lookup of", e->name,
			 ares_strerror(status), e->naddrs);
	delay = entry_interval(l->r, e, ok, e->ttl_s);
	e->next_due_ms = clock_mono_ms() + delay * 1000ull;
	e->in_flight = false;
	l->r->dirty = true;
	free(l->addrs);
	free(l);
}

/* Appends the addresses of an ares_getaddrinfo answer (port and weight as given). */
static void lookup_add(struct lookup *l, const struct ares_addrinfo *res, uint16_t port,
		       uint32_t weight)
{
	for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next) {
		struct dns_addr *a, *grown;

		if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
		    n->ai_addrlen > sizeof(a->addr) || l->naddrs >= UPSTREAM_MAX_TARGETS)
			continue;
		grown = realloc(l->addrs, (l->naddrs + 1) * sizeof(*grown));
		if (!grown)
			return;
		l->addrs = grown;
		a = &l->addrs[l->naddrs++];
		memset(a, 0, sizeof(*a));
		memcpy(&a->addr, n->ai_addr, n->ai_addrlen);
		a->addrlen = n->ai_addrlen;
		a->weight = weight;
		if (a->addr.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&a->addr)->sin6_port = htons(port);
		else
			((struct sockaddr_in *)&a->addr)->sin_port = htons(port);
		if (!l->have_ttl || (uint32_t)n->ai_ttl < l->ttl)
			l->ttl = n->ai_ttl < 0 ? 0 : n->ai_ttl;
		l->have_ttl = true;
	}
}

static void addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct lookup *l = arg;

	if (status == ARES_EDESTRUCTION) {
		l->e->in_flight = false;
		free(l->addrs);
		free(l);
		ares_freeaddrinfo(res);
		return;
	}
	if (status == ARES_SUCCESS)
		lookup_add(l, res, 0, 0);
	ares_freeaddrinfo(res);
	lookup_commit(l, status);
}

static void srv_host_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct srv_host *h = arg;
	struct lookup *l = h->l;

	if (status == ARES_SUCCESS)
		lookup_add(l, res, h->port, h->weight);
	else if (status != ARES_EDESTRUCTION)
		l->last_status = status;
	ares_freeaddrinfo(res);
	free(h);
	if (--l->pending)
		return;
	if (status == ARES_EDESTRUCTION) {
		l->e->in_flight = false;
		free(l->addrs);
		free(l);
		return;
	}
	lookup_commit(l, l->naddrs ? ARES_SUCCESS : l->last_status);
}

/* Lowest priority value only: higher values are backups this gateway does not use. */
static unsigned short best_priority(const struct ares_srv_reply *srv)
{
	unsigned short best = 0xffff;

	for (const struct ares_srv_reply *s = srv; s; s = s->next)
		if (s->priority < best)
			best = s->priority;
	return best;
}

static void srv_resolve_hosts(struct lookup *l, struct ares_srv_reply *srv)
{
	struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	unsigned short prio = best_priority(srv);
	int n = 0;

	for (struct ares_srv_reply *s = srv; s; s = s->next)
		n += s->priority == prio && s->port;
	if (!n) {
		lookup_commit(l, ARES_ENODATA);
		return;
	}
	l->pending = n;
	for (struct ares_srv_reply *s = srv; s; s = s->next) {
		struct srv_host *h;

		if (s->priority != prio || !s->port)
			continue;
		h = calloc(1, sizeof(*h));
		if (!h) {
			if (--l->pending == 0)
				lookup_commit(l, l->naddrs ? ARES_SUCCESS : ARES_ENOMEM);
			continue;
		}
		h->l = l;
		h->port = s->port;
		h->weight = s->weight ? s->weight : 1; /* RFC 2782: 0 is "rarely", not "never" */
		ares_getaddrinfo(l->r->channel, s->host, NULL, &hints, srv_host_done, h);
	}
}

static void srv_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct lookup *l = arg;
	struct ares_srv_reply *srv = NULL;

	if (status == ARES_EDESTRUCTION) {
		l->e->in_flight = false;
		free(l);
		return;
	}
	if (status == ARES_SUCCESS)
		status = ares_parse_srv_reply(abuf, alen, &srv);
	if (status != ARES_SUCCESS) {
		lookup_commit(l, status);
		return;
	}
	l->have_ttl = dns_answer_min_ttl(abuf, alen, &l->ttl);
	srv_resolve_hosts(l, srv);
	ares_free_data(srv);
}

static void lookup_start(struct dns_resolver *r, struct dns_entry *e)
{
	struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct lookup *l = calloc(1, sizeof(*l));

	if (!l)
		return;
	l->r = r;
	l->e = e;
	e->in_flight = true;
	if (e->kind == DNS_KIND_SRV)
		ares_query(r->channel, e->name, ns_c_in, ns_t_srv, srv_done, l);
	else
		ares_getaddrinfo(r->channel, e->name, NULL, &hints, addr_done, l);
}

static bool cfg_has_dns(const struct xg_config *cfg)
{
	for (int u = 0; cfg && u < cfg->nupstreams; u++)
		if (cfg->upstreams[u].dns)
			return true;
	return false;
}

static bool same_servers(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void channel_close(struct dns_resolver *r)
{
	if (!r->have_channel)
		return;
	ares_destroy(r->channel); /* in-flight callbacks run with ARES_EDESTRUCTION */
	r->have_channel = false;
}

/* (Re)builds the channel when the config needs one with other servers. */
static void channel_sync(struct dns_resolver *r)
{
	const char *want = r->cfg ? r->cfg->resolver_servers : NULL;
	struct ares_options opts = {.timeout = RESOLVER_TIMEOUT_MS, .tries = RESOLVER_TRIES};
	int rc;

	if (!cfg_has_dns(r->cfg)) {
		channel_close(r);
		return;
	}
	if (r->have_channel && same_servers(want, r->servers))
		return;
	channel_close(r);
	free(r->servers);
	r->servers = want ? strdup(want) : NULL;
	rc = ares_init_options(&r->channel, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (rc != ARES_SUCCESS) {
		log_error("dns", "c-ares: %s", ares_strerror(rc));
		return;
	}
	if (want && (rc = ares_set_servers_ports_csv(r->channel, want)) != ARES_SUCCESS) {
		log_error("dns", "resolver servers %s: %s", want, ares_strerror(rc));
		ares_destroy(r->channel);
		return;
	}
	r->have_channel = true;
}

static void apply_all(struct dns_resolver *r)
{
	bool grew = false;
	uint64_t now = clock_mono_ms();

	for (int u = 0; r->cfg && u < r->cfg->nupstreams; u++)
		grew |= dns_upstream_apply(&r->cfg->upstreams[u], now);
	r->dirty = false;
	if (grew && r->changed)
		r->changed(r->changed_arg, r->cfg);
}

/* Starts due lookups; returns the ms until the next one is due. */
static uint64_t start_due(struct dns_resolver *r, uint64_t now, bool *settled)
{
	uint64_t next = RESOLVER_MAX_POLL_MS;

	*settled = true;
	for (int u = 0; r->cfg && u < r->cfg->nupstreams; u++) {
		const struct dns_upstream *d = r->cfg->upstreams[u].dns;

		for (int s = 0; d && s < d->nsources; s++) {
			struct dns_entry *e = d->sources[s].entry;

			if (!e)
				continue;
			if (!e->attempted)
				*settled = false;
			if (e->in_flight)
				continue;
			if (now >= e->next_due_ms) {
				lookup_start(r, e);
				continue;
			}
			if (e->next_due_ms - now < next)
				next = e->next_due_ms - now;
		}
	}
	return next;
}

static bool adopt_pending(struct dns_resolver *r)
{
	struct xg_config *cfg;
	bool stop;

	pthread_mutex_lock(&r->lock);
	cfg = r->pending;
	r->pending = NULL;
	stop = r->stop;
	if (cfg)
		r->settled = false;
	pthread_mutex_unlock(&r->lock);
	if (cfg) {
		if (r->cfg)
			config_put(r->cfg);
		r->cfg = cfg;
		channel_sync(r);
		apply_all(r);
	}
	return !stop;
}

static void set_settled(struct dns_resolver *r, bool settled)
{
	pthread_mutex_lock(&r->lock);
	if (settled && !r->settled) {
		r->settled = true;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
}

static int poll_once(struct dns_resolver *r, uint64_t wait_ms)
{
	struct pollfd pfds[ARES_GETSOCK_MAXNUM + 1];
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct timeval tv, max = {.tv_sec = wait_ms / 1000, .tv_usec = wait_ms % 1000 * 1000};
	unsigned bits;
	int n = 0;

	pfds[n++] = (struct pollfd){.fd = r->wake_fd, .events = POLLIN};
	if (r->have_channel) {
		bits = (unsigned)ares_getsock(r->channel, socks, ARES_GETSOCK_MAXNUM);
		/* ARES_GETSOCK_WRITABLE shifts a signed 1 into bit 31: test the bits unsigned. */
		for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = (bits & (1u << i) ? POLLIN : 0) |
				   (bits & (1u << (i + ARES_GETSOCK_MAXNUM)) ? POLLOUT : 0);

			if (ev)
				pfds[n++] = (struct pollfd){.fd = socks[i], .events = ev};
		}
		if (ares_timeout(r->channel, &max, &tv))
			wait_ms = tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
	}
	if (poll(pfds, n, (int)wait_ms) < 0 && errno != EINTR)
		log_warn("dns", "poll: %s", strerror(errno));
	if (pfds[0].revents & POLLIN) {
		uint64_t v;

		if (read(r->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_warn("dns", "wake: %s", strerror(errno));
	}
	if (!r->have_channel)
		return 0;
	for (int i = 1; i < n; i++) {
		ares_socket_t rd =
		    pfds[i].revents & (POLLIN | POLLERR | POLLHUP) ? pfds[i].fd : ARES_SOCKET_BAD;
		ares_socket_t wr =
		    pfds[i].revents & (POLLOUT | POLLERR) ? pfds[i].fd : ARES_SOCKET_BAD;

		if (rd != ARES_SOCKET_BAD || wr != ARES_SOCKET_BAD)
			ares_process_fd(r->channel, rd, wr);
	}
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
	return 0;
}

static void *resolver_main(void *arg)
{
	struct dns_resolver *r = arg;

	while (adopt_pending(r)) {
		uint64_t wait = RESOLVER_MAX_POLL_MS;
		bool settled = true;

		if (r->have_channel)
			wait = start_due(r, clock_mono_ms(), &settled);
		set_settled(r, settled);
		poll_once(r, wait);
		if (r->dirty)
			apply_all(r);
	}
	channel_close(r);
	if (r->dirty)
		apply_all(r);
	return NULL;
}

struct dns_resolver *dns_resolver_start(struct xg_config *cfg, dns_changed_fn changed, void *arg)
{
	struct dns_resolver *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return NULL;
	rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		log_error("dns", "c-ares: %s", ares_strerror(rc));
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->changed = changed;
	r->changed_arg = arg;
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->pending = config_get(cfg);
	if (r->wake_fd < 0 || pthread_create(&r->thread, NULL, resolver_main, r)) {
		log_error("dns", "cannot start the resolver thread");
		if (r->wake_fd >= 0)
			close(r->wake_fd);
		config_put(r->pending);
		free(r);
		return NULL;
	}
	return r;
}

static void wake(struct dns_resolver *r)
{
	uint64_t one = 1;

	if (write(r->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("dns", "wake: %s", strerror(errno));
}

void dns_resolver_update(struct dns_resolver *r, struct xg_config *cfg)
{
	struct xg_config *dropped;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	dropped = r->pending;
	r->pending = config_get(cfg);
	r->settled = false;
	pthread_mutex_unlock(&r->lock);
	if (dropped)
		config_put(dropped);
	wake(r);
}

bool dns_resolver_wait(struct dns_resolver *r, uint32_t timeout_ms)
{
	struct timespec until;
	bool settled;
	int rc = 0;

	if (!r)
		return true;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&r->lock);
	while (!r->settled && rc == 0)
		rc = pthread_cond_timedwait(&r->cond, &r->lock, &until);
	settled = r->settled;
	pthread_mutex_unlock(&r->lock);
	return settled;
}

void dns_resolver_stop(struct dns_resolver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_mutex_unlock(&r->lock);
	wake(r);
	pthread_join(r->thread, NULL);
	if (r->pending)
		config_put(r->pending);
	if (r->cfg)
		config_put(r->cfg);
	close(r->wake_fd);
	free(r->servers);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
	ares_library_cleanup();
}
