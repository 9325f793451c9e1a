/* bootstrap_rank.c - one rank of a torchrun-style start-up (run3.sh starts several, the
 * way `torchrun --no-python` would): reads RANK, WORLD_SIZE, ... from the environment,
 * rank 0 hands out a 128-byte blob made from SEED, every other rank checks what it got.
 *
 *   bootstrap_rank free-port [2]      print a TCP port nobody listens on now (2: nor on the next)
 *   bootstrap_rank hold-port P S      listen on port P for S seconds (as torchrun's agent does)
 *   bootstrap_rank SEED [TIMEOUT_S]   be one rank; exit 0 when the blob arrived intact
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bootstrap.h"

/* A port nobody listens on now, the kernel's pick; with pair, one whose successor is free
 * too (for a torchrun-like start-up, which takes the port after MASTER_PORT). */
static int free_port(int pair)
{
	for (int tries = 0; tries < 200; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0), fd2 = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_ANY);
		socklen_t len = sizeof a;
		if (fd < 0 || fd2 < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
		    getsockname(fd, (struct sockaddr *)&a, &len)) {
			perror("free-port");
			return 1;
		}
		int port = ntohs(a.sin_port), ok = 1;
		if (pair) {
			a.sin_port = htons((uint16_t)(port + 1));
			ok = port < 65535 && !bind(fd2, (struct sockaddr *)&a, sizeof a);
		}
		close(fd);
		close(fd2);
		if (ok) {
			printf("%d\n", port);
			return 0;
		}
	}
	fprintf(stderr, "free-port: no free pair of ports found\n");
	return 1;
}

/* Listens on port for seconds, accepting nothing: what torchrun's agent store does to
 * MASTER_PORT, as far as the rendezvous is concerned. */
static int hold_port(int port, double seconds)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0), zero = 0;
	struct sockaddr_in6 a;
	memset(&a, 0, sizeof a);
	a.sin6_family = AF_INET6;
	a.sin6_port = htons((uint16_t)port);
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16)) {
		perror("hold-port");
		return 1;
	}
	usleep((useconds_t)(seconds * 1e6));
	close(fd);
	return 0;
}

/* The blob every rank expects: xorshift64 from the seed. */
static void fill(unsigned char *b, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (unsigned char)(x >> 56);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "free-port"))
		return free_port(argc > 2 && !strcmp(argv[2], "2"));
	if (argc >= 4 && !strcmp(argv[1], "hold-port"))
		return hold_port(atoi(argv[2]), atof(argv[3]));
	if (argc < 2) {
		fprintf(stderr, "usage: bootstrap_rank free-port [2] | hold-port PORT SECONDS | SEED [TIMEOUT_S]\n");
		return 2;
	}
	uint64_t seed = strtoull(argv[1], NULL, 10);
	double timeout = argc > 2 ? atof(argv[2]) : 20.0;
	struct moert_bootstrap_env e;
	char err[1024] = "";
	int rc = moert_bootstrap_env(&e, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "bootstrap_rank: %s\n", err);
		return 1;
	}
	if (rc == 0) {
		fprintf(stderr, "bootstrap_rank: WORLD_SIZE is not set: start it the torchrun way\n");
		return 1;
	}
	unsigned char want[128], blob[128];
	fill(want, sizeof want, seed);
	memset(blob, 0, sizeof blob);
	if (e.rank == 0)
		memcpy(blob, want, sizeof blob);
	if (moert_bootstrap_broadcast(&e, blob, sizeof blob, timeout, err, sizeof err)) {
		fprintf(stderr, "bootstrap_rank: %s\n", err);
		return 1;
	}
	if (memcmp(blob, want, sizeof blob)) {
		fprintf(stderr, "bootstrap_rank: rank %d: the blob differs from rank 0's\n", e.rank);
		return 1;
	}
	printf("rank %d of %d (local %d of %d): blob ok from %s:%d (%s)\n", e.rank, e.world, e.local_rank, e.local_world,
	       e.master_addr, e.port, e.port_var);
	return 0;
}
