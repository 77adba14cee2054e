/* Cluster deny list: see deny.h. */
#include "cluster/deny.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/cfg.h"
#include "common/log.h"
#include "config/config.h"
#include "edge/edge.h"

#define RESYNC_MS 1000 /* at least this often: expiries take effect within a second */
#define BACKOFF_MAX_MS 1000

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool canonical_cidr(const char *text, struct edge_cidr *c, char *out, size_t outlen)
{
	int bytes;

	memset(c, 0, sizeof(*c));
	if (!cfg_parse_cidr(text, &c->family, c->addr, &c->prefix_len))
		return false;
	bytes = c->family == AF_INET ? 4 : 16;
	for (int i = 0; i < bytes; i++) {
		int keep = c->prefix_len - i * 8;

		if (keep <= 0)
			c->addr[i] = 0;
		else if (keep < 8)
			c->addr[i] &= (uint8_t)(0xff00 >> keep);
	}
	edge_cidr_format(c, out, outlen);
	return true;
}

static void key_name(const struct cluster_config *cc, char *out, size_t len)
{
	snprintf(out, len, "%sdeny", cc->key_prefix ? cc->key_prefix : "");
}

/* A blocking connection, authenticated and on the configured db; NULL with err. */
static redisContext *connect_sync(const struct cluster_config *cc, char *err, size_t errlen)
{
	struct timeval tv = {.tv_sec = cc->timeout_ms / 1000,
			     .tv_usec = (cc->timeout_ms % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(cc->host, cc->port, tv);
	redisReply *r;

	if (!c || c->err) {
		snprintf(err, errlen, "redis %s:%d: %s", cc->host, cc->port,
			 c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	if (cc->password) {
		r = redisCommand(c, "AUTH %s", cc->password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis %s:%d: AUTH refused: %s", cc->host, cc->port,
				 r ? r->str : c->errstr);
			freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	if (cc->db) {
		r = redisCommand(c, "SELECT %d", cc->db);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis %s:%d: SELECT refused: %s", cc->host, cc->port,
				 r ? r->str : c->errstr);
			freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	return c;
}

int cluster_deny_write(const struct cluster_config *cc, bool add, const char *cidr, uint64_t ttl_s,
		       char *canon, char *err, size_t errlen)
{
	struct edge_cidr c;
	char key[300], expiry[32], msg[96];
	redisContext *rc;
	redisReply *r;
	int ret = 0;

	if (!canonical_cidr(cidr, &c, canon, 64)) {
		snprintf(err, errlen, "invalid CIDR \"%s\"", cidr);
		return -EINVAL;
	}
	rc = connect_sync(cc, err, errlen);
	if (!rc)
		return -EIO;
	key_name(cc, key, sizeof(key));
	snprintf(expiry, sizeof(expiry), "%llu",
		 ttl_s ? (unsigned long long)(wall_ms() + ttl_s * 1000) : 0ULL);
	if (add)
		r = redisCommand(rc, "HSET %s %s %s", key, canon, expiry);
	else
		r = redisCommand(rc, "HDEL %s %s", key, canon);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis: %s", r ? r->str : rc->errstr);
		ret = -EIO;
	} else if (!add && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
		snprintf(err, errlen, "%s is not in the cluster deny list", canon);
		ret = -ENOENT;
	}
	freeReplyObject(r);
	if (!ret) {
		snprintf(msg, sizeof(msg), "%s %s", add ? "add" : "del", canon);
		r = redisCommand(rc, "PUBLISH %s %s", key, msg);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis: PUBLISH: %s", r ? r->str : rc->errstr);
			ret = -EIO;
		}
		freeReplyObject(r);
	}
	redisFree(rc);
	return ret;
}

static redisReply *hgetall(redisContext *rc, const struct cluster_config *cc)
{
	char key[300];
	redisReply *r;

	key_name(cc, key, sizeof(key));
	r = redisCommand(rc, "HGETALL %s", key);
	if (r && r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

json_t *cluster_deny_list(const struct cluster_config *cc, char *err, size_t errlen)
{
	redisContext *rc = connect_sync(cc, err, errlen);
	uint64_t now = wall_ms();
	json_t *arr, *out;
	redisReply *r;

	if (!rc)
		return NULL;
	r = hgetall(rc, cc);
	if (!r) {
		snprintf(err, errlen, "redis: HGETALL: %s", rc->err ? rc->errstr : "refused");
		redisFree(rc);
		return NULL;
	}
	arr = json_array();
	for (size_t i = 0; arr && i + 1 < r->elements; i += 2) {
		unsigned long long exp = strtoull(r->element[i + 1]->str, NULL, 10);

		if (exp && exp <= now)
			continue;
		json_array_append_new(arr, json_pack("{s:s, s:I}", "cidr", r->element[i]->str,
						     "expires_ms", (json_int_t)exp));
	}
	freeReplyObject(r);
	redisFree(rc);
	out = arr ? json_pack("{s:o}", "entries", arr) : NULL;
	if (!out)
		snprintf(err, errlen, "out of memory");
	return out;
}

/* ---- subscriber thread ---- */

struct settings {
	struct cluster_config cc; /* host, port, password, db, timeout_ms, key_prefix */
	char *pin_dir;
	char **config_deny; /* the config's own deny entries, canonical */
	int nconfig_deny;
};

struct cluster_deny {
	pthread_t thread;
	int stop_fd;
	cluster_config_fn get_config;
	void *arg;
	char **applied; /* what this node put into its maps for the cluster */
	int napplied;
};

static void settings_free(struct settings *s)
{
	free(s->cc.password);
	free(s->cc.key_prefix);
	free(s->pin_dir);
	for (int i = 0; i < s->nconfig_deny; i++)
		free(s->config_deny[i]);
	free(s->config_deny);
	memset(s, 0, sizeof(*s));
}

/* The current config's cluster and edge settings; false when either is absent. */
static bool settings_get(struct cluster_deny *d, struct settings *s)
{
	struct xg_config *cfg = d->get_config(d->arg);
	bool ok = cfg && cfg->cluster && cfg->edge;

	memset(s, 0, sizeof(*s));
	if (ok) {
		s->cc = *cfg->cluster;
		s->cc.address_text = NULL;
		s->cc.password = cfg->cluster->password ? strdup(cfg->cluster->password) : NULL;
		s->cc.key_prefix = strdup(cfg->cluster->key_prefix);
		s->pin_dir = strdup(edge_config_pin_dir(cfg->edge));
		s->config_deny = calloc(cfg->edge->ndeny + 1, sizeof(char *));
		for (int i = 0; s->config_deny && i < cfg->edge->ndeny; i++) {
			char text[64];

			edge_cidr_format(&cfg->edge->deny[i], text, sizeof(text));
			s->config_deny[s->nconfig_deny++] = strdup(text);
		}
	}
	if (cfg)
		config_put(cfg);
	return ok;
}

static bool settings_same(const struct settings *a, const struct settings *b)
{
	return cluster_config_same_redis(&a->cc, &b->cc) &&
	       !strcmp(a->cc.key_prefix ? a->cc.key_prefix : "",
		       b->cc.key_prefix ? b->cc.key_prefix : "") &&
	       !strcmp(a->pin_dir ? a->pin_dir : "", b->pin_dir ? b->pin_dir : "");
}

static bool listed(char *const *v, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (v[i] && !strcmp(v[i], s))
			return true;
	return false;
}

static void applied_add(struct cluster_deny *d, const char *cidr)
{
	char **v = realloc(d->applied, (d->napplied + 1) * sizeof(*v));

	if (!v)
		return;
	d->applied = v;
	if ((v[d->napplied] = strdup(cidr)))
		d->napplied++;
}

/* Makes the node's maps hold the wanted cluster entries: adds new, removes gone ones. */
static void apply(struct cluster_deny *d, const struct settings *s, char **want, int nwant)
{
	char err[256];

	for (int i = 0; i < nwant; i++) {
		if (listed(d->applied, d->napplied, want[i]))
			continue;
		if (edge_list_add(s->pin_dir, EDGE_LIST_DENY, want[i], err, sizeof(err))) {
			log_warn("cluster", "deny %s: %s", want[i], err);
			continue;
		}
		log_info("cluster", "deny %s (cluster)", want[i]);
		applied_add(d, want[i]);
	}
	for (int i = 0; i < d->napplied; i++) {
		if (listed(want, nwant, d->applied[i]))
			continue;
		if (!listed(s->config_deny, s->nconfig_deny, d->applied[i])) {
			if (edge_list_del(s->pin_dir, EDGE_LIST_DENY, d->applied[i], err,
					  sizeof(err)) &&
			    !strstr(err, "is not in"))
				log_warn("cluster", "undeny %s: %s", d->applied[i], err);
			else
				log_info("cluster", "deny %s removed (cluster)", d->applied[i]);
		}
		free(d->applied[i]);
		d->applied[i--] = d->applied[--d->napplied];
	}
}

/* Reads the hash, drops expired entries from it, applies the rest; the next expiry in
 * *next_ms (0: none). false when the connection failed. */
static bool resync(struct cluster_deny *d, redisContext *rc, const struct settings *s,
		   uint64_t *next_ms)
{
	redisReply *r = hgetall(rc, &s->cc);
	uint64_t now = wall_ms();
	char key[300], **want;
	int nwant = 0;

	*next_ms = 0;
	if (!r)
		return false;
	key_name(&s->cc, key, sizeof(key));
	want = calloc(r->elements / 2 + 1, sizeof(*want));
	for (size_t i = 0; want && i + 1 < r->elements; i += 2) {
		const char *cidr = r->element[i]->str;
		uint64_t exp = strtoull(r->element[i + 1]->str, NULL, 10);

		if (exp && exp <= now) {
			freeReplyObject(redisCommand(rc, "HDEL %s %s", key, cidr));
			continue;
		}
		if (exp && (!*next_ms || exp < *next_ms))
			*next_ms = exp;
		want[nwant++] = (char *)cidr;
	}
	if (want)
		apply(d, s, want, nwant);
	free(want);
	freeReplyObject(r);
	return !rc->err;
}

static bool stopping(struct cluster_deny *d, int timeout_ms)
{
	struct pollfd p = {.fd = d->stop_fd, .events = POLLIN};

	return poll(&p, 1, timeout_ms) > 0;
}

/* One subscribed session; returns when the connection fails, the settings change or
 * the thread is stopped (true). */
static bool session(struct cluster_deny *d, const struct settings *s, bool *was_up,
		    bool *subscribed)
{
	char err[256], key[300];
	redisContext *cmd = connect_sync(&s->cc, err, sizeof(err)), *sub = NULL;
	redisReply *r = NULL;
	uint64_t next_exp = 0, last_sync = 0;
	bool stop = false;

	if (cmd)
		sub = connect_sync(&s->cc, err, sizeof(err));
	if (sub) {
		key_name(&s->cc, key, sizeof(key));
		r = redisCommand(sub, "SUBSCRIBE %s", key);
		if (!r || r->type != REDIS_REPLY_ARRAY)
			snprintf(err, sizeof(err), "SUBSCRIBE refused");
	}
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		if (*was_up)
			log_warn("cluster", "deny list: %s", err);
		*was_up = false;
		freeReplyObject(r);
		redisFree(sub);
		redisFree(cmd);
		return false;
	}
	freeReplyObject(r);
	/* The read timeout would poison the context: poll(2) decides when to read. */
	redisSetTimeout(sub, (struct timeval){0});
	log_info("cluster", "deny list: subscribed to %s on %s:%d", key, s->cc.host, s->cc.port);
	*was_up = *subscribed = true;
	for (;;) {
		struct pollfd p[2] = {{.fd = sub->fd, .events = POLLIN},
				      {.fd = d->stop_fd, .events = POLLIN}};
		uint64_t now = wall_ms();
		int wait = RESYNC_MS;
		bool got = false;
		struct settings cur;
		void *reply;

		while (redisGetReplyFromReader(sub, &reply) == REDIS_OK && reply) {
			freeReplyObject(reply);
			got = true;
		}
		if (got || now - last_sync >= RESYNC_MS || (next_exp && now >= next_exp)) {
			if (!resync(d, cmd, s, &next_exp))
				break;
			last_sync = now;
		}
		if (next_exp && next_exp > now && next_exp - now < (uint64_t)wait)
			wait = (int)(next_exp - now) + 1;
		if (poll(p, 2, wait) < 0 && errno != EINTR)
			break;
		if (p[1].revents) {
			stop = true;
			break;
		}
		if (p[0].revents && redisBufferRead(sub) != REDIS_OK)
			break;
		if (!settings_get(d, &cur) || !settings_same(&cur, s)) {
			settings_free(&cur);
			break;
		}
		settings_free(&cur);
	}
	if (!stop)
		log_warn("cluster", "deny list: connection to %s:%d lost", s->cc.host, s->cc.port);
	*was_up = false;
	redisFree(sub);
	redisFree(cmd);
	return stop;
}

static void *deny_main(void *arg)
{
	struct cluster_deny *d = arg;
	int backoff = 100;
	bool was_up = true, subscribed;

	pthread_setname_np(pthread_self(), "xgate-deny");
	for (;;) {
		struct settings s;

		if (!settings_get(d, &s)) {
			settings_free(&s);
			if (stopping(d, RESYNC_MS))
				break;
			continue;
		}
		subscribed = false;
		if (session(d, &s, &was_up, &subscribed)) {
			settings_free(&s);
			break;
		}
		settings_free(&s);
		if (subscribed)
			backoff = 100;
		if (stopping(d, backoff))
			break;
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

struct cluster_deny *cluster_deny_start(cluster_config_fn get_config, void *arg)
{
	struct cluster_deny *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->get_config = get_config;
	d->arg = arg;
	d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->stop_fd < 0 || pthread_create(&d->thread, NULL, deny_main, d)) {
		if (d->stop_fd >= 0)
			close(d->stop_fd);
		free(d);
		return NULL;
	}
	return d;
}

void cluster_deny_stop(struct cluster_deny *d)
{
	uint64_t one = 1;

	if (!d)
		return;
	if (write(d->stop_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("cluster", "deny list: cannot signal the thread to stop");
	pthread_join(d->thread, NULL);
	close(d->stop_fd);
	for (int i = 0; i < d->napplied; i++)
		free(d->applied[i]);
	free(d->applied);
	free(d);
}
