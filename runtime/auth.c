/* auth.c — see auth.h. HMAC-SHA256 from nettle (Debian nettle-dev). */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIPPY_SECRET_MAX_BYTES 4096

void pippy_job_key_from_secret(const void *secret, size_t n, const char *source, pippy_job_key *out)
{
    static const char label[] = "pippy job key v1";
    struct hmac_sha256_ctx c;
    memset(out, 0, sizeof *out);
    hmac_sha256_set_key(&c, n, secret);
    hmac_sha256_update(&c, sizeof label, (const uint8_t *)label);
    hmac_sha256_digest(&c, PIPPY_KEY_BYTES, out->k);
    snprintf(out->source, sizeof out->source, "%s", source);
    memset(&c, 0, sizeof c);
}

/* The secret file's bytes: a regular file of ours that nobody else may read or change. */
static pippy_status pippy_secret_file(const char *path, pippy_job_key *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return pippy_fail(PIPPY_ERR_IO, "cannot open the job secret file %s: %s", path, strerror(errno));
    struct stat sb;
    pippy_status st = PIPPY_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = pippy_fail(PIPPY_ERR_INVALID, "the job secret file %s is not a regular file", path);
    else if (sb.st_mode & 077)
        st = pippy_fail(PIPPY_ERR_INVALID,
                        "the job secret file %s can be read or written by others (mode %04o): chmod 600 %s", path,
                        (unsigned)(sb.st_mode & 07777), path);
    else if (sb.st_uid != geteuid() && sb.st_uid != 0)
        st = pippy_fail(PIPPY_ERR_INVALID, "the job secret file %s belongs to another user (uid %u)", path,
                        (unsigned)sb.st_uid);
    uint8_t buf[PIPPY_SECRET_MAX_BYTES + 1];
    ssize_t n = st == PIPPY_OK ? read(fd, buf, sizeof buf) : 0;
    close(fd);
    if (st != PIPPY_OK)
        return st;
    if (n < 0)
        return pippy_fail(PIPPY_ERR_IO, "cannot read the job secret file %s: %s", path, strerror(errno));
    if (n > PIPPY_SECRET_MAX_BYTES)
        return pippy_fail(PIPPY_ERR_INVALID, "the job secret file %s is longer than %d bytes", path,
                          PIPPY_SECRET_MAX_BYTES);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < PIPPY_SECRET_MIN_BYTES)
        return pippy_fail(PIPPY_ERR_INVALID,
                          "the job secret file %s holds %zd bytes, expected at least %d (e.g. (umask 077; head -c "
                          "32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE))",
                          path, n, PIPPY_SECRET_MIN_BYTES);
    char src[160];
    snprintf(src, sizeof src, "--job-secret-file %s", path);
    pippy_job_key_from_secret(buf, (size_t)n, src, out);
    memset(buf, 0, sizeof buf);
    return PIPPY_OK;
}

pippy_status pippy_job_key_load(const char *secret_file, pippy_job_key *out, char *warn, size_t warn_n)
{
    memset(out, 0, sizeof *out);
    if (warn && warn_n)
        warn[0] = 0;
    if (secret_file)
        return pippy_secret_file(secret_file, out);
    const char *s = getenv("PIPPY_JOB_SECRET");
    if (s && *s) {
        if (strlen(s) < PIPPY_SECRET_MIN_BYTES)
            return pippy_fail(PIPPY_ERR_INVALID, "PIPPY_JOB_SECRET has %zu characters, expected at least %d",
                              strlen(s), PIPPY_SECRET_MIN_BYTES);
        pippy_job_key_from_secret(s, strlen(s), "PIPPY_JOB_SECRET", out);
        return PIPPY_OK;
    }
    static const char *const launchers[] = {"SLURM_JOB_ID", "PMIX_NAMESPACE", "OMPI_MCA_orte_ess_jobid",
                                            "PMI_JOBID"};
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
        s = getenv(launchers[i]);
        if (!s || !*s)
            continue;
        char src[160];
        snprintf(src, sizeof src, "the launcher's job id (%s=%.60s)", launchers[i], s);
        pippy_job_key_from_secret(s, strlen(s), src, out);
        out->weak = 1;
        if (warn && warn_n)
            snprintf(warn, warn_n,
                     "warning: no job secret given (--job-secret-file or PIPPY_JOB_SECRET): using %s, which "
                     "anyone who can list this job can read and use to join it",
                     src);
        return PIPPY_OK;
    }
    return pippy_fail(PIPPY_ERR_USAGE,
                      "no job secret: the ranks of a job prove to each other that they hold the same secret. "
                      "Give every rank --job-secret-file FILE (a file of at least %d random bytes, mode 600) or "
                      "set PIPPY_JOB_SECRET; pippyrun makes one for the ranks it starts",
                      PIPPY_SECRET_MIN_BYTES);
}

void pippy_mac(const pippy_job_key *key, const char *label, const void *const *parts, const size_t *lens, int n,
               uint8_t mac[PIPPY_MAC_BYTES])
{
    struct hmac_sha256_ctx c;
    hmac_sha256_set_key(&c, PIPPY_KEY_BYTES, key->k);
    hmac_sha256_update(&c, strlen(label) + 1, (const uint8_t *)label);
    for (int i = 0; i < n; i++)
        hmac_sha256_update(&c, lens[i], parts[i]);
    hmac_sha256_digest(&c, PIPPY_MAC_BYTES, mac);
    memset(&c, 0, sizeof c);
}

int pippy_mac_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

pippy_status pippy_random_bytes(void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = getrandom((uint8_t *)buf + got, n - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return pippy_fail(PIPPY_ERR_IO, "getrandom: %s", strerror(errno));
        got += (size_t)k;
    }
    return PIPPY_OK;
}

void pippy_job_key_tag(const pippy_job_key *key, char tag[17])
{
    uint8_t mac[PIPPY_MAC_BYTES];
    pippy_mac(key, "pippy job tag", NULL, NULL, 0, mac);
    for (int i = 0; i < 8; i++)
        snprintf(tag + 2 * i, 3, "%02x", mac[i]);
}
