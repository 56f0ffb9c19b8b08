"""The process plan (runtime/plan.py) through FakeKernel: its steps for run and exec as data, and a clean failure at
every step (the right error and exit code, nothing after it runs, no fd of the plan left open)."""

from __future__ import annotations

import errno
import signal

import pytest

from sandbox.cgroups.limits import Limits, Ulimit
from sandbox.errors import ContainerStartError
from sandbox.kernel import FakeKernel
from sandbox.kernel import constants as k
from sandbox.runtime import plan as process_plan
from sandbox.runtime.identity import Identity
from sandbox.runtime.plan import Process, ProcessPlan, Step, build, execute
from sandbox.runtime.privileges import PrivilegePlan
from sandbox.security import capabilities

DEFAULT = capabilities.container_set()
FILTER = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # RET ALLOW
ROOT = Identity(0, 0, (), "/root", "root")
USER = Identity(1000, 100, (10, 20), "/home/app", "app")
SOCKET = 7  # the sync socket the close step spares
SLAVE = 9  # a pty slave the caller made
NULL = 11  # exec's /dev/null, opened by the joiner


def run_process(**changes) -> Process:
    """pid 1 of ``sbx run IMG cmd`` (no -i, no -t): what launcher's stage 2 builds."""
    fields = dict(args=("cmd", "arg"), env=("PATH=/bin", "SECRET=hunter2"), identity=ROOT,
                  privileges=PrivilegePlan(DEFAULT, False, FILTER), cwd="/", stdin="/dev/null", spare=(SOCKET,),
                  limits=Limits(), exit_code=125)
    return Process(**{**fields, **changes})


def exec_process(**changes) -> Process:
    """``sbx exec CTR cmd`` (no -i, no -t): what enter's command process builds."""
    fields = dict(args=("cmd",), env=("PATH=/bin",), identity=ROOT, privileges=PrivilegePlan(DEFAULT, False, FILTER),
                  cwd="/", stdin=NULL, spare=(SOCKET,), exit_code=126)
    return Process(**{**fields, **changes})


def ops(plan: ProcessPlan) -> list[str]:
    return [step.op for step in plan.steps]


# -- the plan as data ---------------------------------------------------------------------------------------------


def test_run_as_root_without_a_terminal():
    plan = build(run_process())
    assert ops(plan) == ["setsid", "stdin", "drop_bounding", "seccomp_filter", "setgroups", "setresgid", "setresuid",
                         "capset", "clear_ambient", "close_fds", "workdir", "reset_signal", "reset_signal", "exec"]
    assert plan.exit_code == 125 and plan.owned == ()
    assert Step("capset", (DEFAULT, DEFAULT, 0), "set the capabilities") in plan.steps
    assert plan.steps[-1].args == (("cmd", "arg"), ("PATH=/bin", "SECRET=hunter2", "HOME=/root"))


def test_a_user_gets_its_groups_and_ids_and_no_capabilities():
    steps = {step.op: step.args for step in build(run_process(identity=USER)).steps}
    assert steps["setgroups"] == ((10, 20),)
    assert steps["setresgid"] == (100, 100, 100) and steps["setresuid"] == (1000, 1000, 1000)
    assert steps["capset"] == (0, 0, 0)
    assert steps["exec"][1][-1] == "HOME=/home/app"


def test_a_single_id_map_sets_no_groups():
    assert "setgroups" not in ops(build(run_process(set_groups=False)))


def test_a_terminal_becomes_the_controlling_terminal_and_stdio_and_is_owned_by_the_plan():
    plan = build(run_process(identity=USER, terminal=SLAVE))
    assert [str(step) for step in plan.steps[:7]] == [
        "setsid()", f"set_controlling_terminal({SLAVE})", f"terminal_owner({SLAVE}, 1000)",
        f"dup2({SLAVE}, 0)", f"dup2({SLAVE}, 1)", f"dup2({SLAVE}, 2)", f"close({SLAVE})",
    ]
    assert "stdin" not in ops(plan) and plan.owned == (SLAVE,)


def test_no_new_privs_loads_the_filter_last():
    plan = build(run_process(privileges=PrivilegePlan(DEFAULT, True, FILTER)))
    assert ops(plan)[2:9] == ["drop_bounding", "setgroups", "setresgid", "setresuid", "capset", "clear_ambient",
                              "prctl"]
    assert plan.steps[9].op == "seccomp_filter"


def test_the_working_directory_is_normalised_and_a_proc_one_is_refused_before_any_step():
    assert Step("workdir", ("/srv/app", 125), "enter working directory /srv/app") in build(
        run_process(cwd="//srv//app/")).steps
    for process, code in ((run_process(cwd="/proc/self/fd/3"), 125), (exec_process(cwd="//proc/1"), 126)):
        with pytest.raises(ContainerStartError, match="refusing working directory") as caught:
            build(process)
        assert caught.value.exit_code == code


def test_ulimits_are_a_step_of_run_and_exec_alike():
    limits = Limits(rlimits=(Ulimit("nofile", 10, 20),))
    run, exec_ = build(run_process(limits=limits)), build(exec_process(limits=limits))
    assert ops(run)[-2:] == ops(exec_)[-2:] == ["limits", "exec"]
    assert str(run.steps[-2]) == "limits(nofile=10:20, cpus=[])"
    assert (run.steps[-2].args[1], exec_.steps[-2].args[1]) == (125, 126)  # the exit code of a refused limit


def test_exec_takes_the_same_steps_as_pid_1():
    run, exec_ = build(run_process()), build(exec_process())
    assert ops(exec_) == ["setsid", "dup2", "close", *ops(run)[2:]]
    assert exec_.steps[1:3] == (Step("dup2", (NULL, 0), "make /dev/null the standard input"),
                                Step("close", (NULL,), "close the spare /dev/null"))
    assert exec_.owned == (NULL,) and exec_.exit_code == 126
    same = ("drop_bounding", "seccomp_filter", "setgroups", "setresgid", "setresuid", "capset", "close_fds")
    assert [s for s in run.steps if s.op in same] == [s for s in exec_.steps if s.op in same]


def test_the_printed_plan_names_env_variables_but_never_their_values():
    text = str(build(run_process()))
    assert "SECRET" in text and "hunter2" not in text and f"<{len(FILTER)}-byte filter>" in text


# -- the executor -------------------------------------------------------------------------------------------------


def test_the_executor_makes_each_step_s_calls_in_order():
    kernel = FakeKernel()
    execute(kernel, build(run_process(identity=USER)))
    calls = [call for call in kernel.calls if call.op != "prctl"]  # the bounding set: see test_privileges
    null = 100  # the fake's first fd
    assert [(call.op, call.args) for call in calls] == [
        ("setsid", ()), ("open", ("/dev/null", 0)), ("dup2", (null, 0)), ("close", (null,)),
        ("seccomp_filter", (FILTER,)), ("setgroups", ((10, 20),)), ("setresgid", (100, 100, 100)),
        ("setresuid", (1000, 1000, 1000)), ("capset", (0, 0, 0)),
        ("close_range", (3, SOCKET - 1)), ("close_range", (SOCKET + 1, process_plan.fd_limit() - 1)),
        ("chdir", ("/",)), ("getcwd", ()), ("device_of", ("/proc",)), ("device_of", (".",)),
        ("reset_signal", (signal.SIGPIPE,)), ("reset_signal", (signal.SIGXFSZ,)),
        ("execvpe", ("cmd", ("cmd", "arg"), {"PATH": "/bin", "SECRET": "hunter2", "HOME": "/home/app"})),
    ]
    assert kernel.open_fds == set()


def test_a_working_directory_on_proc_s_device_is_refused_after_chdir():
    kernel = FakeKernel()
    kernel.devices["."] = kernel.devices["/proc"]  # /work is a symlink to /proc/1/cwd, say
    with pytest.raises(ContainerStartError, match="on the proc filesystem") as caught:
        execute(kernel, build(exec_process(cwd="/work")))
    assert caught.value.exit_code == 126 and "execvpe" not in kernel.ops()


@pytest.mark.parametrize(("code", "exit_code", "message"), [
    (errno.ENOENT, 127, 'exec: "cmd": executable file not found in $PATH'),
    (errno.EACCES, 126, 'exec: "cmd": permission denied'),
    (errno.E2BIG, 125, 'exec: "cmd": Argument list too long'),
])
def test_a_failed_exec_keeps_docker_s_codes_and_messages(code, exit_code, message):
    kernel = FakeKernel()
    kernel.fail("execvpe", code)
    kernel.execvpe = _os_shaped(kernel.execvpe)  # the real execvpe raises os's error, whose text names no op
    with pytest.raises(ContainerStartError) as caught:
        execute(kernel, build(exec_process()))
    assert (caught.value.exit_code, caught.value.message) == (exit_code, message)


def _os_shaped(call):
    def wrapped(*args):
        try:
            call(*args)
        except OSError as error:
            raise OSError(error.errno, error.strerror.partition(": ")[2]) from None
    return wrapped


# -- every step fails in turn -------------------------------------------------------------------------------------

VARIANTS = {
    "run-user-tty-limits": run_process(identity=USER, terminal=SLAVE, stdin=None,
                                       limits=Limits(rlimits=(Ulimit("nofile", 10, 20),), cpus=(0,))),
    "run-root-nnp": run_process(privileges=PrivilegePlan(DEFAULT, True, FILTER)),
    "exec-user-null-limits": exec_process(identity=USER, limits=Limits(rlimits=(Ulimit("nproc", 5, 5),))),
    "exec-root-tty": exec_process(terminal=SLAVE, stdin=None),
}


def _kernel(plan: ProcessPlan) -> FakeKernel:
    kernel = FakeKernel()
    kernel.prctl_results[k.PR_CAPBSET_READ] = 1  # every capability is in the bounding set: each is read, then dropped
    kernel.open_fds |= set(plan.owned)  # the fds the caller gave the plan count as open until it closes them
    return kernel


def _calls_of_steps(plan: ProcessPlan, count: int) -> int:
    kernel = _kernel(plan)
    execute(kernel, ProcessPlan(plan.steps[:count], plan.exit_code, plan.owned))
    return len(kernel.calls)


CASES = [
    pytest.param(name, index, id=f"{name}-{index}-{step.op}")
    for name, process in VARIANTS.items()
    for index, step in enumerate(build(process).steps)
]


@pytest.mark.parametrize(("name", "index"), CASES)
def test_each_step_that_fails_stops_the_plan_with_its_error_and_leaks_nothing(name, index):
    plan = build(VARIANTS[name])
    step = plan.steps[index]
    before = _calls_of_steps(plan, index)  # the calls of the steps before it
    if _calls_of_steps(plan, index + 1) == before:  # a step the executor skipped, unless it has nothing to do
        assert step.op == "terminal_owner" and step.args[1] == 0, f"{step} made no kernel call"
        return
    reference = _kernel(plan)
    execute(reference, plan)
    first = reference.calls[before]  # the step's first call: make it fail
    nth = sum(1 for call in reference.calls[: before + 1] if call.op == first.op)
    kernel = _kernel(plan).fail(first.op, errno.EIO, nth=nth)

    with pytest.raises(ContainerStartError) as caught:
        execute(kernel, plan)

    if step.op == "exec":
        assert caught.value.message == 'exec: "cmd": execvpe: Input/output error' and caught.value.exit_code == 125
    elif step.op == "workdir":
        assert caught.value.exit_code == plan.exit_code and "working directory" in caught.value.message
    elif step.op == "limits":  # cgroups.limits' own messages
        assert caught.value.exit_code == plan.exit_code and caught.value.message.startswith("cannot set ")
    else:
        assert caught.value.exit_code == plan.exit_code
        assert caught.value.message == f"cannot {step.what}: {first.op}: Input/output error"
    after = kernel.calls[before + 1:]
    assert all(call.op == "close" and call.args[0] in plan.owned for call in after), f"steps ran after {step}: {after}"
    assert kernel.open_fds == set(), "an fd of the plan was left open"
