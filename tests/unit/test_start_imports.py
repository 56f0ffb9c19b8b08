"""What a container's start must not import (BENCHMARKS B1): each costs every `sbx run` its import time.

hashlib loads OpenSSL (~2.5 ms): the start hashes only a few bytes (the image config's digest check, chain ids,
the seccomp cache key) and does it with CPython's built-in sha256. subprocess and shutil (which imports the
compressors) were the monitor's for newuidmap/newgidmap, now started with posix_spawn. threading (the blob store's
lease mutex is a plain lock) and the volume service (only for -v NAME:) are not needed either. typing (~3 ms) is
imported by nothing a start runs, in the CLI, the monitor or pid 1: ``TYPE_CHECKING = False`` stands in for
typing's, and :class:`sandbox.kernel.KernelAPI` (a Protocol) is loaded only when asked for. dataclasses (and the
inspect it imports) is replaced by :mod:`sandbox.valueclass`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import sys
from sandbox.cli import commands, fast
from sandbox.cli import run, attach  # noqa: F401
from sandbox.service import lifecycle, containers, images, monitoring  # noqa: F401
from sandbox.monitor import monitor, attach as protocol  # noqa: F401
from sandbox.runtime import launcher, privileges, usermaps, spec  # noqa: F401
from sandbox.security import cache
from sandbox.store import layers
from sandbox.oci.digest import Digest

assert fast.resolve(['run', '--rm', '--network', 'none', 'img', 'true']) is not None
Digest.of(b'{}')
layers.chain_ids([Digest.of(b'a'), Digest.of(b'b')])
cache.cache_key('sha256:' + '0' * 64, 0)
from sandbox.service.containers import RunOptions, parse_mounts
from sandbox.store.blobs import BlobStore
from sandbox.kernel import Kernel, libc, cmdline  # noqa: F401 - the monitor's, and pid 1's, from here on
from sandbox.cgroups import tree, delegation  # noqa: F401
from sandbox.monitor import logs, network  # noqa: F401
from sandbox.network import modes  # noqa: F401
from sandbox.runtime import nsjob, plan, workdir, identity, mounts, rootfs  # noqa: F401
from sandbox.store import trees  # noqa: F401
from pathlib import Path
BlobStore(Path('/nonexistent'), Path('/nonexistent'), 1.0)
list(parse_mounts(RunOptions()))
unwanted = ('hashlib', '_hashlib', 'subprocess', 'shutil', 'threading', 'sandbox.service.volumes', 'typer', 'requests',
            'typing', 'dataclasses', 'inspect')
print(sorted(m for m in unwanted if m in sys.modules))
"""


def test_the_start_path_imports_no_hashlib_subprocess_shutil_threading_or_typing() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


GO_FIRST = """
import sys
from pathlib import Path
from types import SimpleNamespace

from sandbox.service import monitoring


class Prepared:
    def start(self, params, container_id, **_):
        print("monitor code imported before GO:", "sandbox.monitor.monitor" in sys.modules)
        return 1


settings = SimpleNamespace(data_root=Path("/d"), runtime_root=Path("/r"), config_root=Path("/c"))
monitoring.spawn(settings, "0" * 64, None, None, network="none", on_listening=lambda path: None,
                 prepared=Prepared())
"""


def test_a_prepared_monitor_gets_its_go_before_sbx_imports_the_monitor_code() -> None:
    """The prepared monitor waits for GO with everything imported already; sbx importing the monitor's modules
    first (~2 ms: the session, the pump, the frames) delayed every `run` by that much."""
    result = subprocess.run([sys.executable, "-c", GO_FIRST], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "monitor code imported before GO: False", result.stdout + result.stderr


KEYS_FIRST = """
import sys
from types import SimpleNamespace

from sandbox.cli.attach import detach_key_bytes

assert detach_key_bytes(None, SimpleNamespace(detach_keys=None)) == b"\\x10\\x11"
print(sorted(name for name in ("sandbox.runtime.console", "termios", "tty", "selectors") if name in sys.modules))
"""


def test_sbx_run_checks_its_detach_keys_without_the_terminal_code() -> None:
    """`run` checks --detach-keys before it makes the container; the terminal code (termios, tty, selectors) is
    imported after GO, while the monitor works."""
    result = subprocess.run([sys.executable, "-c", KEYS_FIRST], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
