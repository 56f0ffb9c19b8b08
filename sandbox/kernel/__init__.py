"""Layer L1: the only package that calls into Linux directly (through libc, with ctypes).

Everything above receives a :class:`KernelAPI` as a parameter: :class:`Kernel` in production, :class:`FakeKernel`
in tests. All three are imported on first use, so ``import sandbox.kernel`` costs neither ctypes, libc nor typing.

Every call that fails raises ``OSError(errno, "op: strerror", path)``, i.e. ``PermissionError``,
``FileNotFoundError``, ... as :mod:`os` would. ``unshare(CLONE_NEWUSER)`` needs a single-threaded process, which
is why sbx forks before starting any thread.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms of every start, BENCHMARKS B1)
if TYPE_CHECKING:
    from typing import Any

    from sandbox.kernel.api import KernelAPI
    from sandbox.kernel.fake import Call, FakeKernel
    from sandbox.kernel.libc import Kernel

__all__ = ["Call", "FakeKernel", "Kernel", "KernelAPI"]


def __getattr__(name: str) -> Any:
    if name == "Kernel":
        from sandbox.kernel.libc import Kernel

        return Kernel
    if name == "KernelAPI":
        from sandbox.kernel.api import KernelAPI

        return KernelAPI
    if name in ("FakeKernel", "Call"):
        from sandbox.kernel import fake

        return getattr(fake, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
