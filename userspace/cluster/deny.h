/*
 * Cluster deny list: source ranges every node drops in XDP, kept in Redis.
 *
 * Redis holds the hash <key_prefix>deny, field = the CIDR in canonical form, value = its
 * expiry in Unix milliseconds (0: none); every change is PUBLISHed on the channel of the
 * same name. The gateway whose admin API is asked (xgatectl deny add --cluster) writes
 * the hash and publishes (cluster_deny_write, blocking, bounded by timeout_ms: on the
 * admin thread, never on a worker).
 *
 * Every node runs a subscriber thread (cluster_deny_start) with two connections of its
 * own, one SUBSCRIBEd and one for reading the hash: after (re)connecting, on every
 * message and at least once a second it reads the whole hash and makes the node's pinned
 * deny maps hold exactly the cluster entries that have not expired (entries the node's
 * config lists stay, whatever the cluster says). Expired entries are removed from the
 * hash by whichever node sees them first. Without an "edge" section there are no maps
 * and the thread idles.
 */
#ifndef XGATE_CLUSTER_DENY_H
#define XGATE_CLUSTER_DENY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cluster_config;
struct xg_config;

/* Adds (ttl_s 0: no expiry) or deletes one entry. 0; -EINVAL bad CIDR, -ENOENT deleting
 * an absent entry, -EIO Redis unreachable or refused; err says why. canon gets the
 * canonical CIDR (64 bytes). */
int cluster_deny_write(const struct cluster_config *cc, bool add, const char *cidr, uint64_t ttl_s,
		       char *canon, char *err, size_t errlen);
/* The current entries, {"entries": [{"cidr", "expires_ms"}]}; NULL with err on failure. */
json_t *cluster_deny_list(const struct cluster_config *cc, char *err, size_t errlen);

typedef struct xg_config *(*cluster_config_fn)(void *arg); /* a reference, config_put() */
struct cluster_deny;
struct cluster_deny *cluster_deny_start(cluster_config_fn get_config, void *arg);
void cluster_deny_stop(struct cluster_deny *d);

#endif
