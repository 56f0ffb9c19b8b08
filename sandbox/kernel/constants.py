"""Linux constants for the kernel calls sbx makes (values from <sched.h>, <sys/mount.h>, <linux/prctl.h>,
<asm-generic/ioctls.h>).

They are the same on x86_64 and aarch64, the two architectures sbx supports.
"""

from __future__ import annotations

# --- clone(2) / unshare(2) / setns(2) namespace flags --------------------------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount(2) flags ------------------------------------------------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# --- umount2(2) flags ----------------------------------------------------------------------------------------
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# --- prctl(2) options ----------------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# --- pty ioctl(2) requests on a /dev/pts/ptmx master (asm-generic: the same on x86_64 and aarch64) -----------
# Python's termios module has none of these; fcntl.ioctl issues them.
TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int): the pty's number N, i.e. its slave is <devpts>/N
TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int): 0 unlocks the slave (unlockpt); a new pty starts locked
TIOCGPTPEER = 0x5441  # _IO('T', 0x41), Linux 4.13: open the slave through the master, without a path lookup
TIOCSCTTY = 0x540E  # on a terminal: make it the controlling terminal of the caller's session (a session leader)

# --- pivot_root(2) has no libc wrapper: its syscall number per machine (uname -m) ----------------------------
SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "arm64": 41,
}

# --- clone(2) has a libc wrapper, but one that wants a new stack and a function: the raw syscall's number ----------
SYS_CLONE = {
    "x86_64": 56,
    "aarch64": 220,
    "arm64": 220,
}

# --- setrlimit(2) resources (<asm-generic/resource.h>: x86_64 and aarch64 alike) ------------------------------------
RLIMITS = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7, "memlock": 8,
    "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15,
}
RLIM_INFINITY = -1
# --- capabilities (<linux/capability.h>) and seccomp (<linux/seccomp.h>) ---------------------------------------
LINUX_CAPABILITY_VERSION_3 = 0x20080522  # two 32-bit words per set: capabilities 0-63
SECCOMP_SET_MODE_FILTER = 1
SYS_SECCOMP = {
    "x86_64": 317,
    "aarch64": 277,
    "arm64": 277,
}
