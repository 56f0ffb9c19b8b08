"""Container networks (layer L2): the modes, published ports, the generated /etc files, and the backends.

A mode is ``none`` (a network namespace with only ``lo``), ``host`` (the host's namespace), ``slirp4netns`` or
``pasta`` (a new namespace connected by a user-mode helper that the monitor starts) and ``container:ID`` (the
namespace of another running container). :mod:`sandbox.network.modes` says what each needs from the launcher,
:mod:`sandbox.network.backend` is the one small interface the helpers implement, :mod:`sandbox.network.ports`
parses and shows ``-p``, and :mod:`sandbox.network.etcfiles` writes hosts and resolv.conf. Nothing here is imported
on the ``--network none`` start path but :mod:`modes` (no pyroute2, no subprocess).
"""
