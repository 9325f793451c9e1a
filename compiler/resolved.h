/* resolved.h - print the resolved spec: every value and the source it came from.
 *
 * Requires: a checked spec. Used by `moec plan` (section a) and `moec check --print`.
 */
#ifndef MOEC_RESOLVED_H
#define MOEC_RESOLVED_H

#include <stdio.h>

#include "spec.h"

void spec_print(FILE *f, const struct spec *s);
/* The same as one JSON object {"model.hidden_size": {"value": 2048, "from": "preset", "at": "file:line:col"}, ...}. */
void spec_print_json(FILE *f, const struct spec *s);
/* "preset models/x.yaml:3:5", "default", "--set", ... for one field index. */
void origin_describe(const struct origin *o, char *buf, size_t n);
/* Write s as a JSON string literal (with quotes). */
void json_string(FILE *f, const char *s);

#endif
