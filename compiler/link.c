/* link.c - pass 8: DIR/Makefile and DIR/train. See link.h. */
#include "link.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "files.h"

#ifndef MOEC_TRAIN_CPPFLAGS
#define MOEC_TRAIN_CPPFLAGS ""
#endif
#ifndef MOEC_TRAIN_LIBS
#define MOEC_TRAIN_LIBS "-lopenblas"
#endif

static void link_write_makefile(FILE *f, const struct emit_context *c, const struct kernel_set *ks)
{
	char gen[PATH_MAX + 128];
	emit_generated_line(c, gen, sizeof gen);
	fprintf(f, "# %s\n", gen);
	fprintf(f, "# Links the trainer: gen/model.c (the step), gen/cpu/*.c (the kernels' CPU twins),\n"
		   "# gen/cubins.S (the cubins, embedded) and moec's runtime, with OpenBLAS. The CUDA driver\n"
		   "# and cuBLASLt are loaded at run time. `make -C <this dir>` re-links after a change.\n"
		   "# -ffp-contract=off: no fused multiply-adds the twins did not write, so results do not\n"
		   "# depend on the compiler's mood (AdamW is torch-exact only without them).\n"
		   "# -Werror=overflow: offsets past 2^31 floats in int arithmetic would wrap silently.\n\n");
	fprintf(f, "MOEC_SOURCE := %s\n", MOEC_SOURCE_DIR);
	fprintf(f, "CFLAGS := -std=gnu11 -O2 -g -march=native -ffp-contract=off -fno-strict-aliasing -Wall -Wno-unused-function -Werror=incompatible-pointer-types -Werror=overflow"
		   " $(MOEC_TRAIN_CFLAGS)\n");
	/* the CUDA headers for types only: the runtime dlopens the driver and cuBLASLt */
	fprintf(f, "CPPFLAGS := -Igen -I$(MOEC_SOURCE)/kernels/cpu -I$(MOEC_SOURCE)/runtime -I%s %s -MMD -MP\n",
		MOEC_CUDA_INCLUDE, MOEC_TRAIN_CPPFLAGS);
	fprintf(f, "LDLIBS := %s -lm -lpthread -ldl\n\n", MOEC_TRAIN_LIBS);
	fprintf(f, "TWINS :=");
	for (int i = 0; i < ks->n; i++)
		fprintf(f, " \\\n\t%s", ks->v[i].name);
	fprintf(f, "\nRUNTIME := $(notdir $(basename $(wildcard $(MOEC_SOURCE)/runtime/*.c)))\n");
	fprintf(f, "OBJS := obj/model.o obj/cubins.o $(TWINS:%%=obj/cpu/%%.o) $(RUNTIME:%%=obj/runtime/%%.o)\n\n");
	fprintf(f, "train: $(OBJS)\n\t$(CC) $(CFLAGS) -o $@.tmp $(OBJS) $(LDLIBS) && mv -f $@.tmp $@\n\n");
	fprintf(f, "obj/model.o: gen/model.c\n\t@mkdir -p $(@D)\n\t$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<\n");
	fprintf(f, "obj/cubins.o: gen/cubins.S $(wildcard cubin/*.cubin)\n\t@mkdir -p $(@D)\n\t$(CC) -c -o $@ $<\n");
	fprintf(f, "obj/cpu/%%.o: gen/cpu/%%.c\n\t@mkdir -p $(@D)\n\t$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<\n");
	fprintf(f, "obj/runtime/%%.o: $(MOEC_SOURCE)/runtime/%%.c\n\t@mkdir -p $(@D)\n\t$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<\n\n");
	fprintf(f, "-include $(OBJS:.o=.d)\n");
}

/* make -C dir -j jobs --no-print-directory -s train; its output goes to DIR/log/link.log and
 * is shown only when it fails. */
static int link_run_make(const char *dir, int jobs)
{
	char log[PATH_MAX], jflag[32];
	snprintf(log, sizeof log, "%s/log", dir);
	file_make_dirs(log);
	snprintf(log, sizeof log, "%s/log/link.log", dir);
	if (jobs <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		jobs = n > 0 ? (int)n : 1;
	}
	snprintf(jflag, sizeof jflag, "-j%d", jobs);
	fflush(stdout); /* or the child's exit would print our buffered lines again */
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		FILE *out = freopen(log, "w", stdout);
		if (!out || dup2(fileno(stdout), 2) < 0)
			_exit(127);
		execlp("make", "make", "-C", dir, jflag, "--no-print-directory", "train", (char *)NULL);
		fprintf(stderr, "cannot run make: %s\n", strerror(errno));
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	char *text = NULL;
	size_t len = 0;
	if (!file_read_whole(log, &text, &len)) {
		fprintf(stderr, "%s", text);
		free(text);
	}
	fprintf(stderr, "moec: error: linking the trainer failed (make -C %s; log: %s)\n", dir, log);
	return 1;
}

int link_trainer(const struct emit_context *c, const struct kernel_set *ks, int jobs)
{
	char *text = NULL, path[PATH_MAX];
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return 1;
	link_write_makefile(f, c, ks);
	fclose(f);
	snprintf(path, sizeof path, "%s/Makefile", c->dir);
	int err = file_write_atomic(path, text, len, true);
	free(text);
	if (err) {
		fprintf(stderr, "moec: error: cannot write %s: %s\n", path, strerror(err));
		return 1;
	}
	return link_run_make(c->dir, jobs) ? 1 : 0;
}

void link_remove_trainer(const char *dir)
{
	static const char *files[] = {"train", "Makefile", "gen/model.c"};
	char path[PATH_MAX];
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
}
