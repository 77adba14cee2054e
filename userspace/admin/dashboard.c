/*
 * The dashboard page (dashboard.html: HTML, CSS and JS in one file, nothing fetched from
 * elsewhere) is assembled into the binary, so the gateway serves it without a file to
 * install and the page always matches the /stats it reads.
 */
#include "admin/dashboard.h"

__asm__(".section .rodata\n"
	".global admin_dashboard_html\n"
	"admin_dashboard_html:\n"
	".incbin \"userspace/admin/dashboard.html\"\n"
	".global admin_dashboard_html_end\n"
	"admin_dashboard_html_end:\n"
	".byte 0\n"
	".previous\n");

size_t admin_dashboard_len(void)
{
	return (size_t)(admin_dashboard_html_end - admin_dashboard_html);
}
