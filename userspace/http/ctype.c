/* Character class and case-folding tables, computed at compile time. */
#include "http/http_internal.h"

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA(c) (((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z'))
#define IS_HEXAL(c) (((c) >= 'A' && (c) <= 'F') || ((c) >= 'a' && (c) <= 'f'))
#define IS_VCHAR(c) ((c) >= 0x21 && (c) <= 0x7e)
#define IS_UNRESERVED(c)                                                                           \
	(IS_ALPHA(c) || IS_DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~')
#define IS_SUBDELIM(c)                                                                             \
	((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||      \
	 (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define IS_TCHAR(c)                                                                                \
	(IS_ALPHA(c) || IS_DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||     \
	 (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||      \
	 (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VALUE(c) (IS_VCHAR(c) || (c) >= 0x80 || (c) == ' ' || (c) == '\t')
#define IS_PATH(c)                                                                                 \
	(IS_UNRESERVED(c) || IS_SUBDELIM(c) || (c) == ':' || (c) == '@' || (c) == '%' || (c) == '/')
#define IS_QUERY(c) (IS_VCHAR(c) && (c) != '#')
#define IS_HOST(c)                                                                                 \
	(IS_UNRESERVED(c) || IS_SUBDELIM(c) || (c) == '%' || (c) == ':' || (c) == '[' || (c) == ']')
#define IS_REQUEST_ID(c)                                                                           \
	(IS_ALPHA(c) || IS_DIGIT(c) || (c) == '.' || (c) == '_' || (c) == ':' || (c) == '-')

#define CT(c)                                                                                      \
	((IS_TCHAR(c) ? HTTP_C_TCHAR : 0) | (IS_VALUE(c) ? HTTP_C_VALUE : 0) |                     \
	 (IS_PATH(c) ? HTTP_C_PATH : 0) | (IS_QUERY(c) ? HTTP_C_QUERY : 0) |                       \
	 (IS_HOST(c) ? HTTP_C_HOST : 0) | (IS_DIGIT(c) || IS_HEXAL(c) ? HTTP_C_HEX : 0) |          \
	 (IS_UNRESERVED(c) ? HTTP_C_UNRESERVED : 0) | (IS_REQUEST_ID(c) ? HTTP_C_REQUEST_ID : 0))
/* The cast keeps clang from warning about the arm that is never taken for c > 0xdf. */
#define LC(c) ((uint8_t)((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c)))

#define T4(F, c) F(c), F((c) + 1), F((c) + 2), F((c) + 3)
#define T16(F, c) T4(F, c), T4(F, (c) + 4), T4(F, (c) + 8), T4(F, (c) + 12)
#define T64(F, c) T16(F, c), T16(F, (c) + 16), T16(F, (c) + 32), T16(F, (c) + 48)
#define T256(F) T64(F, 0), T64(F, 64), T64(F, 128), T64(F, 192)

const uint8_t http_ctype[256] = {T256(CT)};
const uint8_t http_lower[256] = {T256(LC)};
