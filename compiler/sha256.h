/* sha256.h - SHA-256 (FIPS 180-4), for moec's content-addressed kernel cache.
 *
 * Why SHA-256 and not a fast 64-bit hash: cache keys name files shared by every build on
 * the machine, so a collision would silently load the wrong cubin; a cryptographic hash
 * makes that impossible in practice. The inputs are a few hundred KB per build, so speed
 * does not matter (about 2 ms for a whole kernel set).
 */
#ifndef MOEC_SHA256_H
#define MOEC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

struct sha256 {
	uint32_t h[8];
	uint64_t len;          /* bytes hashed so far */
	unsigned char buf[64]; /* pending partial block */
	size_t nbuf;
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t n);
/* Same as sha256_update(c, s, strlen(s)). */
void sha256_update_str(struct sha256 *c, const char *s);
void sha256_final(struct sha256 *c, unsigned char out[32]);
/* Finish and write the digest as 64 lowercase hex digits plus a NUL. */
void sha256_final_hex(struct sha256 *c, char out[SHA256_HEX_LEN + 1]);

#endif
