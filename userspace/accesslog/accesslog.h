/*
 * JSON access log, one line per request. Workers never block on the log file: each
 * appends to its own buffer, handed to a writer thread; SIGUSR1 reopens the file.
 */
#ifndef XGATE_ACCESSLOG_ACCESSLOG_H
#define XGATE_ACCESSLOG_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct access_entry {
	int64_t time_us; /* wall clock at request start */
	const char *request_id;
	const struct sockaddr *client;
	const char *method;
	const char *path; /* as received (not normalized), without query */
	size_t path_len;
	const char *route;  /* "" when none */
	const char *target; /* upstream address, "" when none */
	int status;
	uint64_t bytes_in, bytes_out;
	uint64_t duration_us;
	const char *consumer; /* "" when anonymous */
	const char *client_cert; /* verified client certificate subject; NULL: none */
	const char *calls; /* a JSON array (compose calls), written whole or not at all; NULL: none */
	const char *waf_rules; /* a JSON array of WAF rule ids, like calls; NULL: none */
	const char *proto; /* "http/1.1", "h2"; NULL: not written */
	int32_t stream_id; /* the HTTP/2 stream; 0: not written */
};

#define ACCESSLOG_MAX_WORKERS 256

/*
 * path "-" is stderr. Safe to call again on reload with a new path (lines already
 * buffered go to the new file). Starts the writer thread on first use. 0 or -errno.
 */
int accesslog_open(const char *path);
/* Writes out what is buffered, stops the writer, closes the file. */
void accesslog_close(void);
bool accesslog_enabled(void);
/* SIGUSR1 (async-signal-safe: sets a flag and wakes the writer, which reopens the file). */
void accesslog_reopen(void);
/* Worker `worker` (0..ACCESSLOG_MAX_WORKERS-1) only; never blocks: drops when full. */
void accesslog_write(int worker, const struct access_entry *e);
/* Lines dropped because a worker's buffer was full (for metrics). */
uint64_t accesslog_dropped(void);
/* Waits (up to timeout_ms) until every line written so far reached the file. 0 or -ETIMEDOUT. */
int accesslog_flush(int timeout_ms);

/*
 * Formats one entry as a JSON line (with '\n') into out; strings are escaped (control
 * characters, quotes, bytes that are not valid UTF-8 as \u00XX) and truncated so the
 * line always fits. Returns the line length (< outlen); outlen must be >= 2048.
 */
size_t accesslog_format(char *out, size_t outlen, const struct access_entry *e);

#endif
