/*
 * A fault-injection shim for agent/tests/faults.rs, loaded with LD_PRELOAD: fsync and fdatasync on
 * a file whose path ends with $DAIT_FAULT_SYNC_PATH fail with EIO once $DAIT_FAULT_SYNC_AFTER of
 * them have succeeded (and from then on, every time). Every other file descriptor is synced as usual.
 * The failing calls do not sync: the data stays in the page cache, as after a real failed sync.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long synced;

/* Whether `fd` is open on a file whose path ends with $DAIT_FAULT_SYNC_PATH. */
static int matches(int fd) {
    const char *suffix = getenv("DAIT_FAULT_SYNC_PATH");
    char link[64], path[4096];
    ssize_t n;
    size_t len;
    if (suffix == NULL || *suffix == '\0')
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    len = strlen(suffix);
    return (size_t)n >= len && strcmp(path + n - len, suffix) == 0;
}

/* Whether this sync of `fd` fails. */
static int fails(int fd) {
    const char *after = getenv("DAIT_FAULT_SYNC_AFTER");
    if (!matches(fd))
        return 0;
    return __atomic_fetch_add(&synced, 1, __ATOMIC_SEQ_CST) >= (after ? atol(after) : 0);
}

int fsync(int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fdatasync(int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (fails(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}
