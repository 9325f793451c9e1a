/* trainer.c - the training loop every generated trainer runs. See trainer.h.
 *
 * main (model.c) -> moert_train_main: flags -> device -> arenas -> weights (resume from the
 * newest checkpoint, else --init-from / checkpoint.init_from, else random init) -> data ->
 * steps -> checkpoints. One step = zero the gradients that are only added to (the others'
 * first writes overwrite), grad_accum micro-batches (the generated forward + backward), the
 * generated optimizer step with this step's learning rate, a log line, and a checkpoint when
 * due. SIGTERM/SIGUSR1 only set a flag: the loop saves at the next step boundary and exits
 * 0, so a preempted job resumes where it stopped.
 */
#define _GNU_SOURCE
#include "trainer.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "data.h"
#include "gemm.h"
#include "hf.h"
#include "log.h"
#include "moert.h"
#include "safetensors.h"
#include "comm.h"
#include "comm_nccl.h"
#include "ep.h"
#include "profile.h"
#include "train_state.h"
#include "trainer_cuda.h"

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

struct options {
	long long steps;
	double lr;
	const char *data[64];
	int n_data;
	const char *ckpt_dir;
	const char *metrics;
	const char *init_from;
	const char *device;
	const char *batch;      /* one fixed batch (safetensors) instead of the data loader */
	const char *dump;       /* write loss, logits, gradients and updated weights here */
	long long seed;
	long long stop_after;   /* 0: run to steps */
	int save_every, keep, resume, threads, quiet, seed_set, no_save, profile;
	int zero_all_grads;     /* the whole gradient arena zeroed, every write adding (a check) */
};

static void usage(const struct moert_model *m, FILE *f)
{
	fprintf(f,
		"usage: train [options]   (%s)\n"
		"Trains the model this binary was generated for; defaults come from its spec.\n"
		"  --steps N          optimizer steps (spec: %lld); the schedule spans them\n"
		"  --stop-after N     save and exit 0 after step N (a planned preemption)\n"
		"  --lr X             peak learning rate (spec: %g)\n"
		"  --data PATH        token shard, repeatable (replaces the spec's data.paths)\n"
		"  --ckpt-dir DIR     checkpoint directory (spec: %s)\n"
		"  --save-every N     checkpoint every N steps, 0 = only at the end (spec: %d)\n"
		"  --keep N           checkpoints kept (spec: %d)\n"
		"  --no-resume        start fresh even when DIR holds a checkpoint\n"
		"  --no-save          write no checkpoints (benchmarks, experiments)\n"
		"  --profile          time every kernel and GEMM; print the table at the end\n"
		"  --init-from DIR    initialize from a Hugging Face model dir (config.json + safetensors)\n"
		"  --metrics FILE     JSONL metrics (default: <ckpt-dir>/metrics.jsonl)\n"
		"  --seed N           init and data-order seed (spec: %llu)\n"
		"  --device D         auto | cpu | cuda (default auto)\n"
		"  --threads N        CPU threads for GEMMs (default: OpenBLAS's)\n"
		"  --batch FILE       train on this one batch (safetensors: input_ids, labels [B, S] as HF\n"
		"                     takes them, unshifted) instead of the data\n"
		"  --dump FILE        after the steps, write logits, losses, gradients and weights\n"
		"  --zero-all-grads   zero every gradient before a step and add every write to it, as\n"
		"                     the step did before first writes overwrote (the same gradients)\n"
		"  --quiet            no per-step lines\n",
		m->generated_by, m->steps, m->lr, m->ckpt_dir, m->ckpt_every, m->ckpt_keep, (unsigned long long)m->seed);
}

static long long parse_ll(const char *flag, const char *v, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		moert_fatal("%s '%s': expected an integer in [%lld, %lld]", flag, v, lo, hi);
	return x;
}

static double parse_double(const char *flag, const char *v)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(x) || x < 0)
		moert_fatal("%s '%s': expected a non-negative number", flag, v);
	return x;
}

static void parse_options(const struct moert_model *m, int argc, char **argv, struct options *o)
{
	enum { O_STEPS = 256, O_STOP_AFTER, O_LR, O_DATA, O_CKPT, O_EVERY, O_KEEP, O_NORESUME, O_NOSAVE, O_PROFILE, O_INIT, O_METRICS, O_SEED, O_DEVICE,
	       O_THREADS, O_BATCH, O_DUMP, O_ZERO_ALL, O_QUIET, O_HELP };
	static const struct option longopts[] = {
		{"steps", required_argument, 0, O_STEPS}, {"stop-after", required_argument, 0, O_STOP_AFTER},
		{"lr", required_argument, 0, O_LR},
		{"data", required_argument, 0, O_DATA}, {"ckpt-dir", required_argument, 0, O_CKPT},
		{"save-every", required_argument, 0, O_EVERY}, {"keep", required_argument, 0, O_KEEP},
		{"no-resume", no_argument, 0, O_NORESUME}, {"no-save", no_argument, 0, O_NOSAVE},
		{"profile", no_argument, 0, O_PROFILE},
		{"init-from", required_argument, 0, O_INIT},
		{"metrics", required_argument, 0, O_METRICS}, {"seed", required_argument, 0, O_SEED},
		{"device", required_argument, 0, O_DEVICE}, {"threads", required_argument, 0, O_THREADS},
		{"batch", required_argument, 0, O_BATCH}, {"dump", required_argument, 0, O_DUMP},
		{"zero-all-grads", no_argument, 0, O_ZERO_ALL},
		{"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
	*o = (struct options){.steps = m->steps, .lr = m->lr, .ckpt_dir = m->ckpt_dir, .init_from = m->init_from,
			      .device = "auto", .seed = (long long)m->seed, .save_every = m->ckpt_every,
			      .keep = m->ckpt_keep, .resume = m->ckpt_resume};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_STEPS: o->steps = parse_ll("--steps", optarg, 0, INT_MAX); break;
		case O_STOP_AFTER: o->stop_after = parse_ll("--stop-after", optarg, 1, INT_MAX); break;
		case O_LR: o->lr = parse_double("--lr", optarg); break;
		case O_DATA:
			if (o->n_data == (int)(sizeof o->data / sizeof o->data[0]))
				moert_fatal("--data: at most %d files", o->n_data);
			o->data[o->n_data++] = optarg;
			break;
		case O_CKPT: o->ckpt_dir = optarg; break;
		case O_EVERY: o->save_every = (int)parse_ll("--save-every", optarg, 0, INT_MAX); break;
		case O_KEEP: o->keep = (int)parse_ll("--keep", optarg, 0, INT_MAX); break;
		case O_NORESUME: o->resume = 0; break;
		case O_NOSAVE: o->no_save = 1; break;
		case O_PROFILE: o->profile = 1; break;
		case O_INIT: o->init_from = optarg; break;
		case O_METRICS: o->metrics = optarg; break;
		case O_SEED: o->seed = parse_ll("--seed", optarg, 0, LLONG_MAX); break;
		case O_DEVICE: o->device = optarg; break;
		case O_THREADS: o->threads = (int)parse_ll("--threads", optarg, 1, 4096); break;
		case O_BATCH: o->batch = optarg; break;
		case O_DUMP: o->dump = optarg; break;
		case O_ZERO_ALL: o->zero_all_grads = 1; break;
		case O_QUIET: o->quiet = 1; break;
		case 'h':
		case O_HELP: usage(m, stdout); exit(0);
		default:
			fprintf(stderr, "train: unknown or incomplete option '%s'\n", argv[optind - 1]);
			usage(m, stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "train: unexpected argument '%s'\n", argv[optind]);
		usage(m, stderr);
		exit(2);
	}
}

/* --device: auto picks the GPU when a driver and a device are there, else the CPU. The
 * driver is probed with dlopen, so the binary starts where there is none. Returns 1 for CUDA. */
static int choose_device(const char *device)
{
	if (!strcmp(device, "cpu"))
		return 0;
	if (strcmp(device, "auto") && strcmp(device, "cuda"))
		moert_fatal("--device '%s': expected auto, cpu or cuda", device);
	/* kept loaded: a driver is never dlclosed (device_cuda.c), and opening the GPU
	 * dlopens it again, which then only counts a reference */
	void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!cuda) {
		if (!strcmp(device, "cuda"))
			moert_fatal("--device cuda: no CUDA driver on this machine (dlopen libcuda.so.1: %s); "
				    "use --device cpu", dlerror());
		return 0;
	}
	return 1;
}

static float *alloc_floats(long long n, const char *what)
{
	size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) / 64 * 64;
	float *p = aligned_alloc(64, bytes);
	if (!p)
		moert_fatal("cannot allocate %s (%.1f MiB)", what, bytes / 1048576.0);
	memset(p, 0, bytes);
	return p;
}

/* Before an optimizer step's first micro-batch: zero the gradients whose producers only add
 * (m->zero_ranges); the others' first writes overwrite them (compiler/step.c). all: the whole
 * arena, for a step whose writes all add. */
static void zero_grads(const struct moert_model *m, const struct moert_run *host, const struct moert_run *dev,
		       int all)
{
	if (dev) {
		moert_cuda_run_zero_grads(m, dev, all);
		return;
	}
	if (all) {
		memset(host->grads, 0, (size_t)m->param_floats * sizeof(float));
		return;
	}
	for (int i = 0; i < m->n_zero_ranges; i++)
		memset(host->grads + m->zero_ranges[i][0], 0, (size_t)m->zero_ranges[i][1] * sizeof(float));
}

/* Learning rate at step (1-based): linear warmup, then cosine/linear decay to min_lr. */
static double lr_at(const struct moert_model *m, double peak, long long step, long long steps)
{
	double min_lr = m->min_lr < peak ? m->min_lr : peak;
	if (m->warmup_steps > 0 && step <= m->warmup_steps)
		return peak * (double)step / m->warmup_steps;
	if (!strcmp(m->schedule, "constant") || steps <= m->warmup_steps)
		return peak;
	double progress = (double)(step - m->warmup_steps) / (double)(steps - m->warmup_steps);
	if (progress > 1)
		progress = 1;
	if (!strcmp(m->schedule, "linear"))
		return peak - (peak - min_lr) * progress;
	return min_lr + (peak - min_lr) * 0.5 * (1 + cos(M_PI * progress));
}

static int cmp_tensor_offset(const void *a, const void *b)
{
	const struct moert_tensor *x = *(const struct moert_tensor *const *)a, *y = *(const struct moert_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The generated tensor table, before anything is written through it: every tensor inside
 * the parameter arena and, on one rank, none overlapping another (a table whose offsets
 * wrapped at 2^31 would initialize, load and save other memory: the AdamW moments, say).
 * Under tp or ep a rank's table also lists the slices and experts other ranks hold, at its
 * own storage, so there only the starts are checked. */
static void check_tensor_table(const struct moert_model *m)
{
	const struct moert_tensor **byoff = malloc((size_t)(m->n_tensors > 0 ? m->n_tensors : 1) * sizeof *byoff);
	if (!byoff)
		moert_fatal("out of memory");
	for (int i = 0; i < m->n_tensors; i++)
		byoff[i] = &m->tensors[i];
	qsort(byoff, (size_t)m->n_tensors, sizeof *byoff, cmp_tensor_offset);
	const int one_rank = m->layout.tp <= 1 && m->layout.ep <= 1;
	long long end = 0; /* one rank: where the previous tensor ends */
	for (int i = 0; i < m->n_tensors; i++) {
		const struct moert_tensor *t = byoff[i];
		const long long n = moert_tensor_numel(t);
		if (t->offset < 0 || t->offset >= m->param_floats || (one_rank && (t->offset + n > m->param_floats || t->offset < end)))
			moert_fatal("the trainer's tensor table is corrupt: %s at float offset %lld (%lld floats; the arena "
				    "holds %lld%s): rebuild the trainer with this moec (moec build)",
				    t->name, t->offset, n, m->param_floats, one_rank && t->offset < end ? ", overlapping another" : "");
		end = t->offset + n;
	}
	free(byoff);
}

/* The first tensor with a non-finite value in arena a of n floats (NULL when all are finite;
 * the fp32 weights of a bf16 step with sharded masters are the norms only). */
static const struct moert_tensor *first_non_finite(const struct moert_model *m, const float *a, long long floats)
{
	for (int i = 0; i < m->n_tensors; i++) {
		const struct moert_tensor *t = &m->tensors[i];
		const long long n = moert_tensor_numel(t);
		if (t->offset + n > floats)
			continue;
		for (long long j = 0; j < n; j++)
			if (!isfinite(a[t->offset + j]))
				return t;
	}
	return NULL;
}

static void stop_on_non_finite(const struct moert_model *m, const struct moert_run *r, long long step,
			       const struct moert_stats *st, double gnorm)
{
	if (isfinite(st->loss) && isfinite(gnorm))
		return;
	const struct moert_tensor *bad = first_non_finite(m, r->params, m->fp32_floats);
	const char *what = "weight";
	if (!bad) {
		bad = first_non_finite(m, r->grads, m->param_floats);
		what = "gradient";
	}
	char where[256] = "";
	if (bad && bad->layer >= 0)
		snprintf(where, sizeof where, "; first non-finite %s: %s (layer %d)", what, bad->name, bad->layer);
	else if (bad)
		snprintf(where, sizeof where, "; first non-finite %s: %s", what, bad->name);
	moert_fatal("step %lld: non-finite %s (loss %g: cross-entropy %g, aux %g, z %g; gradient norm %g)%s. "
		    "Training stopped; lower the learning rate or resume from the last checkpoint",
		    step, isfinite(st->loss) ? "gradients" : "loss", st->loss, st->ce_loss, st->aux_loss, st->z_loss, gnorm, where);
}

/* Test and benchmark hooks: a selection bias added to every router logit before the top-k
 * (the routing weights stay the router's).
 *   MOERT_TEST_FORCE_EXPERTS=a,b,...  every token picks those experts (bias 1e4): ranks whose
 *                                     experts get no tokens, or exactly balanced all-to-alls
 *   MOERT_ROUTER_BIAS=a-b:x,c:y,...   bias x on experts a..b, y on c: skewed routing for
 *                                     benchmarks (bench/moe_layer_torch.py's +4 on 0..7)
 * NULL when neither is set. */
static float *router_bias_hook(const struct moert_model *m)
{
	const char *force = getenv("MOERT_TEST_FORCE_EXPERTS"), *bias = getenv("MOERT_ROUTER_BIAS");
	const char *var = force && *force ? "MOERT_TEST_FORCE_EXPERTS" : "MOERT_ROUTER_BIAS";
	const char *v = force && *force ? force : bias;
	if (!v || !*v)
		return NULL;
	float *b = calloc((size_t)m->experts, sizeof *b);
	if (!b)
		moert_fatal("out of memory");
	for (const char *p = v; *p;) {
		char *end;
		long e0 = strtol(p, &end, 10), e1 = e0;
		if (end != p && *end == '-')
			e1 = strtol(end + 1, &end, 10);
		double x = 1e4;
		if (end != p && v == bias && *end == ':')
			x = strtod(end + 1, &end);
		else if (v == bias)
			end = (char *)p; /* MOERT_ROUTER_BIAS needs its value */
		if (end == p || e0 < 0 || e1 < e0 || e1 >= m->experts || (*end && *end != ','))
			moert_fatal("%s='%s': expected %s with expert indices below %d", var, v,
				    v == bias ? "first-last:bias or expert:bias, comma-separated" : "comma-separated expert indices",
				    m->experts);
		for (long e = e0; e <= e1; e++)
			b[e] = (float)x;
		p = *end == ',' ? end + 1 : end;
	}
	return b;
}

int moert_train_main(const struct moert_model *m, int argc, char **argv)
{
	/* Ranks first: under mpirun/srun MPI_Init may take its own arguments out of argv. */
	struct moert_comm comm;
	moert_comm_init(&comm, &m->layout, &argc, &argv);
	const int rank0 = comm.rank == 0;
	struct options o;
	parse_options(m, argc, argv, &o);
	check_tensor_table(m);
	if (!rank0) /* one rank speaks and writes the metrics */
		o.quiet = 1;
	struct train_state ts;
	train_state_init(&ts, m, o.ckpt_dir, &comm);
	char metrics_default[4096];
	if (!rank0)
		o.metrics = NULL;
	else if (!o.metrics && !o.batch) {
		if (moert_make_dirs(o.ckpt_dir))
			moert_fatal("cannot create checkpoint dir %s: %s", o.ckpt_dir, strerror(errno));
		snprintf(metrics_default, sizeof metrics_default, "%s/metrics.jsonl", o.ckpt_dir);
		o.metrics = metrics_default;
	}
	if (o.metrics) { /* its directory may be the checkpoint dir, not made yet */
		char dir[4096];
		snprintf(dir, sizeof dir, "%s", o.metrics);
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = 0;
			moert_make_dirs(dir);
		}
	}
	struct log *lg = log_open(o.metrics, o.quiet);
	if (!lg)
		moert_fatal("cannot open metrics file %s: %s", o.metrics, strerror(errno));
	int use_cuda = choose_device(o.device);
	if (o.threads)
		moert_set_threads(o.threads);

	if (comm.torchrun && !use_cuda) /* the CPU's collectives are MPI's */
		moert_fatal("started torchrun-style (WORLD_SIZE=%d), whose ranks talk over NCCL between GPUs, but this run "
			    "is on the CPU (--device %s): start CPU ranks with `mpirun -np %d` or `srun -n %d`",
			    comm.world, o.device, comm.world, comm.world);
	/* The GPU and NCCL first, so a rank that cannot start fails before any work. */
	struct moert_nccl nccl = {0};
	struct moert_cuda *gpu = use_cuda ? moert_cuda_rank_open(m, &comm, &nccl) : NULL;
	if (o.batch && comm.size[MOERT_DP] > 1)
		moert_fatal("--batch with %d data-parallel ranks: a fixed batch is one rank's (tp and ep ranks share it)",
			    comm.size[MOERT_DP]);
	struct moert_run r = {.comm = comm.world > 1 ? &comm : NULL};
	float *force_bias = router_bias_hook(m);
	r.router_bias = force_bias;
	if (m->layout.ep > 1) {
		r.ep = calloc((size_t)m->moe_layers, sizeof *r.ep);
		if (!r.ep)
			moert_fatal("out of memory");
		for (int i = 0; i < m->moe_layers; i++)
			moert_ep_init(&r.ep[i], m->layout.ep, m->experts_per_rank);
	}
	/* The host arenas. On the GPU the step runs on device copies, and the host keeps what
	 * checkpoints are made of (weights, AdamW's moments); gradients only for --dump (or to
	 * name a non-finite one), activations not at all. */
	const double t_arenas = moert_seconds(); /* the start's phases, logged as "ready" */
	r.params = alloc_floats(m->param_floats, "the weights"); /* whole to start; see r.master below */
	moert_zero_init(&r.zero, m, r.comm); /* this rank's part of AdamW's moments */
	r.exp_avg = alloc_floats(r.zero.floats, "AdamW's first moments");
	r.exp_avg_sq = alloc_floats(r.zero.floats, "AdamW's second moments");
	if (!use_cuda || o.dump)
		r.grads = alloc_floats(m->param_floats, "the gradients");
	if (!use_cuda)
		r.acts = alloc_floats(m->act_floats, "the activations");
	log_event(lg, "start", "%s: %.2f M parameters, %lld tokens per micro-batch x %d (%s)", m->name,
		  m->n_params / 1e6, m->tokens, m->grad_accum, m->generated_by);
	if (r.zero.on)
		log_event(lg, "zero", "AdamW sharded (parallel.shard_optimizer): this rank's moments are %lld of %lld floats "
			  "(dense over dp %d, experts over edp %d)", r.zero.floats, m->param_floats, comm.size[MOERT_DP],
			  comm.size[MOERT_EDP]);
	if (r.zero.master)
		log_event(lg, "zero", "fp32 masters sharded too: %lld floats, and %lld of fp32 norms", r.zero.floats,
			  m->fp32_floats);

	/* Weights and optimizer state: resume > init_from > random. */
	const double t_weights = moert_seconds();
	long long step0 = 0;
	struct data_cursor cursor = {0, 0};
	if (!o.batch && o.resume && train_state_resume(&ts, &r, &step0, &cursor, lg))
		;
	else if (o.init_from)
		train_state_init_from(&ts, &r, o.init_from, lg);
	else
		train_state_init_random(&ts, &r, (uint64_t)o.seed);

	const double t_copies = moert_seconds();
	if (m->act_bf16) { /* the bf16 copies the step reads; AdamW keeps them current from here on */
		r.params16 = alloc_floats((m->param_floats + 1) / 2, "the bf16 weights");
		for (long long i = 0; i < m->param_floats; i++)
			((unsigned short *)r.params16)[i] = moert_f32_to_bf16(r.params[i]);
	}
	if (r.zero.master) { /* sharded masters: this rank's ranges; of the whole weights only the norms */
		r.master = alloc_floats(r.zero.floats, "the fp32 masters");
		moert_zero_cut(&r.zero, r.params, r.master);
		float *norms = alloc_floats(m->fp32_floats, "the fp32 norms");
		memcpy(norms, r.params, (size_t)m->fp32_floats * sizeof *norms);
		free(r.params);
		r.params = norms;
	}
	if (o.dump)
		r.logits_out = alloc_floats(m->tokens * m->vocab, "the logits");
	/* On the GPU the step runs on device copies of the arenas (rd); r stays the host side,
	 * where checkpoints are written from. */
	struct moert_run rd = {0}, *run = &r;
	char device[256] = "cpu";
	const double t_device = moert_seconds();
	if (use_cuda) {
		moert_cuda_run_open(m, &r, &rd, gpu);
		free(r.params16); /* the device keeps them current; checkpoints hold the fp32 masters */
		r.params16 = NULL;
		snprintf(device, sizeof device, "%s%s, %.2f GiB allocated", moert_cuda_describe(gpu), comm.nccl ? " (NCCL)" : "",
			 moert_cuda_allocated(gpu) / 1073741824.0);
		run = &rd;
	}
	log_event(lg, "device", "device: %s", device);
	/* where a long start's time goes (a 3 B-parameter trainer takes most of a minute) */
	const double t_ready = moert_seconds();
	if (t_ready - t_arenas >= 1.0)
		log_event(lg, "ready", "ready in %.1f s: host arenas %.1f s, weights %.1f s, host copies %.1f s, device setup %.1f s",
			  t_ready - t_arenas, t_weights - t_arenas, t_copies - t_weights, t_device - t_copies, t_ready - t_device);
	if (o.profile)
		run->prof = moert_prof_new(m);

	struct train_batches tb;
	train_batches_open(&tb, m, &o.data[0], o.n_data, o.batch, (uint64_t)o.seed, cursor, comm.index[MOERT_DP],
			   comm.size[MOERT_DP]);

	struct sigaction sa = {.sa_handler = on_stop_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);

	long long *counts = calloc((size_t)(m->moe_layers ? m->moe_layers : 1) * m->experts, sizeof *counts);
	int *micro_counts = calloc((size_t)(m->moe_layers ? m->moe_layers : 1) * m->experts, sizeof *micro_counts);
	if (!counts || !micro_counts)
		moert_fatal("out of memory");
	struct moert_stats st = {.expert_count = micro_counts};
	long long last_saved = step0, run_steps = 0;
	int prof_warmup = 0; /* the profile's first step was reset */
	for (long long step = step0 + 1; step <= o.steps; step++) {
		double t0 = moert_seconds();
		zero_grads(m, &r, use_cuda ? &rd : NULL, o.zero_all_grads);
		memset(counts, 0, (size_t)m->moe_layers * m->experts * sizeof *counts);
		struct log_step ls = {.step = step, .steps = o.steps, .moe_layers = m->moe_layers, .experts = m->experts,
				      .expert_count = counts};
		for (int a = 0; a < m->grad_accum; a++) {
			struct moert_batch b;
			train_batches_next(&tb, &b);
			(use_cuda ? m->micro_step_cuda : m->micro_step)(run, &b, 1.0f / m->grad_accum,
									a == 0 && !o.zero_all_grads, &st);
			ls.loss += st.loss / m->grad_accum;
			ls.ce_loss += st.ce_loss / m->grad_accum;
			ls.aux_loss += st.aux_loss / m->grad_accum;
			ls.z_loss += st.z_loss / m->grad_accum;
			ls.dropped += st.dropped;
			for (int i = 0; i < m->moe_layers * m->experts; i++)
				counts[i] += micro_counts[i];
		}
		ls.lr = lr_at(m, o.lr, step, o.steps);
		ls.grad_norm = (use_cuda ? m->optimizer_step_cuda : m->optimizer_step)(run, ls.lr, (int)step);
		run_steps++;
		if (run->prof && run_steps == 1 && step < o.steps) { /* warm-up: see profile.h */
			moert_prof_reset(run->prof);
			prof_warmup = 1;
		}
		if (use_cuda && !(isfinite(st.loss) && isfinite(ls.grad_norm))) { /* to name the tensor */
			if (!r.grads)
				r.grads = alloc_floats(m->param_floats, "the gradients");
			moert_cuda_run_download(m, &rd, &r, 1);
		}
		stop_on_non_finite(m, &r, step, &st, ls.grad_norm);
		ls.step_s = moert_seconds() - t0;
		ls.tokens = m->tokens * m->grad_accum;
		ls.tokens_per_s = ls.tokens / ls.step_s;
		ls.mfu_tflops = ls.tokens_per_s * m->flops_per_token / 1e12;
		log_step(lg, &ls);
		ts.last_loss = ls.loss;
		/* every rank stops at the same step, whichever got the signal */
		int stopping = moert_max_i32(&comm, MOERT_WORLD, stop_signal != 0 || step == o.stop_after);
		bool due = !o.batch && !o.no_save && ((o.save_every > 0 && step % o.save_every == 0) || step == o.steps || stopping);
		if (due) {
			if (use_cuda)
				moert_cuda_run_download(m, &rd, &r, 0);
			train_state_save(&ts, &r, step, train_batches_cursor(&tb), o.keep, lg);
			last_saved = step;
		}
		if (stopping) {
			log_event(lg, "stop", "%s at step %lld: checkpoint saved, exiting",
				  stop_signal ? strsignal(stop_signal) : "--stop-after", step);
			break;
		}
	}
	if (o.dump) {
		if (use_cuda)
			moert_cuda_run_download(m, &rd, &r, 1);
		train_state_dump(&ts, &r, o.dump, &st);
	}
	if (run->prof && rank0)
		moert_prof_report(run->prof, m, run_steps - prof_warmup, prof_warmup, stdout);
	moert_prof_free(run->prof);
	run->prof = NULL;
	if (comm.nccl) { /* what went over NCCL joins what went over MPI (launch, nothing else) */
		for (int i = 0; i < MOERT_NTRAFFIC; i++)
			comm.bytes[i] += nccl.bytes[i];
		comm.nccl = NULL;
		moert_nccl_finalize(&nccl);
	}
	moert_cuda_run_close(&rd);
	if (!o.batch && last_saved == step0 && step0 > 0)
		log_event(lg, "done", "nothing to do: the checkpoint is at step %lld of %lld", step0, o.steps);
	train_batches_close(&tb);
	free(counts);
	free(micro_counts);
	free(r.params);
	free(r.params16);
	free(r.grads);
	free(r.exp_avg);
	free(r.master);
	free(r.exp_avg_sq);
	free(r.acts);
	free(r.logits_out);
	if (r.ep)
		for (int i = 0; i < m->moe_layers; i++)
			moert_ep_free(&r.ep[i]);
	free(r.ep);
	free(force_bias);
	if (comm.world > 1 && rank0)
		log_event(lg, "traffic",
			  "bytes sent by rank 0: all-to-all %.0f, dp all-reduce %.0f, edp all-reduce %.0f, tp %.0f, other %.0f",
			  comm.bytes[MOERT_BYTES_A2A], comm.bytes[MOERT_BYTES_DP], comm.bytes[MOERT_BYTES_EDP],
			  comm.bytes[MOERT_BYTES_TP], comm.bytes[MOERT_BYTES_OTHER]);
	log_close(lg);
	moert_comm_finalize(&comm);
	return 0;
}
