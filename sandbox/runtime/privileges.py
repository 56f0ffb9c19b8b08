"""The container process's privileges: capabilities, no_new_privs and the seccomp filter, and the rules they follow.

Both the container's pid 1 (:mod:`sandbox.runtime.launcher`) and an ``exec``'ed command (:mod:`sandbox.runtime.enter`)
take these steps as the last privileged work before they close their fds, chdir and execve; they are steps of the
process plan (:func:`sandbox.runtime.plan.privilege_steps` orders them), in order::

    1. drop from the bounding set every capability the container does not get   (needs CAP_SETPCAP: still root)
    2. [load the seccomp filter here instead of at 6, see below]
    3. switch to the command's user: setgroups, setresgid, setresuid
    4. capset: effective = permitted = the set for uid 0, empty for any other uid; inheritable empty
    5. clear the ambient set
    6. no_new_privs when asked (--security-opt no-new-privileges, or a profile that asks, as ci.json does)
    7. load the seccomp filter, last

The kernel's rule for 7: seccomp(SECCOMP_SET_MODE_FILTER) needs either no_new_privs or CAP_SYS_ADMIN in the
caller's user namespace (EACCES otherwise), so that an unprivileged process cannot filter a setuid program into
misbehaving. After 3-4 a container's root holds Docker's set (no CAP_SYS_ADMIN) and any other user holds nothing.
Setting no_new_privs for every container would satisfy the rule but break setuid programs in the image (su,
sudo, ping), which Docker's containers allow. So, as runc does: when no_new_privs is not asked and the process
will not hold CAP_SYS_ADMIN at step 7, the filter is loaded at step 2, while the process still holds every
capability of its user namespace; steps 3-6 then run under the filter (setresuid, capset and prctl are allowed by
every sane profile; a profile that refuses them fails the start, never leaves it unconfined).

The user switch from uid 0 to another uid clears the permitted and effective sets (PR_SET_KEEPCAPS is off), as
Docker wants for a non-root user (moby gives non-root users no effective or permitted capabilities); capset at 4
only lowers sets, which the kernel always allows. The filter is compiled before pivot_root or chroot (libseccomp
and the policy files are host files, out of reach afterwards), by :func:`prepare`, and only loaded by the plan.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.valueclass import valueclass

CAP_SYS_ADMIN = 21


@valueclass
class PrivilegePlan:
    """The privileges a container's processes get, decided before the process leaves the host's root."""

    capabilities: int  # the bounding set, and the effective = permitted set of uid 0
    no_new_privs: bool = False
    seccomp: bytes | None = None  # a BPF program (see sandbox.security.compiler), None: unconfined


def cache_dir(data_root: Path) -> Path:
    """Where compiled filters are cached, under sbx's 0700 data root."""
    return Path(data_root) / "cache" / "seccomp"


def prepare(security, cache: Path | None = None) -> PrivilegePlan:
    """The plan for :class:`~sandbox.security.options.SecurityOptions` ``security`` (None: the defaults);
    compiles the seccomp profile, from ``cache`` when it was compiled before. InvalidSecurityProfile when the
    profile cannot be loaded or compiled: never an unconfined container instead."""
    from sandbox.security.options import SecurityOptions

    security = security or SecurityOptions()
    caps = security.capabilities
    source = security.profile_source()
    if source is None:
        return PrivilegePlan(caps, security.no_new_privileges, None)
    from sandbox.security.cache import compile_cached

    program, profile_asks = compile_cached(*source, caps, cache)
    return PrivilegePlan(caps, security.no_new_privileges or profile_asks, program)
