/*
 * Compression filter: encodes response bodies with gzip or br as the client's
 * Accept-Encoding allows, chunk by chunk through the stream's body transform (nothing is
 * buffered beyond the encoder). It sits before the cache filter: a cached response is
 * stored as the origin sent it and encoded per request when it is served.
 */
#include <stdio.h>
#include <string.h>

#include "compress/compress.h"
#include "config/config.h"
#include "filters/filters.h"

/* Edits a compressed response needs: Vary, Content-Encoding, Content-Length and
 * Accept-Ranges removed, ETag replaced (remove + add). */
#define COMPRESS_EDITS 6

struct compress_state {
	struct compressor *z;
};

static enum filter_verdict compress_request(struct stream *st, void *state)
{
	return FILTER_CONTINUE; /* everything happens at the response */
}

static struct http_str header(const struct http_response *resp, const char *name)
{
	const struct http_header *h = http_find_header(resp->headers, resp->nheaders, name);

	return h ? h->value : (struct http_str){NULL, 0};
}

/* Whether this response is one the policy would encode (for some client): its
 * representation then depends on Accept-Encoding. */
static bool compressible(const struct stream *st, const struct compress_policy *p,
			 const struct http_response *resp)
{
	struct http_str cc = header(resp, "cache-control");

	if (st->resp_local || st->req.method == HTTP_HEAD)
		return false;
	if (resp->status < 200 || resp->status == 204 || resp->status == 206 ||
	    resp->status == 304 || resp->body == HTTP_BODY_NONE)
		return false;
	if (resp->body == HTTP_BODY_LENGTH && resp->content_length < p->min_bytes)
		return false;
	if (resp->body == HTTP_BODY_LENGTH && !resp->content_length)
		return false;
	if (header(resp, "content-encoding").p || header(resp, "content-range").p)
		return false;
	if (cc.p && http_list_has_token(cc, "no-transform", 12))
		return false;
	return compress_type_listed(p, header(resp, "content-type"));
}

static bool vary_covers(const struct http_response *resp)
{
	for (int i = 0; i < resp->nheaders; i++)
		if (http_str_eq_nocase(resp->headers[i].name, "vary") &&
		    (http_list_has_token(resp->headers[i].value, "accept-encoding", 15) ||
		     http_list_has_token(resp->headers[i].value, "*", 1)))
			return true;
	return false;
}

/* A strong validator no longer identifies these bytes: the encoded body is weak. */
static bool weaken_etag(struct stream *st, const struct http_response *resp)
{
	struct http_str etag = header(resp, "etag");
	char *weak;

	if (!etag.p || (etag.len >= 2 && etag.p[0] == 'W' && etag.p[1] == '/'))
		return true;
	weak = stream_alloc(st, etag.len + 3);
	if (!weak)
		return false;
	snprintf(weak, etag.len + 3, "W/%.*s", (int)etag.len, etag.p);
	return stream_resp_header_remove(st, "ETag") && stream_resp_header_add(st, "ETag", weak);
}

static void compress_response(struct stream *st, void *state, const struct http_response *resp)
{
	struct compress_state *cs = state;
	const struct compress_policy *p = st->cfg->routes[st->route].compression;
	enum compress_algo algo;
	int saved = st->nresp_edits;

	compressor_free(cs->z); /* a head that replaced an unsent one */
	cs->z = NULL;
	if (!compressible(st, p, resp) || stream_resp_edits_room(st) < COMPRESS_EDITS)
		return;
	if (!vary_covers(resp) && !stream_resp_header_add(st, "Vary", "Accept-Encoding"))
		return;
	saved = st->nresp_edits;
	algo = compress_negotiate(p, st->req.headers, st->req.nheaders);
	if (algo == COMPRESS_NONE)
		return;
	cs->z = compressor_new(algo, resp->body == HTTP_BODY_LENGTH ? resp->content_length : 0);
	if (!cs->z)
		return; /* no memory for an encoder: the client gets identity */
	if (stream_claim_body(st, state) &&
	    stream_resp_header_add(st, "Content-Encoding", compress_algo_name(algo)) &&
	    stream_resp_header_remove(st, "Content-Length") &&
	    stream_resp_header_remove(st, "Accept-Ranges") && weaken_etag(st, resp))
		return;
	/* Half an edit would misframe the response: all of it or identity. */
	st->nresp_edits = saved;
	st->body_filter = -1;
	compressor_free(cs->z);
	cs->z = NULL;
}

static int compress_body(struct stream *st, void *state, struct stream_body_io *io)
{
	struct compress_state *cs = state;
	enum compress_mode mode = io->fin     ? COMPRESS_FINISH
				  : io->flush ? COMPRESS_FLUSH
					      : COMPRESS_PROCESS;

	if (!cs->z)
		return -1;
	return compressor_step(cs->z, io->in, io->in_len, io->out, io->out_cap, mode, &io->in_used,
			       &io->out_len, &io->done);
}

static void compress_end(struct stream *st, void *state)
{
	struct compress_state *cs = state;

	compressor_free(cs->z);
	cs->z = NULL;
}

const struct filter filter_compress = {
    .name = "compress",
    .state_size = sizeof(struct compress_state),
    .on_request = compress_request,
    .on_response = compress_response,
    .on_response_body = compress_body,
    .on_end = compress_end,
};
