/*
 * Stream lifetime, the filter chain's cursor and the per-worker run queue. Single-threaded:
 * a pool belongs to one worker.
 */
#include <stdlib.h>
#include <string.h>

#include "stream/stream.h"

/* Heads up to the default header limit fit the pooled arena with room for what filters add
 * (normalised path, cache key); larger heads get an arena of their own for that stream. */
#define ARENA_POOLED 32768

struct stream_pool {
	struct stream *free_streams;
	unsigned long open;

	struct stream **made;
	size_t nmade, capmade;
	char **free_arenas;
	size_t nfree_arenas, capfree_arenas;
	struct stream *runq_head, *runq_tail;
};

struct stream_pool *stream_pool_new(void)
{
	return calloc(1, sizeof(struct stream_pool));
}

void stream_pool_free(struct stream_pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nmade; i++)
		free(p->made[i]);
	for (size_t i = 0; i < p->nfree_arenas; i++)
		free(p->free_arenas[i]);
	free(p->made);
	free(p->free_arenas);
	free(p);
}

unsigned long stream_pool_open_count(const struct stream_pool *p)
{
	return p->open;
}

static struct stream *pool_get(struct stream_pool *p)
{
	struct stream *st = p->free_streams;

	if (st) {
		p->free_streams = st->runq_next;
		return st;
	}
	if (p->nmade == p->capmade) {
		size_t cap = p->capmade ? p->capmade * 2 : 16;
		struct stream **made = realloc(p->made, cap * sizeof(*made));

		if (!made)
			return NULL;
		p->made = made;
		p->capmade = cap;
	}
	st = calloc(1, sizeof(*st));
	if (st)
		p->made[p->nmade++] = st;
	return st;
}

static bool arena_get(struct stream_pool *p, struct stream_arena *a, size_t need)
{
	a->used = 0;
	if (need <= ARENA_POOLED && p->nfree_arenas) {
		a->base = p->free_arenas[--p->nfree_arenas];
		a->cap = ARENA_POOLED;
		return true;
	}
	a->cap = need <= ARENA_POOLED ? ARENA_POOLED : need + ARENA_POOLED / 2;
	a->base = malloc(a->cap);
	return a->base != NULL;
}

static void arena_put(struct stream_pool *p, struct stream_arena *a)
{
	if (a->cap == ARENA_POOLED && p->nfree_arenas < 64) {
		if (p->nfree_arenas == p->capfree_arenas) {
			size_t cap = p->capfree_arenas ? p->capfree_arenas * 2 : 8;
			char **v = realloc(p->free_arenas, cap * sizeof(*v));

			if (!v) {
				free(a->base);
				a->base = NULL;
				return;
			}
			p->free_arenas = v;
			p->capfree_arenas = cap;
		}
		p->free_arenas[p->nfree_arenas++] = a->base;
	} else {
		free(a->base);
	}
	a->base = NULL;
	a->cap = a->used = 0;
}

void *stream_alloc(struct stream *st, size_t n)
{
	struct stream_arena *a = &st->arena;
	size_t off = (a->used + 7) & ~(size_t)7;

	if (off > a->cap || n > a->cap - off)
		return NULL;
	a->used = off + n;
	return a->base + off;
}

char *stream_strdup(struct stream *st, const char *p, size_t n)
{
	char *s = stream_alloc(st, n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

static void rebase(struct http_str *s, const char *from, size_t len, const char *to)
{
	if (s->p >= from && s->p <= from + len)
		s->p = to + (s->p - from);
}

static void rebase_request(struct http_request *r, const char *from, size_t len, const char *to)
{
	rebase(&r->method_str, from, len, to);
	rebase(&r->target, from, len, to);
	rebase(&r->path, from, len, to);
	rebase(&r->query, from, len, to);
	rebase(&r->host, from, len, to);
	rebase(&r->upgrade_proto, from, len, to);
	rebase(&r->connection, from, len, to);
	for (int i = 0; i < r->nheaders; i++) {
		rebase(&r->headers[i].name, from, len, to);
		rebase(&r->headers[i].value, from, len, to);
	}
}

/* A struct copy would move all HTTP_MAX_HEADERS slots (3 KiB) for the few in use. */
static void copy_request(struct http_request *dst, const struct http_request *src)
{
	const size_t tail = offsetof(struct http_request, nheaders);

	memcpy(dst, src, offsetof(struct http_request, headers));
	memcpy(dst->headers, src->headers, (size_t)src->nheaders * sizeof(src->headers[0]));
	memcpy((char *)dst + tail, (const char *)src + tail, sizeof(*src) - tail);
}

struct stream *stream_open(struct stream_pool *p, const struct stream_host_ops *ops, void *host,
			   const struct xg_config *cfg, const struct http_request *req,
			   const char *head, size_t head_len)
{
	struct stream *st = pool_get(p);
	uint64_t gen;
	char *copy;

	if (!st)
		return NULL;
	gen = st->gen;
	/* Only the fields a stream starts with are reset: the request is copied over, auth
	 * and the chain are large and fully rewritten before use. */
	memset(st, 0, offsetof(struct stream, req));
	memset(&st->req + 1, 0, (size_t)((char *)&st->auth - (char *)(&st->req + 1)));
	st->gen = gen;
	st->auth_done = false;
	st->consumer[0] = '\0';
	st->status = 0;
	st->completed = false;
	st->resp_local = false;
	st->nresp_edits = 0;
	st->body_filter = -1;
	st->nreq_edits = 0;
	st->up_path = st->up_query = NULL;
	st->up_path_len = st->up_query_len = 0;
	st->req_body_wanted = st->req_body_ready = false;
	st->req_body_max = st->req_body_len = 0;
	st->req_body = NULL;
	st->req_body_copy = NULL;
	st->hold_filter = -1;
	st->hold_max = 0;
	st->resp_body = NULL;
	st->resp_body_len = 0;
	st->resp_body_type = NULL;
	st->nfilters = st->cursor = st->entered = 0;
	st->waiting = st->queued = st->ended = st->running = st->end_requested = false;
	st->runq_next = NULL;
	st->pool = p;
	st->ops = ops;
	st->host = host;
	st->cfg = cfg;
	st->route = -1;
	st->upstream = -1;
	if (!arena_get(p, &st->arena, head_len)) {
		st->runq_next = p->free_streams;
		p->free_streams = st;
		return NULL;
	}
	copy = stream_alloc(st, head_len);
	memcpy(copy, head, head_len);
	copy_request(&st->req, req);
	rebase_request(&st->req, head, head_len, copy);
	p->open++;
	return st;
}

bool stream_add_filter(struct stream *st, const struct filter *f)
{
	void *state = NULL;

	if (st->nfilters == STREAM_MAX_FILTERS)
		return false;
	if (f->state_size) {
		state = stream_alloc(st, f->state_size);
		if (!state)
			return false;
		memset(state, 0, f->state_size);
	}
	st->chain[st->nfilters] = f;
	st->state[st->nfilters] = state;
	st->nfilters++;
	return true;
}

static void stream_finish_end(struct stream *st);

/* true when the stream ended while the filter ran (its end was deferred until now). */
static bool stop_running(struct stream *st)
{
	st->running = false;
	if (!st->end_requested)
		return false;
	stream_finish_end(st);
	return true;
}

void stream_run(struct stream *st, uint64_t now_ms)
{
	st->now_ms = now_ms;
	st->waiting = false;
	while (st->cursor < st->nfilters) {
		int i = st->cursor;
		enum filter_verdict v;

		if (st->entered <= i)
			st->entered = i + 1;
		st->running = true;
		v = st->chain[i]->on_request ? st->chain[i]->on_request(st, st->state[i])
					     : FILTER_CONTINUE;
		if (stop_running(st))
			return;
		if (v == FILTER_WAIT) {
			st->waiting = true;
			/* The host reads the body now; it wakes the stream when it has it. */
			if (st->req_body_wanted && !st->req_body_ready)
				st->ops->read_body(st);
			return;
		}
		st->cursor = i + 1;
		if (v == FILTER_DONE) {
			st->cursor = st->nfilters;
			return;
		}
	}
	st->ops->forward(st);
}

void stream_reply_error(struct stream *st, int status, const char *reason,
			const char *extra_headers)
{
	st->status = status;
	st->ops->reply_error(st, status, reason, extra_headers);
}

void stream_reply_status(struct stream *st, int status, const char *headers)
{
	st->status = status;
	st->ops->reply_status(st, status, headers);
}

void stream_reply_body(struct stream *st, const char *headers, const char *body, size_t len)
{
	st->status = 200;
	st->ops->reply_body(st, headers, body, len);
}

void stream_response(struct stream *st, const struct http_response *resp)
{
	/* A new head replaces one that was never sent (an origin head the host then refused
	 * for a gateway error): edits and a body claim belonged to that one. */
	st->nresp_edits = 0;
	st->body_filter = -1;
	st->hold_filter = -1;
	st->status = resp->status;
	for (int i = 0; i < st->entered; i++)
		if (st->chain[i]->on_response)
			st->chain[i]->on_response(st, st->state[i], resp);
}

void stream_response_data(struct stream *st, const char *p, size_t n)
{
	if (!n)
		return;
	for (int i = 0; i < st->entered; i++)
		if (st->chain[i]->on_response_data)
			st->chain[i]->on_response_data(st, st->state[i], p, n);
}

static bool add_edit(struct stream *st, const char *name, const char *value)
{
	struct stream_hdr_edit *e;

	if (st->nresp_edits == STREAM_MAX_RESP_EDITS)
		return false;
	e = &st->resp_edits[st->nresp_edits];
	e->name = stream_strdup(st, name, strlen(name));
	e->value = value ? stream_strdup(st, value, strlen(value)) : NULL;
	if (!e->name || (value && !e->value))
		return false;
	st->nresp_edits++;
	return true;
}

bool stream_resp_header_add(struct stream *st, const char *name, const char *value)
{
	return add_edit(st, name, value);
}

bool stream_resp_header_remove(struct stream *st, const char *name)
{
	return add_edit(st, name, NULL);
}

int stream_resp_edits_room(const struct stream *st)
{
	return STREAM_MAX_RESP_EDITS - st->nresp_edits;
}

bool stream_resp_header_removed(const struct stream *st, struct http_str name)
{
	for (int i = 0; i < st->nresp_edits; i++)
		if (!st->resp_edits[i].value && http_str_eq_nocase(name, st->resp_edits[i].name))
			return true;
	return false;
}

static bool add_req_edit(struct stream *st, const char *name, const char *value)
{
	struct stream_hdr_edit *e;

	if (st->nreq_edits == STREAM_MAX_REQ_EDITS)
		return false;
	e = &st->req_edits[st->nreq_edits];
	e->name = stream_strdup(st, name, strlen(name));
	e->value = value ? stream_strdup(st, value, strlen(value)) : NULL;
	if (!e->name || (value && !e->value))
		return false;
	st->nreq_edits++;
	return true;
}

bool stream_req_header_add(struct stream *st, const char *name, const char *value)
{
	return add_req_edit(st, name, value);
}

bool stream_req_header_remove(struct stream *st, const char *name)
{
	return add_req_edit(st, name, NULL);
}

int stream_req_edits_room(const struct stream *st)
{
	return STREAM_MAX_REQ_EDITS - st->nreq_edits;
}

bool stream_req_header_removed(const struct stream *st, struct http_str name)
{
	for (int i = 0; i < st->nreq_edits; i++)
		if (!st->req_edits[i].value && http_str_eq_nocase(name, st->req_edits[i].name))
			return true;
	return false;
}

bool stream_set_upstream_path(struct stream *st, const char *p, size_t n)
{
	char *s = stream_strdup(st, p, n);

	if (!s)
		return false;
	st->up_path = s;
	st->up_path_len = n;
	return true;
}

bool stream_set_upstream_query(struct stream *st, const char *p, size_t n)
{
	char *s = stream_strdup(st, p, n);

	if (!s)
		return false;
	st->up_query = s;
	st->up_query_len = n;
	return true;
}

bool stream_need_request_body(struct stream *st, size_t max)
{
	if (!st->ops->read_body)
		return false;
	if (st->req_body_wanted && st->req_body_max < max)
		max = st->req_body_max; /* several filters: the tightest bound holds */
	st->req_body_wanted = true;
	st->req_body_max = max;
	return true;
}

bool stream_set_request_body(struct stream *st, const char *p, size_t n)
{
	char *copy = malloc(n ? n : 1);

	if (!copy)
		return false;
	memcpy(copy, p, n);
	free(st->req_body_copy);
	st->req_body_copy = copy;
	st->req_body = copy;
	st->req_body_len = n;
	return true;
}

bool stream_hold_response(struct stream *st, void *state, size_t max)
{
	if (st->hold_filter >= 0)
		return false;
	for (int i = 0; i < st->entered; i++)
		if (st->state[i] == state && state && st->chain[i]->on_response_whole) {
			st->hold_filter = i;
			st->hold_max = max;
			return true;
		}
	return false;
}

bool stream_set_response_body(struct stream *st, const char *p, size_t n)
{
	char *copy = malloc(n ? n : 1);

	if (!copy)
		return false;
	memcpy(copy, p, n);
	free(st->resp_body);
	st->resp_body = copy;
	st->resp_body_len = n;
	return true;
}

bool stream_set_response_type(struct stream *st, const char *type)
{
	st->resp_body_type = stream_strdup(st, type, strlen(type));
	return st->resp_body_type != NULL;
}

bool stream_response_whole(struct stream *st, const char *body, size_t len, const char **reason)
{
	int i = st->hold_filter;

	*reason = "response transform failed";
	if (i < 0)
		return false;
	return st->chain[i]->on_response_whole(st, st->state[i], body, len, reason);
}

bool stream_claim_body(struct stream *st, void *state)
{
	if (st->body_filter >= 0)
		return false;
	for (int i = 0; i < st->entered; i++)
		if (st->state[i] == state && state && st->chain[i]->on_response_body) {
			st->body_filter = i;
			return true;
		}
	return false;
}

int stream_response_body(struct stream *st, struct stream_body_io *io)
{
	int i = st->body_filter;

	io->in_used = io->out_len = 0;
	io->done = false;
	if (i < 0)
		return -1;
	return st->chain[i]->on_response_body(st, st->state[i], io);
}

static void runq_unlink(struct stream_pool *p, struct stream *st)
{
	struct stream **pp = &p->runq_head, *prev = NULL;

	while (*pp && *pp != st) {
		prev = *pp;
		pp = &(*pp)->runq_next;
	}
	if (!*pp)
		return;
	*pp = st->runq_next;
	if (p->runq_tail == st)
		p->runq_tail = prev;
	st->runq_next = NULL;
	st->queued = false;
}

void stream_end(struct stream *st)
{
	if (st->ended || st->end_requested)
		return;
	if (st->running) {
		st->end_requested = true;
		return;
	}
	stream_finish_end(st);
}

static void stream_finish_end(struct stream *st)
{
	struct stream_pool *p = st->pool;

	st->ended = true;
	if (st->queued)
		runq_unlink(p, st);
	for (int i = st->entered - 1; i >= 0; i--)
		if (st->chain[i]->on_end)
			st->chain[i]->on_end(st, st->state[i]);
	if (st->auth_done) {
		auth_result_release(&st->auth);
		st->auth_done = false;
	}
	free(st->req_body_copy);
	st->req_body_copy = NULL;
	st->req_body = NULL;
	free(st->resp_body);
	st->resp_body = NULL;
	arena_put(p, &st->arena);
	st->gen++;
	st->host = NULL;
	st->runq_next = p->free_streams;
	p->free_streams = st;
	p->open--;
}

struct stream_ref stream_ref(struct stream *st)
{
	struct stream_ref r = { st, st->gen };

	return r;
}

bool stream_ref_live(struct stream_ref r)
{
	return r.st && r.st->gen == r.gen && !r.st->ended;
}

void stream_wake(struct stream *st)
{
	struct stream_pool *p = st->pool;

	if (st->ended || !st->waiting || st->queued)
		return;
	st->queued = true;
	st->runq_next = NULL;
	if (p->runq_tail)
		p->runq_tail->runq_next = st;
	else
		p->runq_head = st;
	p->runq_tail = st;
}

void stream_ref_wake(struct stream_ref r)
{
	if (stream_ref_live(r))
		stream_wake(r.st);
}

bool stream_runq_empty(const struct stream_pool *p)
{
	return !p->runq_head;
}

void stream_runq_drain(struct stream_pool *p, uint64_t now_ms)
{
	struct stream *st;

	while ((st = p->runq_head)) {
		const struct stream_host_ops *ops = st->ops;
		void *host = st->host;

		p->runq_head = st->runq_next;
		if (!p->runq_head)
			p->runq_tail = NULL;
		st->runq_next = NULL;
		st->queued = false;
		stream_run(st, now_ms);
		/* Even when the chain ended the stream (a filter answered), the host has to
		 * move: it was waiting for this stream. */
		if (ops->resumed)
			ops->resumed(host);
	}
}
