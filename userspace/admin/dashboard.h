/* GET /dashboard: the page's bytes (see dashboard.c). */
#ifndef XGATE_ADMIN_DASHBOARD_H
#define XGATE_ADMIN_DASHBOARD_H

#include <stddef.h>

extern const char admin_dashboard_html[];
extern const char admin_dashboard_html_end[];
size_t admin_dashboard_len(void);

#endif
