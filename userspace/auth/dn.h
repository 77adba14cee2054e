/* Distinguished names compared canonically: RFC 4514 strings and certificate names. */
#ifndef XGATE_AUTH_DN_H
#define XGATE_AUTH_DN_H

#include <stddef.h>

struct X509_name_st;

/*
 * Canonical form of a DN, for equality: RDNs in RFC 4514 order (most specific first),
 * attribute types as numeric OIDs (so "CN", "commonName" and "2.5.4.3" are one type),
 * values unescaped, leading/trailing spaces dropped, inner runs of spaces made one and
 * ASCII case folded (X.520 caseIgnoreMatch, the rule of CN, O, OU, C, L, ST, DC...), the
 * AVAs of a multi-valued RDN sorted. Two DNs are equal when their forms are. malloc'd;
 * NULL with a message in err (syntax, unknown type, "#" hex values, out of memory).
 */
char *dn_canon_text(const char *s, char *err, size_t errlen);
/* The same for a certificate's name; NULL when it cannot equal any text (NUL bytes). */
char *dn_canon_x509(const struct X509_name_st *name);

#endif
