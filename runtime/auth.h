/* auth.h — the job secret that ranks prove to each other, and the MACs of the handshake.
 *
 * Every rank of a job holds the same secret. It never travels: the transport's handshake
 * (transport.c) is a mutual challenge-response where each side sends a fresh random nonce and
 * answers with HMAC-SHA256(job key, label || transcript); only a process holding the secret can
 * compute the answers. The job key is HMAC-SHA256(secret, "pippy job key v1"), so a secret of any
 * length gives a 32-byte key.
 *
 * Where the secret comes from (pippy_job_key_load), first match wins:
 *   1. --job-secret-file FILE: the file's bytes (trailing newlines dropped), at least 16; the file
 *      must be a regular file that only its owner can read or write (like ssh keys).
 *   2. PIPPY_JOB_SECRET: the variable's text, at least 16 bytes. pippyrun sets it for its ranks
 *      to 64 random hex digits (getrandom).
 *   3. A launcher's job id (SLURM_JOB_ID, PMIX_NAMESPACE, OMPI_MCA_orte_ess_jobid, PMI_JOBID),
 *      with a warning: anyone who can see the job id can join the job.
 *   Otherwise there is no secret and a rank with peers refuses to start. */
#ifndef PIPPY_AUTH_H
#define PIPPY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PIPPY_KEY_BYTES 32
#define PIPPY_MAC_BYTES 32
#define PIPPY_SECRET_MIN_BYTES 16

typedef struct {
    uint8_t k[PIPPY_KEY_BYTES];
    char source[160]; /* where the secret came from, for messages */
    int weak;         /* 1: derived from a launcher's job id (guessable) */
} pippy_job_key;

/* The key from the secret's bytes. */
void pippy_job_key_from_secret(const void *secret, size_t n, const char *source, pippy_job_key *out);

/* The key from secret_file (may be NULL), else the environment (see above). When it falls back
 * to a launcher's job id it sets out->weak and writes the warning into warn (may be NULL). */
pippy_status pippy_job_key_load(const char *secret_file, pippy_job_key *out, char *warn, size_t warn_n);

/* HMAC-SHA256 under key of the concatenation of label (a NUL-terminated string, its NUL
 * included) and n parts. */
void pippy_mac(const pippy_job_key *key, const char *label, const void *const *parts, const size_t *lens, int n,
               uint8_t mac[PIPPY_MAC_BYTES]);

/* 1 when a and b are equal, in time independent of where they differ. */
int pippy_mac_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* n bytes from the kernel's random generator (getrandom). */
pippy_status pippy_random_bytes(void *buf, size_t n);

/* 16 hex digits that name the job's files (shared memory) without revealing its key. */
void pippy_job_key_tag(const pippy_job_key *key, char tag[17]);

#endif
