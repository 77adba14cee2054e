/* "grpc_json": {"descriptor_set": "api.pb", "services": ["pkg.Service"]} */
#include <stdlib.h>

#include "grpc/policy.h"

struct grpc_json_policy *grpc_json_policy_parse(json_t *obj, const char *path,
						struct cfg_errs *errs)
{
	static const char *const keys[] = {"descriptor_set", "services", NULL};
	struct grpc_json_policy *p;
	char jp[CFG_PATH_MAX], err[512];
	char *file = NULL, **services = NULL;
	int n = 0;

	if (!json_is_object(obj)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	cfg_check_keys(obj, path, keys, errs);
	cfg_get_str(obj, "descriptor_set", path, NULL, &file, errs);
	cfg_get_strings(obj, "services", path, false, &services, &n, errs);
	if (!file)
		cfg_err(errs, cfg_path_key(jp, path, "descriptor_set"), "required");
	if (!n)
		cfg_err(errs, cfg_path_key(jp, path, "services"), "at least one service is required");
	p = file && n ? calloc(1, sizeof(*p)) : NULL;
	if (p) {
		bool ok = false;

		p->pool = grpc_pool_load_file(file, err, sizeof(err));
		if (!p->pool)
			cfg_err(errs, cfg_path_key(jp, path, "descriptor_set"), "%s", err);
		else if (!(ok = grpc_pool_select(p->pool, (const char *const *)services, n, err,
						 sizeof(err))))
			cfg_err(errs, cfg_path_key(jp, path, "services"), "%s", err);
		if (!ok) {
			grpc_json_policy_free(p);
			p = NULL;
		}
	}
	free(file);
	cfg_strings_free(services, n);
	return p;
}

void grpc_json_policy_free(struct grpc_json_policy *p)
{
	if (!p)
		return;
	grpc_pool_free(p->pool);
	free(p);
}
