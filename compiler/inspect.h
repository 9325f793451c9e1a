/* inspect.h - `moec inspect DIR [KERNEL] [--src|--twin|--ptx|--sass]`: what a build made.
 *
 * Requires: a build directory with manifest.json (emit.c), read back with libyaml (which
 *   parses JSON).
 * Establishes: nothing; it prints. Without KERNEL, one row per kernel: registers, static
 *   smem, stack, spills, constants and launch geometry. With KERNEL (a full instance name
 *   or a part of one that names a single kernel): its details, or its generated source
 *   (--src, --twin), its PTX (--ptx) or SASS (--sass: cuobjdump or nvdisasm, from PATH or
 *   the CUDA toolkit's bin/).
 */
#ifndef MOEC_INSPECT_H
#define MOEC_INSPECT_H

enum inspect_what { INSPECT_TABLE, INSPECT_DETAILS, INSPECT_SRC, INSPECT_TWIN, INSPECT_PTX, INSPECT_SASS };

/* Returns the exit code: 0, or 1 with a message (no manifest, no such kernel, no SASS tool). */
int inspect_build(const char *dir, const char *kernel, enum inspect_what what);

#endif
