/* One access-log entry as a JSON line. Everything untrusted is escaped here. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "accesslog/accesslog.h"

struct line {
	char *p;
	size_t len, cap;
};

/*
 * Every field but the path is cut at SMALL_MAX escaped bytes, so the fields after the
 * path need at most TAIL_MAX bytes; the path gets whatever room is left.
 */
#define SMALL_MAX 256
#define TAIL_MAX (5 * (SMALL_MAX + 20) + 4 * 40 + 8)

static void put_raw(struct line *l, const char *s, size_t n)
{
	if (n > l->cap - l->len - 1)
		n = l->cap - l->len - 1;
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void put_str(struct line *l, const char *s)
{
	put_raw(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence starting at s (1..4), 0 when it is not valid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef)
		need = 2;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 3;
	else
		return 0;
	/* Overlong forms, surrogates and code points above U+10FFFF are invalid. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < need + 1 || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need + 1;
}

/* Appends a JSON string (with quotes), at most `limit` output bytes, never a partial escape. */
static void put_json(struct line *l, const char *s, size_t n, size_t limit)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t room = l->cap - l->len - 1 > 2 ? l->cap - l->len - 1 - 2 : 0;
	size_t used = 0;
	char esc[8];

	if (limit > room)
		limit = room;
	put_raw(l, "\"", 1);
	for (size_t i = 0; s && i < n;) {
		size_t seq, out, run = 0;
		const char *rep;

		/* Plain printable ASCII is the common case: copy whole runs of it. */
		while (i + run < n && u[i + run] >= 0x20 && u[i + run] < 0x7f &&
		       u[i + run] != '"' && u[i + run] != '\\')
			run++;
		if (run) {
			if (run > limit - used)
				run = limit - used;
			put_raw(l, s + i, run);
			used += run;
			i += run;
			if (used == limit)
				break;
			continue;
		}
		seq = utf8_seq_len(u + i, n - i);

		if (seq == 1 && (u[i] < 0x20 || u[i] == 0x7f || u[i] == '"' || u[i] == '\\')) {
			if (u[i] == '"')
				rep = "\\\"";
			else if (u[i] == '\\')
				rep = "\\\\";
			else if (u[i] == '\n')
				rep = "\\n";
			else if (u[i] == '\r')
				rep = "\\r";
			else if (u[i] == '\t')
				rep = "\\t";
			else {
				snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
				rep = esc;
			}
			out = strlen(rep);
			seq = 1;
		} else if (seq == 0) {
			snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
			rep = esc;
			out = 6;
			seq = 1;
		} else {
			rep = s + i;
			out = seq;
		}
		if (used + out > limit)
			break;
		put_raw(l, rep, out);
		used += out;
		i += seq;
	}
	put_raw(l, "\"", 1);
}

static void put_field(struct line *l, const char *key, const char *s, size_t limit)
{
	put_str(l, ",\"");
	put_str(l, key);
	put_str(l, "\":");
	put_json(l, s ? s : "", s ? strlen(s) : 0, limit);
}

static void put_num(struct line *l, const char *key, unsigned long long v)
{
	char digits[24];
	int n = sizeof(digits);

	do
		digits[--n] = '0' + v % 10;
	while ((v /= 10));
	put_str(l, ",\"");
	put_str(l, key);
	put_str(l, "\":");
	put_raw(l, digits + n, sizeof(digits) - n);
}

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"; the seconds part is cached per thread (one per worker). */
static void format_time(char *out, size_t outlen, int64_t time_us)
{
	static __thread time_t cached_sec = -1;
	static __thread char cached[32];
	static __thread size_t cached_len;
	time_t sec = (time_t)(time_us / 1000000);
	long usec = (long)(time_us % 1000000);

	if (usec < 0) {
		usec += 1000000;
		sec--;
	}
	if (sec != cached_sec) {
		struct tm tm;

		gmtime_r(&sec, &tm);
		cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = sec;
	}
	if (outlen < cached_len + 9) {
		out[0] = '\0';
		return;
	}
	memcpy(out, cached, cached_len);
	out[cached_len] = '.';
	for (int i = 6; i >= 1; i--, usec /= 10)
		out[cached_len + i] = '0' + usec % 10;
	out[cached_len + 7] = 'Z';
	out[cached_len + 8] = '\0';
}

static void format_client(char *out, size_t outlen, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN];

	out[0] = '\0';
	if (!sa)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(in6->sin6_port));
	}
}

size_t accesslog_format(char *out, size_t outlen, const struct access_entry *e)
{
	struct line l = {.p = out, .cap = outlen};
	char time_text[64], client[INET6_ADDRSTRLEN + 16];
	size_t path_room;

	format_time(time_text, sizeof(time_text), e->time_us);
	format_client(client, sizeof(client), e->client);
	put_str(&l, "{\"time\":\"");
	put_str(&l, time_text);
	put_str(&l, "\"");
	put_field(&l, "request_id", e->request_id, SMALL_MAX);
	put_field(&l, "client", client, SMALL_MAX);
	put_field(&l, "method", e->method, SMALL_MAX);
	put_str(&l, ",\"path\":");
	path_room = l.cap - l.len > TAIL_MAX + 3 ? l.cap - l.len - TAIL_MAX - 3 : 0;
	put_json(&l, e->path ? e->path : "", e->path ? e->path_len : 0, path_room);
	put_field(&l, "route", e->route, SMALL_MAX);
	put_field(&l, "upstream", e->target, SMALL_MAX);
	put_num(&l, "status", e->status < 0 ? 0 : (unsigned long long)e->status);
	put_num(&l, "bytes_in", e->bytes_in);
	put_num(&l, "bytes_out", e->bytes_out);
	put_num(&l, "duration_us", e->duration_us);
	put_field(&l, "consumer", e->consumer, SMALL_MAX);
	if (e->client_cert)
		put_field(&l, "client_cert", e->client_cert, SMALL_MAX);
	if (e->calls && strlen(e->calls) + sizeof(",\"calls\":}\n") < l.cap - l.len) {
		put_str(&l, ",\"calls\":");
		put_str(&l, e->calls);
	}
	if (e->waf_rules && strlen(e->waf_rules) + sizeof(",\"waf_rules\":}\n") < l.cap - l.len) {
		put_str(&l, ",\"waf_rules\":");
		put_str(&l, e->waf_rules);
	}
	if (e->proto)
		put_field(&l, "proto", e->proto, SMALL_MAX);
	if (e->stream_id)
		put_num(&l, "stream", (unsigned long long)e->stream_id);
	put_str(&l, "}\n");
	out[l.len] = '\0';
	return l.len;
}
