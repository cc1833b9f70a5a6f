// Forwarders for calls glibc declares only under _GNU_SOURCE (see CFerry.h).
#define _GNU_SOURCE 1
#include <sched.h>
#include <pthread.h>
#include <poll.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <stddef.h>
#include "CFerry.h"

int ferry_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }

int ferry_set_affinity(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

int ferry_get_affinity_mask(unsigned long long *words, int count) {
    return sched_getaffinity(0, (size_t)count * sizeof(*words), (cpu_set_t *)words);
}

int ferry_set_affinity_mask(const unsigned long long *words, int count) {
    return sched_setaffinity(0, (size_t)count * sizeof(*words), (const cpu_set_t *)words);
}

int ferry_current_cpu(void) { return sched_getcpu(); }

int ferry_ppoll_nanoseconds(struct pollfd *fds, unsigned long count, long nanoseconds) {
    struct timespec limit = {nanoseconds / 1000000000L, nanoseconds % 1000000000L};
    return ppoll(fds, (nfds_t)count, &limit, NULL);
}

int ferry_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

int ferry_accept_cloexec(int listener) { return accept4(listener, NULL, NULL, SOCK_CLOEXEC); }

_Static_assert(FERRY_MFD_CLOEXEC == MFD_CLOEXEC, "MFD_CLOEXEC");
int ferry_gettid(void) { return gettid(); }
int ferry_setns(int fd, int nstype) { return setns(fd, nstype); }
ssize_t ferry_preadv2(int fd, const struct iovec *iov, int count, off_t offset, int flags) {
    return preadv2(fd, iov, count, offset, flags);
}
_Static_assert(FERRY_CLONE_NEWNET == CLONE_NEWNET, "CLONE_NEWNET");

int ferry_io_uring_setup(unsigned int entries, struct io_uring_params *params) {
    return (int)syscall(__NR_io_uring_setup, entries, params);
}
int ferry_io_uring_enter(int fd, unsigned int to_submit, unsigned int min_complete, unsigned int flags) {
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}
int ferry_io_uring_register(int fd, unsigned int opcode, void *arg, unsigned int nr_args) {
    return (int)syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
}

_Static_assert(sizeof(struct ferry_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr size");
_Static_assert(offsetof(struct ferry_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "mmsghdr.msg_len");
int ferry_recvmmsg(int fd, struct ferry_mmsghdr *messages, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)messages, count, flags, NULL);
}
int ferry_sendmmsg(int fd, struct ferry_mmsghdr *messages, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)messages, count, flags);
}
