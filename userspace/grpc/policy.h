/* A route's "grpc_json": its descriptor set, loaded at config load (each reload loads its
 * own copy, so a swap never frees what a running stream uses). */
#ifndef XGATE_GRPC_POLICY_H
#define XGATE_GRPC_POLICY_H

#include "common/cfg.h"
#include "grpc/grpc.h"

struct grpc_json_policy {
	struct grpc_pool *pool; /* with the route's services selected */
};

struct grpc_json_policy *grpc_json_policy_parse(json_t *obj, const char *path,
						struct cfg_errs *errs);
void grpc_json_policy_free(struct grpc_json_policy *p);

#endif
