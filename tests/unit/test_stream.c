/*
 * Streams and the filter chain driven by a fake codec/host: continue, answer, wait and
 * resume through the run queue, cancel while waiting, late wakes after stream end.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "unit/check.h"
#include "stream/stream.h"

struct fake_host {
	int forwarded, replied, resumed, status, body_reads;
	char reason[64];
	bool end_from_reply; /* the host ends the stream inside reply_error (as exchange.c does) */
	struct stream *st;
};

static void host_reply(struct stream *st, int status, const char *reason, const char *extra)
{
	struct fake_host *h = st->host;

	h->replied++;
	h->status = status;
	snprintf(h->reason, sizeof(h->reason), "%s", reason);
	if (h->end_from_reply)
		stream_end(st);
}

static void host_forward(struct stream *st)
{
	((struct fake_host *)st->host)->forwarded++;
}

static void host_resumed(void *host)
{
	((struct fake_host *)host)->resumed++;
}

static void host_reply_status(struct stream *st, int status, const char *headers)
{
	struct fake_host *h = st->host;

	h->replied++;
	h->status = status;
	snprintf(h->reason, sizeof(h->reason), "%s", headers);
}

/* The host reads the body the filter asked for; the test completes it. */
static void host_read_body(struct stream *st)
{
	((struct fake_host *)st->host)->body_reads++;
}

static const struct stream_host_ops ops = {
	.read_body = host_read_body,
	.reply_error = host_reply,
	.reply_status = host_reply_status,
	.forward = host_forward,
	.resumed = host_resumed,
};

/* A filter log shared by the test filters: which hook ran, in order. */
static char trace[256];

static void note(const char *s)
{
	strncat(trace, s, sizeof(trace) - strlen(trace) - 1);
}

struct wait_state {
	int calls;
	bool ready;
};

static enum filter_verdict pass_request(struct stream *st, void *state)
{
	note("p");
	return FILTER_CONTINUE;
}

static void pass_end(struct stream *st, void *state)
{
	note("P");
}

static enum filter_verdict wait_request(struct stream *st, void *state)
{
	struct wait_state *ws = state;

	ws->calls++;
	note("w");
	return ws->ready ? FILTER_CONTINUE : FILTER_WAIT;
}

static void wait_end(struct stream *st, void *state)
{
	note("W");
}

static enum filter_verdict deny_request(struct stream *st, void *state)
{
	note("d");
	stream_reply_error(st, 403, "denied", NULL);
	return FILTER_DONE;
}

static void deny_end(struct stream *st, void *state)
{
	note("D");
}

static int data_bytes;

static void count_data(struct stream *st, void *state, const char *p, size_t n)
{
	data_bytes += n;
}

static const struct filter f_pass = { .name = "pass", .on_request = pass_request,
				       .on_end = pass_end, .on_response_data = count_data };
static const struct filter f_wait = { .name = "wait", .state_size = sizeof(struct wait_state),
				       .on_request = wait_request, .on_end = wait_end };
static const struct filter f_deny = { .name = "deny", .on_request = deny_request,
				       .on_end = deny_end };

/* Asks for the body once, then replaces it with its upper-case copy. */
static enum filter_verdict body_request(struct stream *st, void *state)
{
	char up[64];

	note("b");
	if (!st->req_body_ready)
		return stream_need_request_body(st, 100) ? FILTER_WAIT : FILTER_DONE;
	for (size_t i = 0; i < st->req_body_len && i < sizeof(up); i++)
		up[i] = toupper((unsigned char)st->req_body[i]);
	stream_set_request_body(st, up, st->req_body_len);
	stream_req_header_remove(st, "X-A");
	stream_req_header_add(st, "X-B", "2");
	stream_set_upstream_path(st, "/v2", 3);
	return FILTER_CONTINUE;
}

static const struct filter f_body = { .name = "body", .on_request = body_request };

static const char head[] = "GET /a/b?x=1 HTTP/1.1\r\nHost: example.test\r\nX-A: 1\r\n\r\n";

static struct stream *open_stream(struct stream_pool *p, struct fake_host *h)
{
	struct http_request req;
	char *buf = strdup(head);
	struct stream *st;
	int n = http_parse_request(buf, strlen(buf), NULL, &req);

	CHECK(n > 0);
	st = stream_open(p, &ops, h, NULL, &req, buf, n);
	/* The stream keeps its own copy: the codec's buffer may go away at once. */
	memset(buf, 'Z', strlen(buf));
	free(buf);
	h->st = st;
	trace[0] = '\0';
	return st;
}

static struct wait_state *wait_state_of(struct stream *st, int idx)
{
	return st->state[idx];
}

static void test_request_survives_codec_buffer(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);
	const struct http_header *xa;

	CHECK(st != NULL);
	CHECK(st->req.path.len == 4 && !memcmp(st->req.path.p, "/a/b", 4));
	CHECK(st->req.query.len == 3 && !memcmp(st->req.query.p, "x=1", 3));
	CHECK(st->req.host.len == 12 && !memcmp(st->req.host.p, "example.test", 12));
	xa = http_find_header(st->req.headers, st->req.nheaders, "x-a");
	CHECK(xa && xa->value.len == 1 && xa->value.p[0] == '1');
	CHECK_EQ(stream_pool_open_count(p), 1);
	stream_end(st);
	CHECK_EQ(stream_pool_open_count(p), 0);
	stream_pool_free(p);
}

static void test_chain_continues_to_forward(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);

	CHECK(stream_add_filter(st, &f_pass));
	CHECK(stream_add_filter(st, &f_pass));
	stream_run(st, 1);
	CHECK_EQ(h.forwarded, 1);
	CHECK_EQ(h.replied, 0);
	stream_response_data(st, "abc", 3);
	stream_response_data(st, "", 0);
	CHECK_EQ(data_bytes, 6); /* both filters saw the 3 bytes */
	stream_end(st);
	CHECK_STR(trace, "ppPP");
	stream_pool_free(p);
}

static void test_done_stops_chain_and_only_entered_end(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { .end_from_reply = true };
	struct stream *st = open_stream(p, &h);

	stream_add_filter(st, &f_pass);
	stream_add_filter(st, &f_deny);
	stream_add_filter(st, &f_pass); /* never reached: gets no on_end */
	stream_run(st, 1);
	CHECK_EQ(h.replied, 1);
	CHECK_EQ(h.status, 403);
	CHECK_EQ(h.forwarded, 0);
	/* The host ended the stream from inside the filter: the end ran once, after it. */
	CHECK_STR(trace, "pdDP");
	CHECK_EQ(stream_pool_open_count(p), 0);
	stream_end(st); /* a second end is harmless */
	CHECK_EQ(stream_pool_open_count(p), 0);
	stream_pool_free(p);
}

static void test_wait_then_resume_through_runq(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);
	struct stream_ref ref;

	stream_add_filter(st, &f_pass);
	stream_add_filter(st, &f_wait);
	stream_add_filter(st, &f_pass);
	stream_run(st, 1);
	CHECK(st->waiting);
	CHECK_EQ(h.forwarded, 0);
	CHECK_STR(trace, "pw");
	/* Nothing runs before a wake, and a drain with an empty queue does nothing. */
	stream_runq_drain(p, 2);
	CHECK_EQ(h.resumed, 0);
	ref = stream_ref(st);
	wait_state_of(st, 1)->ready = true;
	stream_ref_wake(ref);
	stream_wake(st); /* twice: queued once */
	CHECK(!stream_runq_empty(p));
	CHECK_EQ(h.forwarded, 0); /* waking never re-enters the chain */
	stream_runq_drain(p, 3);
	CHECK(stream_runq_empty(p));
	CHECK_EQ(wait_state_of(st, 1)->calls, 2);
	CHECK_EQ(h.forwarded, 1);
	CHECK_EQ(h.resumed, 1);
	CHECK_EQ(st->now_ms, 3);
	CHECK_STR(trace, "pwwp");
	stream_end(st);
	CHECK_STR(trace, "pwwpPWP");
	stream_pool_free(p);
}

static void test_cancel_while_waiting(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);
	struct stream_ref ref;

	stream_add_filter(st, &f_wait);
	stream_add_filter(st, &f_pass);
	stream_run(st, 1);
	ref = stream_ref(st);
	stream_wake(st); /* queued, then the client leaves before the drain */
	stream_end(st);
	CHECK_STR(trace, "wW"); /* the waiting filter's end ran; the unreached one's did not */
	CHECK(stream_runq_empty(p));
	stream_runq_drain(p, 2);
	CHECK_EQ(h.forwarded, 0);
	CHECK_EQ(h.resumed, 0);
	/* A late completion after the end: the generation moved on, nothing happens... */
	CHECK(!stream_ref_live(ref));
	stream_ref_wake(ref);
	CHECK(stream_runq_empty(p));
	/* ...even once the same memory serves the next stream. */
	st = open_stream(p, &h);
	CHECK(st == ref.st);
	stream_add_filter(st, &f_wait);
	stream_run(st, 3);
	stream_ref_wake(ref);
	CHECK(stream_runq_empty(p));
	CHECK(stream_ref_live(stream_ref(st)));
	stream_end(st);
	stream_pool_free(p);
}

static void test_big_head_and_arena_bounds(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	size_t n = 100000;
	char *buf = malloc(n + 64);
	struct http_limits lim = { .max_header_bytes = n + 64 };
	struct http_request req;
	struct stream *st;
	int len;

	len = snprintf(buf, 64, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
	memset(buf + len, 'b', n - len - 4);
	memcpy(buf + n - 4, "\r\n\r\n", 4);
	CHECK_EQ(http_parse_request(buf, n, &lim, &req), (long long)n);
	st = stream_open(p, &ops, &h, NULL, &req, buf, n);
	CHECK(st != NULL);
	free(buf);
	CHECK(http_find_header(st->req.headers, st->req.nheaders, "x-big")->value.p[0] == 'b');
	CHECK(stream_alloc(st, 8) != NULL);
	CHECK(stream_alloc(st, (size_t)1 << 40) == NULL); /* exhaustion is an answer, not UB */
	stream_end(st);
	stream_pool_free(p);
}

static void test_chain_bound(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);
	int added = 0;

	while (stream_add_filter(st, &f_pass))
		added++;
	CHECK_EQ(added, STREAM_MAX_FILTERS);
	stream_end(st);
	stream_pool_free(p);
}

/* A response filter: edits the head and upper-cases the body, at most 4 bytes of input
 * per call and only as much as the host has room for (so backpressure is visible). */
struct upper_state {
	bool claimed, second_claim;
	int fin_calls;
};

static void upper_response(struct stream *st, void *state, const struct http_response *resp)
{
	struct upper_state *us = state;

	stream_resp_header_remove(st, "Content-Length");
	stream_resp_header_add(st, "X-Upper", "yes");
	us->claimed = stream_claim_body(st, state);
	us->second_claim = stream_claim_body(st, state);
}

static int upper_body(struct stream *st, void *state, struct stream_body_io *io)
{
	struct upper_state *us = state;
	size_t n = io->in_len < 4 ? io->in_len : 4;

	if (n > io->out_cap)
		n = io->out_cap;
	for (size_t i = 0; i < n; i++)
		io->out[i] = toupper((unsigned char)io->in[i]);
	io->in_used = io->out_len = n;
	if (io->fin && n == io->in_len) {
		us->fin_calls++;
		io->done = true;
	}
	return 0;
}

static void observe_response(struct stream *st, void *state, const struct http_response *resp)
{
	/* Not a body filter: it cannot claim. */
	CHECK(!stream_claim_body(st, state));
}

static const struct filter f_upper = { .name = "upper", .state_size = sizeof(struct upper_state),
					.on_request = pass_request, .on_response = upper_response,
					.on_response_body = upper_body };
static const struct filter f_observe = { .name = "observe", .state_size = 8,
					  .on_request = pass_request,
					  .on_response = observe_response,
					  .on_response_data = count_data };

static void parse_resp(const char *raw, struct http_response *resp)
{
	CHECK(http_parse_response(raw, strlen(raw), NULL, HTTP_GET, resp) > 0);
}

static void test_response_edits_and_body_transform(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);
	struct http_response resp;
	struct upper_state *us;
	struct stream_body_io io;
	char out[16];
	const char *body = "hello, world";
	size_t off = 0;
	int calls = 0;

	stream_add_filter(st, &f_observe);
	stream_add_filter(st, &f_upper);
	stream_run(st, 1);
	CHECK_EQ(h.forwarded, 1);
	CHECK(!stream_transforms_body(st));
	parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: 1\r\n\r\n", &resp);
	stream_response(st, &resp);
	us = st->state[1];
	CHECK(us->claimed);
	CHECK(!us->second_claim); /* one body filter per stream */
	CHECK(stream_transforms_body(st));
	CHECK(stream_resp_header_removed(st, resp.headers[0].name)); /* any case */
	CHECK(!stream_resp_header_removed(st, resp.headers[1].name));
	CHECK_EQ(st->nresp_edits, 2);
	CHECK_STR(st->resp_edits[1].name, "X-Upper");
	CHECK_STR(st->resp_edits[1].value, "yes");
	/* The host drives it with the room it has: 3 bytes, then none, then plenty. */
	memset(&io, 0, sizeof(io));
	io.in = body;
	io.in_len = strlen(body);
	io.out = out;
	io.out_cap = 3;
	CHECK_EQ(stream_response_body(st, &io), 0);
	CHECK_EQ(io.in_used, 3);
	CHECK_EQ(io.out_len, 3);
	CHECK(!memcmp(out, "HEL", 3));
	off = io.in_used;
	io.in = body + off;
	io.in_len = strlen(body) - off;
	io.out_cap = 0;
	CHECK_EQ(stream_response_body(st, &io), 0);
	CHECK_EQ(io.in_used, 0); /* no room: nothing taken, nothing lost */
	io.out_cap = sizeof(out);
	while (!io.done && calls++ < 10) {
		io.in = body + off;
		io.in_len = strlen(body) - off;
		io.fin = true;
		CHECK_EQ(stream_response_body(st, &io), 0);
		off += io.in_used;
	}
	CHECK(io.done);
	CHECK_EQ(off, strlen(body));
	CHECK_EQ(us->fin_calls, 1);
	/* Observers still see the origin's bytes. */
	data_bytes = 0;
	stream_response_data(st, body, strlen(body));
	CHECK_EQ(data_bytes, 12);
	/* A replacing head (a gateway error instead) starts with no edits and no claim. */
	parse_resp("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", &resp);
	st->body_filter = 0;
	stream_response(st, &resp);
	CHECK_EQ(st->body_filter, 1); /* claimed again by upper, not left at a stale index */
	CHECK_EQ(st->nresp_edits, 2);
	stream_end(st);
	stream_pool_free(p);
}

static void test_edit_bounds_and_reply_status(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);
	struct stream_body_io io = { 0 };
	int added = 0;

	stream_add_filter(st, &f_pass);
	stream_run(st, 1);
	while (stream_resp_header_add(st, "X-N", "v"))
		added++;
	CHECK_EQ(added, STREAM_MAX_RESP_EDITS);
	CHECK_EQ(stream_resp_edits_room(st), 0);
	CHECK(!stream_resp_header_remove(st, "X-M"));
	/* No body filter: the host gets a failure, not a call through a NULL hook. */
	CHECK_EQ(stream_response_body(st, &io), -1);
	CHECK(!stream_claim_body(st, st->state[0]));
	stream_reply_status(st, 204, "A: b\r\n");
	CHECK_EQ(h.status, 204);
	CHECK_EQ(st->status, 204);
	CHECK_STR(h.reason, "A: b\r\n");
	stream_end(st);
	/* The next stream from the pool starts without the old edits. */
	st = open_stream(p, &h);
	CHECK_EQ(st->nresp_edits, 0);
	CHECK_EQ(st->body_filter, -1);
	CHECK(!st->resp_local);
	stream_end(st);
	stream_pool_free(p);
}

static void test_request_body_phase(void)
{
	struct stream_pool *p = stream_pool_new();
	struct fake_host h = { 0 };
	struct stream *st = open_stream(p, &h);
	char body[] = "hello";

	stream_add_filter(st, &f_pass);
	stream_add_filter(st, &f_body);
	stream_run(st, 1);
	CHECK(st->waiting);
	CHECK_EQ(h.body_reads, 1); /* the host was asked, once */
	CHECK_EQ(st->req_body_max, 100);
	CHECK_EQ(h.forwarded, 0);
	/* What the host does once it has the body. */
	st->req_body = body;
	st->req_body_len = 5;
	st->req_body_ready = true;
	stream_wake(st);
	stream_runq_drain(p, 2);
	CHECK_EQ(h.body_reads, 1);
	CHECK_EQ(h.forwarded, 1);
	CHECK_STR(trace, "pbb");
	CHECK(st->req_body_len == 5 && !memcmp(st->req_body, "HELLO", 5));
	CHECK(!memcmp(body, "hello", 5)); /* replaced, not written over */
	CHECK(stream_req_header_removed(st, (struct http_str){ "x-a", 3 }));
	CHECK(!stream_req_header_removed(st, (struct http_str){ "x-b", 3 }));
	CHECK_EQ(st->nreq_edits, 2);
	CHECK(st->up_path_len == 3 && !memcmp(st->up_path, "/v2", 3));
	stream_end(st);
	/* A reused stream starts without the last one's edits. */
	st = open_stream(p, &h);
	CHECK_EQ(st->nreq_edits, 0);
	CHECK(!st->req_body_wanted && !st->req_body_ready && !st->up_path && !st->req_body);
	stream_end(st);
	stream_pool_free(p);
}

int main(void)
{
	RUN(test_request_body_phase);
	RUN(test_request_survives_codec_buffer);
	RUN(test_chain_continues_to_forward);
	RUN(test_done_stops_chain_and_only_entered_end);
	RUN(test_wait_then_resume_through_runq);
	RUN(test_cancel_while_waiting);
	RUN(test_big_head_and_arena_bounds);
	RUN(test_chain_bound);
	RUN(test_response_edits_and_body_transform);
	RUN(test_edit_bounds_and_reply_status);
	return CHECK_DONE();
}
