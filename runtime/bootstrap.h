/* bootstrap.h - the torchrun-style launch: every process is started with RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT in its environment (torchrun
 * --no-python, or any script that sets them), and rank 0 hands every rank a small blob
 * over TCP: NCCL's 128-byte unique id, the one thing NCCL needs before it can build its
 * own connections (what torchrun's TCPStore does for PyTorch). It is no transport: one
 * blob, once, at start-up.
 *
 * Under mpirun/srun the same id goes out by MPI_Bcast instead (comm.h); see comm_nccl.h.
 * Functions return 0 (or 1 where said), or -1 with err filled; none exits.
 */
#ifndef MOERT_BOOTSTRAP_H
#define MOERT_BOOTSTRAP_H
#include <stddef.h>

struct moert_bootstrap_env {
	int rank, world;             /* RANK, WORLD_SIZE */
	int local_rank, local_world; /* LOCAL_RANK (the GPU to use), LOCAL_WORLD_SIZE (ranks per node) */
	char master_addr[256];       /* MASTER_ADDR: rank 0's host name or address ("" for one rank) */
	int master_port;             /* MASTER_PORT (0 for one rank) */
	int port;                    /* the rendezvous's port on rank 0's node (0: master_port) */
	char port_var[24];           /* what chose it, for messages ("": "MASTER_PORT") */
};

/* Reads the launch variables, strictly: whole decimal numbers only, in range (RANK below
 * WORLD_SIZE, LOCAL_RANK below LOCAL_WORLD_SIZE, a port in 1..65535). Returns 1 when
 * WORLD_SIZE is set (launched that way), 0 when it is not (*out is then one rank: rank 0
 * of 1), -1 with err naming the variable and its value when one is missing or bad.
 * RANK is always required; the others only with more than one rank.
 *
 * The rendezvous's port: MOERT_BOOTSTRAP_PORT where set; else MASTER_PORT + 1 under
 * torchrun, whose agent keeps its own TCPStore on MASTER_PORT for PyTorch workers (it sets
 * TORCHELASTIC_USE_AGENT_STORE=True for them), so that port is taken on rank 0's node;
 * else MASTER_PORT. */
int moert_bootstrap_env(struct moert_bootstrap_env *out, char *err, size_t errlen);

/* Rank 0's n bytes at blob end up in every rank's blob. Rank 0 listens on the port above
 * (every interface, IPv4 and IPv6), waits for WORLD_SIZE - 1 ranks to connect, sends each
 * the blob and waits for each to acknowledge it; the others connect to MASTER_ADDR at that
 * port, retrying until rank 0 is up, and check the blob's magic and length (n must be the
 * same on every rank). Everything is bounded by timeout_s seconds from the call; a
 * timeout names the address and, on rank 0, which ranks never came. One rank: returns at
 * once. */
int moert_bootstrap_broadcast(const struct moert_bootstrap_env *e, void *blob, size_t n, double timeout_s, char *err,
			      size_t errlen);

#endif
