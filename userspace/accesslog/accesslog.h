/*
 * JSON access log, one line per request. Workers never block on the log file: each
 * appends to its own buffer, handed to a writer thread; SIGUSR1 reopens the file.
 */
#ifndef XGATE_ACCESSLOG_ACCESSLOG_H
#define XGATE_ACCESSLOG_ACCESSLOG_H

#include <stdbool.h>
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
};

/* path "-" is stderr. Safe to call again on reload with a new path. 0 or -errno. */
int accesslog_open(const char *path);
void accesslog_close(void);
bool accesslog_enabled(void);
void accesslog_reopen(void); /* SIGUSR1 (async-signal-safe: only sets a flag) */
void accesslog_write(int worker, const struct access_entry *e);

#endif
