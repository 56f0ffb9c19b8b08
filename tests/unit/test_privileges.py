"""The privilege steps of the process plan through FakeKernel: the order of the steps, the kernel's rule for
loading a filter, and a clean failure at every step (TESTPLAN 30, 41)."""

from __future__ import annotations

import errno

import pytest

from sandbox.errors import ContainerStartError, InvalidRunOption, StoreCorrupt
from sandbox.kernel import FakeKernel
from sandbox.kernel import constants as k
from sandbox.runtime import plan as process_plan
from sandbox.runtime import privileges
from sandbox.runtime.identity import Identity
from sandbox.runtime.privileges import PrivilegePlan
from sandbox.security import capabilities, options

DEFAULT = capabilities.container_set()
SYS_ADMIN = 1 << 21
FILTER = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # RET ALLOW


def kernel_with_caps() -> FakeKernel:
    """A fake whose bounding set holds every capability (PR_CAPBSET_READ answers 1)."""
    kernel = FakeKernel()
    kernel.prctl_results[k.PR_CAPBSET_READ] = 1
    return kernel


def steps(kernel: FakeKernel) -> list[str]:
    """The calls, with the bounding-set reads and drops folded into one "bounding" step."""
    names = []
    for call in kernel.calls:
        if call.op == "prctl" and call.args[0] in (k.PR_CAPBSET_READ, k.PR_CAPBSET_DROP):
            name = "bounding"
        elif call.op in ("setgroups", "setresgid", "setresuid"):
            name = "switch_user"
        elif call.op == "prctl":
            name = {k.PR_CAP_AMBIENT: "ambient", k.PR_SET_NO_NEW_PRIVS: "no_new_privs"}[call.args[0]]
        else:
            name = call.op
        if not names or names[-1] != name:
            names.append(name)
    return names


def apply(kernel, plan: PrivilegePlan, uid: int, exit_code: int = 125) -> None:
    """The privilege steps alone, for a process that becomes ``uid``, through the plan's executor."""
    steps = process_plan.privilege_steps(plan, Identity(uid, uid, (), "/", None), set_groups=True)
    process_plan.execute(kernel, process_plan.ProcessPlan(tuple(steps), exit_code))


def test_root_without_no_new_privs_loads_the_filter_while_still_privileged():
    kernel = kernel_with_caps()
    apply(kernel, PrivilegePlan(DEFAULT, False, FILTER), 0)
    assert steps(kernel) == ["bounding", "seccomp_filter", "switch_user", "capset", "ambient"]
    assert [call.args for call in kernel.calls if call.op == "capset"] == [(DEFAULT, DEFAULT, 0)]
    dropped = {call.args[1] for call in kernel.calls if call.op == "prctl" and call.args[0] == k.PR_CAPBSET_DROP}
    assert dropped == set(range(64)) - {n for n in range(64) if DEFAULT >> n & 1}


def test_no_new_privs_then_the_filter_last():
    kernel = kernel_with_caps()
    apply(kernel, PrivilegePlan(DEFAULT, True, FILTER), 0)
    assert steps(kernel) == ["bounding", "switch_user", "capset", "ambient", "no_new_privs", "seccomp_filter"]


def test_root_with_sys_admin_loads_last_without_no_new_privs():
    kernel = kernel_with_caps()
    caps = DEFAULT | SYS_ADMIN
    apply(kernel, PrivilegePlan(caps, False, FILTER), 0)
    assert steps(kernel) == ["bounding", "switch_user", "capset", "ambient", "seccomp_filter"]


def test_another_user_gets_no_capabilities_and_the_filter_before_the_switch():
    kernel = kernel_with_caps()
    apply(kernel, PrivilegePlan(DEFAULT | SYS_ADMIN, False, FILTER), 1000)
    assert steps(kernel) == ["bounding", "seccomp_filter", "switch_user", "capset", "ambient"]
    assert [call.args for call in kernel.calls if call.op == "capset"] == [(0, 0, 0)]


def test_unconfined_loads_no_filter():
    kernel = kernel_with_caps()
    apply(kernel, PrivilegePlan(DEFAULT, False, None), 0)
    assert "seccomp_filter" not in kernel.ops()


def test_bounding_set_stops_at_the_kernel_s_last_capability():
    # every known capability kept: the first one read is 41, past this kernel's last (EINVAL): no more reads
    kernel = kernel_with_caps().fail("prctl", errno.EINVAL, nth=1)
    apply(kernel, PrivilegePlan(capabilities.ALL, False, None), 0)
    reads = [call.args[1] for call in kernel.calls if call.op == "prctl" and call.args[0] == k.PR_CAPBSET_READ]
    assert reads == [41] and "setresuid" in kernel.ops()


@pytest.mark.parametrize("plan", [PrivilegePlan(DEFAULT, False, FILTER), PrivilegePlan(DEFAULT, True, FILTER)])
def test_each_failing_step_stops_the_start_cleanly(plan):
    reference = kernel_with_caps()
    apply(reference, plan, 0)
    total = len(reference.calls)
    for position in range(total):
        call = reference.calls[position]
        nth = sum(1 for earlier in reference.calls[: position + 1] if earlier.op == call.op)
        kernel = kernel_with_caps().fail(call.op, errno.EPERM, nth=nth)
        with pytest.raises(ContainerStartError) as caught:
            apply(kernel, plan, 0, exit_code=126)
        assert caught.value.exit_code == 126 and caught.value.message.startswith("cannot ")
        assert len(kernel.calls) == position + 1, f"steps ran after {call} failed"


def test_a_failing_user_switch_is_a_clean_error():
    kernel = kernel_with_caps().fail("setresuid", errno.EPERM)
    with pytest.raises(ContainerStartError, match="cannot switch to the container's user"):
        apply(kernel, PrivilegePlan(DEFAULT, False, FILTER), 1000)
    assert "capset" not in kernel.ops()


def test_ambient_set_missing_on_old_kernels_is_not_an_error():
    kernel = kernel_with_caps()
    kernel.fail("prctl", errno.EINVAL, nth=sum(1 for n in range(64) if not DEFAULT >> n & 1) * 2 + 1)
    apply(kernel, PrivilegePlan(DEFAULT, False, None), 0)


def test_prepare_compiles_the_profile_and_applies_no_new_privs_from_it(tmp_path):
    plan = privileges.prepare(options.parse(["seccomp=ci"]), tmp_path)
    assert plan.no_new_privs and plan.seccomp and len(plan.seccomp) % 8 == 0
    assert privileges.prepare(options.parse(["seccomp=unconfined"]), tmp_path).seccomp is None
    privileged = privileges.prepare(options.parse([], privileged=True), tmp_path)
    assert privileged.seccomp is None and privileged.capabilities == capabilities.ALL


def test_security_options_parse_docker_s_spellings(tmp_path):
    assert options.parse([]).seccomp == "default" and options.parse([], default_profile="ci").seccomp == "ci"
    assert options.parse(["no-new-privileges"]).no_new_privileges
    assert options.parse(["no-new-privileges:true"]).no_new_privileges
    assert not options.parse(["no-new-privileges=false"]).no_new_privileges
    assert options.parse(["unmask=/proc/kcore:/proc/keys"]).unmask == ("/proc/kcore", "/proc/keys")
    assert options.parse(["seccomp:unconfined"]).confined is False
    path = tmp_path / "mine.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    from_file = options.parse([f"seccomp={path}"])
    path.write_text("changed later")
    assert from_file.profile_source()[0] == b'{"defaultAction": "SCMP_ACT_ALLOW"}'  # read at create, kept
    for bad in (["apparmor=x"], ["seccomp="], ["unmask=relative"], ["no-new-privileges=maybe"]):
        with pytest.raises(InvalidRunOption):
            options.parse(bad)


def test_security_options_round_trip_through_the_spec():
    from sandbox.security.options import SecurityOptions

    chosen = options.parse(["no-new-privileges", "unmask=ALL"], ["NET_ADMIN"], ["ALL"])
    assert SecurityOptions.from_json(chosen.to_json()) == chosen
    for damaged in ({}, {**chosen.to_json(), "privileged": "yes"}, {**chosen.to_json(), "cap_add": ["WIZARD"]},
                    {**chosen.to_json(), "seccomp": "file", "seccomp_profile": None}):
        with pytest.raises(ValueError):
            SecurityOptions.from_json(damaged)


def test_a_spec_keeps_its_security_options_and_an_old_one_gets_the_defaults(tmp_path):
    from sandbox.runtime.spec import ContainerSpec
    from tests.unit.test_spec_json import overlay_spec

    spec = overlay_spec(security=options.parse(["seccomp=ci"], ["SYS_ADMIN"]))
    data = spec.to_json()
    assert ContainerSpec.from_json(data) == spec
    del data["security"]
    assert ContainerSpec.from_json(data).security == options.SecurityOptions()
    data["security"] = {"seccomp": 1}
    with pytest.raises(StoreCorrupt, match="security"):
        ContainerSpec.from_json(data)
