#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "xgatectl/ctl.h"

struct table {
	int ncols, nrows, cap;
	char **cells; /* row-major, row 0 is the header */
};

static void add_row(struct table *t, va_list ap)
{
	if (t->nrows == t->cap) {
		int cap = t->cap ? t->cap * 2 : 16;
		char **cells = realloc(t->cells, sizeof(*cells) * cap * t->ncols);

		if (!cells) {
			fprintf(stderr, "xgatectl: out of memory\n");
			exit(EXIT_FAILED);
		}
		t->cells = cells;
		t->cap = cap;
	}
	for (int c = 0; c < t->ncols; c++) {
		const char *s = va_arg(ap, const char *);
		char *copy = strdup(s ? s : "");

		if (!copy) {
			fprintf(stderr, "xgatectl: out of memory\n");
			exit(EXIT_FAILED);
		}
		t->cells[t->nrows * t->ncols + c] = copy;
	}
	t->nrows++;
}

struct table *table_new(int ncols, ...)
{
	struct table *t = calloc(1, sizeof(*t));
	va_list ap;

	if (!t) {
		fprintf(stderr, "xgatectl: out of memory\n");
		exit(EXIT_FAILED);
	}
	t->ncols = ncols;
	va_start(ap, ncols);
	add_row(t, ap);
	va_end(ap);
	return t;
}

void table_row(struct table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	add_row(t, ap);
	va_end(ap);
}

void table_print(struct table *t, FILE *out)
{
	int width[16] = {0};

	for (int r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncols && c < 16; c++) {
			int w = (int)strlen(t->cells[r * t->ncols + c]);

			if (w > width[c])
				width[c] = w;
		}
	for (int r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];

			if (c == t->ncols - 1)
				fprintf(out, "%s\n", cell);
			else
				fprintf(out, "%-*s  ", c < 16 ? width[c] : 0, cell);
		}
	}
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
