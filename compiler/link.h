/* link.h - pass 8: the trainer binary.
 *
 * Requires: gen/ written (emit.c, step.c) and gen/launch.h (lint's signatures).
 * Establishes: DIR/Makefile and, by running make on it, DIR/train: gen/model.c, the CPU
 *   twins in gen/cpu/ and every runtime source (the .c files of runtime/) compiled with the
 *   machine's C compiler and linked with OpenBLAS. make's dependency files make a rebuild
 *   recompile only what changed; the Makefile stays in DIR so a user can re-link by hand.
 *   CC and MOEC_TRAIN_CFLAGS from the environment are honoured (tests build sanitized
 *   trainers that way).
 */
#ifndef MOEC_LINK_H
#define MOEC_LINK_H
#include "emit.h"
#include "kernels.h"

/* Write DIR/Makefile and run make. jobs <= 0: one per core. Returns errors (printed). */
int link_trainer(const struct emit_context *c, const struct kernel_set *ks, int jobs);
/* Remove DIR/train, DIR/Makefile and gen/model.c (a spec the step code does not cover). */
void link_remove_trainer(const char *dir);

#endif
