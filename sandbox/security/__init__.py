"""Layer L2: the container's privileges as data, and the seccomp compiler.

- :mod:`sandbox.security.profile`: seccomp profiles in Docker's JSON schema, loaded, validated and resolved
  against a capability set, an architecture and a kernel version;
- :mod:`sandbox.security.compiler`: a resolved profile → a classic BPF program (libseccomp through ``pyseccomp``),
  cached per profile hash, so a container start reads bytes and never imports libseccomp;
- :mod:`sandbox.security.capabilities`: capability names and sets (Docker's default, --cap-add/--cap-drop);
- :mod:`sandbox.security.options`: ``--security-opt``, ``--cap-add``, ``--cap-drop``, ``--privileged`` → one frozen
  :class:`~sandbox.security.options.SecurityOptions` the container spec keeps.

Nothing here calls the kernel: :mod:`sandbox.runtime.privileges` applies what this package decides.
"""
