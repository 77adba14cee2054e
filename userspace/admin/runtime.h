/*
 * The runtime file through which xgatectl finds a running gateway's admin API without
 * flags: $XGATE_RUNTIME_DIR/admin (default /run/xgate/admin) holds one line, the admin
 * address as HOST:PORT with the port actually bound. Written when the admin API starts,
 * removed when it stops (only if it still names this gateway's address).
 */
#ifndef XGATE_ADMIN_RUNTIME_H
#define XGATE_ADMIN_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define XGATE_RUNTIME_DIR_DEFAULT "/run/xgate"

/* Path of the file; false when it does not fit in len. */
bool admin_runtime_path(char *out, size_t len);
/* "127.0.0.1:9901" / "[::1]:9901" for a bound address (a wildcard reads as loopback). */
void admin_runtime_address(const struct sockaddr *bound, int port, char *out, size_t len);
/* 0 or -errno. */
int admin_runtime_write(const char *address);
void admin_runtime_remove(const char *address);

#endif
