"""How sbx starts a container's monitor: forked from the sbx command, so no second interpreter boots first.

An attached start (a foreground `run`, `start -a`, the API's attach) keeps the sbx command alive beside its forked
monitor for as long as it is attached (:func:`sandbox.monitor.monitor.spawn`). A detached container (`run -d`,
`start`) keeps only its monitor, for as long as it runs, so that monitor is handed ``finish``: once the container
runs (RUNNING sent) it execs its lean steady state (:mod:`sandbox.monitor.handoff`, :mod:`sandbox.monitor.steady`),
dropping everything the command had imported, and when the container has ended it execs :func:`finish` in a fresh
interpreter, given roots and the container's id only (nothing of the command crosses an exec). A container joining
another's network (``container:ID``) keeps the fresh interpreter from the start (:func:`run`, which reads the spec
from the record): its stage 1 is forked from the monitor and lives as long as the container.
"""

from __future__ import annotations

ENTRY = "sandbox.service.monitoring:run"
FINISH = "sandbox.service.monitoring:finish"
FORKED_NETWORKS = ("none", "host", "slirp4netns", "pasta")
# What a prepared monitor imports while sbx records and builds the container, in the order it then needs them (the
# monitor's setup and the launcher up to the clone of pid 1, the cgroup, the end, pid 1's steps): the import events
# of one `run --rm` under an audit hook.
WARM = (
    "sandbox.config", "sandbox.kernel.libc", "sandbox.store.containers", "sandbox.runtime.spec",
    "sandbox.monitor.monitor", "sandbox.monitor.attach", "sandbox.monitor.network", "sandbox.network.modes",
    "sandbox.kernel.cmdline", "sandbox.runtime.launcher", "sandbox.runtime.usermaps", "sandbox.runtime.privileges",
    "sandbox.security.cache",
    # placing pid 1 in its cgroup happens while its id maps are written: what GO cut off from here on is imported
    # in that wait, or while pid 1 makes its mounts (_import_the_end)
    "sandbox.cgroups.tree", "sandbox.cgroups.delegation",
    "sandbox.monitor.logs", "sandbox.store.trees", "sandbox.service.containers",
    # pid 1's own: what GO cut off here it imports itself while its id maps are written (launcher._stage2_imports)
    "sandbox.runtime.plan", "sandbox.runtime.workdir", "sandbox.runtime.identity", "sandbox.runtime.console",
    "sandbox.runtime.mounts", "sandbox.security.paths",
)


def prepare():
    """A monitor forked ahead of its container, for :func:`spawn`'s ``prepared`` (`sbx run`)."""
    from sandbox.monitor.detached import MONITOR
    from sandbox.monitor.detached import prepare as fork_prepared

    return fork_prepared(ENTRY, MONITOR, WARM)


def spawn(settings, container_id: str, build_spec, remove_dir, *, network: str | None = None, on_listening=None,
          prepared=None, console_size: tuple[int, int] | None = None, meanwhile=None) -> int:
    """Start the container's monitor; its pid once the container runs (ContainerStartError when it did not).

    ``network`` is the container's network mode (its spec's), which decides whether a detached monitor may be
    forked. ``build_spec`` and ``remove_dir`` serve the forked monitor; the fresh one rebuilds both from the
    record, and so does a ``prepared`` one (:func:`prepare`), which this either starts or closes;
    ``console_size`` is what the record does not keep (the terminal of this start, with -t), for it.
    ``meanwhile()`` runs once a prepared monitor has its GO (before the others are started)."""
    from sandbox.store.containers import containers_root

    params = {
        "data_root": str(settings.data_root),
        "runtime_root": str(settings.runtime_root) if settings.runtime_root else None,
        "config_root": str(settings.config_root),
        "id": container_id,
    }
    if prepared is not None:
        if on_listening is not None or _forkable(network):
            given = {"prepared": True, "detached": on_listening is None, "console_size": console_size}
            return prepared.start({**params, **given}, container_id, runtime_root=settings.runtime_root,
                                  on_listening=on_listening, meanwhile=meanwhile)
        prepared.close()
    if meanwhile is not None:
        meanwhile()
    from sandbox.monitor import monitor  # not before a prepared monitor's GO: it waits for it (BENCHMARKS B1)

    if on_listening is not None:
        return monitor.spawn(containers_root(settings.data_root), container_id, build_spec, remove_dir,
                             runtime_root=settings.runtime_root, on_listening=on_listening)
    if _forkable(network):
        return monitor.spawn(containers_root(settings.data_root), container_id, build_spec, remove_dir,
                             runtime_root=settings.runtime_root, finish=(FINISH, params))
    return monitor.spawn_fresh(ENTRY, params, container_id, runtime_root=settings.runtime_root)


def _forkable(network: str | None) -> bool:
    """Whether the container's network mode lets its monitor be forked, since it execs its lean steady state once
    the container runs: every mode but ``container:ID``, whose stage 1 is forked from the monitor and lives as long
    as the container, so the monitor must not carry sbx's heap into it (a fresh interpreter does not, and freezes
    its own first: ``monitor._before_fork``). An unknown mode gets the fresh interpreter, which reports it."""
    return network in FORKED_NETWORKS


def run(report_fd: int, params: dict) -> None:
    """The monitor, in the fresh interpreter or a prepared fork: supervise the container ``params["id"]`` until it
    has ended."""
    from sandbox.monitor.monitor import serve
    from sandbox.runtime.spec import stored_spec
    from sandbox.store.containers import ContainerStore, containers_root

    settings, remove_dir = _from_params(params)
    store_root = containers_root(settings.data_root)
    store = ContainerStore(store_root)
    size = params.get("console_size")

    def build_spec(record):
        spec = stored_spec(record)
        if size and spec.process.tty:  # this start's terminal (a prepared monitor's `run -t`): not in the record
            from sandbox.valueclass import replace

            rows, columns = (int(value) for value in size)
            spec = replace(spec, process=replace(spec.process, console_size=(rows, columns)))
        return spec, store.dir(record.id)

    finish = None
    if params.get("detached"):  # a prepared monitor of a detached container: lean while it runs, as spawn's
        finish = (FINISH, {key: params[key] for key in ("data_root", "runtime_root", "config_root", "id")})
    serve(report_fd, store_root, params["id"], build_spec, remove_dir, runtime_root=settings.runtime_root,
          hold=bool(params.get("hold")), fresh=not params.get("prepared"), finish=finish,
          meanwhile=None if finish else _import_the_end)


def _import_the_end() -> None:
    """What the end of a monitor that stays itself needs (the container service, which removes an --rm container's
    directory), imported while pid 1 makes its mounts: a prepared monitor whose GO came before it got to them
    (:data:`WARM`) would import it after the container exited, delaying `run --rm` (BENCHMARKS B1). A detached
    monitor does not: its end runs in a fresh interpreter (:func:`finish`)."""
    import sandbox.service.containers  # noqa: F401
    import sandbox.store.trees  # noqa: F401


def finish(_report_fd: int, params: dict) -> None:
    """The detached monitor once its steady state saw the container end (:mod:`sandbox.monitor.handoff`)."""
    from pathlib import Path

    from sandbox.monitor import attach
    from sandbox.monitor.handoff import conclude
    from sandbox.store.containers import containers_root

    settings, remove_dir = _from_params(params)
    runtime_root = settings.runtime_root
    socket_path = attach.socket_path(runtime_root, params["id"]) if runtime_root else None
    conclude(containers_root(settings.data_root), params["id"], Path(params["container_dir"]), remove_dir,
             params.get("handed", {}), socket_path=socket_path, helper=params.get("network"))


def _from_params(params: dict):
    """The monitor's settings (its roots, from ``params``) and its way of removing a container's directory."""
    from pathlib import Path

    from sandbox.config import Settings

    runtime_root = Path(params["runtime_root"]) if params.get("runtime_root") else None
    settings = Settings(data_root=Path(params["data_root"]), runtime_root=runtime_root,
                        config_root=Path(params["config_root"]))

    def remove_dir(container_dir) -> None:
        from sandbox.service.containers import ContainerService

        ContainerService(settings).remove_dir(container_dir)

    return settings, remove_dir
