/* log.c - console lines and the JSONL metrics file. See log.h. */
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct log {
	FILE *metrics;
	int quiet;
};

struct log *log_open(const char *metrics_path, int quiet)
{
	struct log *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->quiet = quiet;
	if (metrics_path) {
		/* Appending: a resumed run continues the same file. */
		l->metrics = fopen(metrics_path, "a");
		if (!l->metrics) {
			int e = errno;
			free(l);
			errno = e;
			return NULL;
		}
	}
	return l;
}

void log_close(struct log *l)
{
	if (!l)
		return;
	if (l->metrics)
		fclose(l->metrics);
	free(l);
}

void log_expert_health(const struct log_step *s, double *utilization, double *imbalance)
{
	long long used = 0, n = (long long)s->moe_layers * s->experts;
	double worst = 0;
	for (int m = 0; m < s->moe_layers; m++) {
		long long sum = 0, max = 0;
		for (int e = 0; e < s->experts; e++) {
			long long c = s->expert_count[m * s->experts + e];
			used += c > 0;
			sum += c;
			max = c > max ? c : max;
		}
		double mean = (double)sum / s->experts;
		if (mean > 0 && max / mean > worst)
			worst = max / mean;
	}
	*utilization = n ? (double)used / (double)n : 0;
	*imbalance = worst;
}

/* JSON has no nan/inf literals: write null so the file stays parseable. */
static void log_json_number(FILE *f, const char *key, double v)
{
	if (isfinite(v))
		fprintf(f, ",\"%s\":%.17g", key, v);
	else
		fprintf(f, ",\"%s\":null", key);
}

void log_step(struct log *l, const struct log_step *s)
{
	double util, imb;
	log_expert_health(s, &util, &imb);
	if (!l->quiet) {
		printf("step %*lld/%lld | loss %.4f | ce %.4f | aux %.3f | z %.3f | lr %.2e | gnorm %.3f | %.0f tok/s"
		       " | experts %.0f%% used, max/mean %.2f",
		       s->steps >= 1000 ? 5 : 3, s->step, s->steps, s->loss, s->ce_loss, s->aux_loss, s->z_loss, s->lr,
		       s->grad_norm, s->tokens_per_s, 100 * util, imb);
		if (s->dropped)
			printf(" | dropped %lld", s->dropped);
		printf("\n");
		fflush(stdout);
	}
	if (!l->metrics)
		return;
	FILE *f = l->metrics;
	fprintf(f, "{\"step\":%lld", s->step);
	log_json_number(f, "loss", s->loss);
	log_json_number(f, "ce_loss", s->ce_loss);
	log_json_number(f, "aux_loss", s->aux_loss);
	log_json_number(f, "z_loss", s->z_loss);
	log_json_number(f, "lr", s->lr);
	log_json_number(f, "grad_norm", s->grad_norm);
	log_json_number(f, "step_s", s->step_s);
	log_json_number(f, "tokens_per_s", s->tokens_per_s);
	log_json_number(f, "model_tflops", s->mfu_tflops);
	fprintf(f, ",\"tokens\":%lld,\"dropped\":%lld", s->tokens, s->dropped);
	log_json_number(f, "expert_utilization", util);
	log_json_number(f, "load_imbalance", imb);
	fprintf(f, ",\"expert_counts\":[");
	for (int m = 0; m < s->moe_layers; m++) {
		fprintf(f, "%s[", m ? "," : "");
		for (int e = 0; e < s->experts; e++)
			fprintf(f, "%s%lld", e ? "," : "", s->expert_count[m * s->experts + e]);
		fprintf(f, "]");
	}
	fprintf(f, "]}\n");
	fflush(f);
}

void log_event(struct log *l, const char *event, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (!l->quiet) {
		printf("%s\n", msg);
		fflush(stdout);
	}
	if (!l->metrics)
		return;
	fprintf(l->metrics, "{\"event\":\"%s\",\"message\":\"", event);
	for (const char *p = msg; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', l->metrics);
		if ((unsigned char)*p >= 0x20)
			fputc(*p, l->metrics);
	}
	fprintf(l->metrics, "\"}\n");
	fflush(l->metrics);
}
