"""Layer L2: resource limits. cgroup v2 where a subtree is delegated to the user, rlimits where nothing is.

The kernel's contract, as sbx relies on it (Documentation/admin-guide/cgroup-v2.rst):

- An unprivileged user may manage a cgroup subtree when its directory and its ``cgroup.procs``,
  ``cgroup.subtree_control`` (and ``cgroup.threads``) files are the user's own: systemd does that for
  ``user@UID.service`` with ``Delegate=``, an administrator can ``chown`` a directory. Moving a process from one
  cgroup to another also needs write access to ``cgroup.procs`` of their common ancestor, so sbx must itself run
  inside the delegated subtree (:mod:`sandbox.cgroups.delegation` walks up from its own cgroup).
- No internal processes: a non-root cgroup whose ``cgroup.subtree_control`` enables a controller cannot hold
  processes itself. The monitor stays where sbx runs; every container gets a leaf ``<delegated>/sbx/<id>`` under a
  ``sbx`` directory that never holds a process (:mod:`sandbox.cgroups.tree`).
- Control files exist only for enabled controllers; they are written, never created (a write to a missing file is
  an error, as it is on the real filesystem). ``cgroup.kill`` kills every process in a cgroup at once (5.14+),
  ``cgroup.freeze`` freezes it, ``memory.events`` counts OOM kills.
- A process placed in a cgroup before it creates a cgroup namespace sees that cgroup as the root of its own
  ``/sys/fs/cgroup``: the launcher moves pid 1 (or stage 1) before its ``unshare(CLONE_NEWCGROUP)``.

Where no controller is delegated (a hybrid v1/v2 layout, or a session scope nobody delegated), what an rlimit can
enforce is enforced in the container's pid 1 (:mod:`sandbox.cgroups.limits` decides, the launcher applies), the
user is told once what is missing and how to fix it, and a flag that nothing can enforce is refused unless
``--limits=best-effort`` says otherwise.
"""
