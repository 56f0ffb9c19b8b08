"""Compiled seccomp filters, cached per (profile bytes, capability set, machine, kernel) under sbx's data root.

Building a filter costs tens of milliseconds (importing pyseccomp, loading libseccomp, compiling every
architecture: B9); a container start finds its filter here instead, reading one file and importing neither the
profile parser nor libseccomp.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.oci.digest import sha256_hex
from sandbox.security.sources import kernel_version

COMPILER_VERSION = "2"  # part of the cache key: bump when the way rules become BPF changes


def cache_key(digest: str, caps: int, machine: str | None = None, kernel: tuple[int, int] | None = None) -> str:
    """The cache file's name for a profile whose bytes hash to ``digest``, compiled for ``caps`` on this machine."""
    kernel = kernel or kernel_version()
    text = f"{COMPILER_VERSION}\0{digest}\0{caps:x}\0{machine or os.uname().machine}\0{kernel[0]}.{kernel[1]}"
    return sha256_hex(text.encode())


def compile_cached(raw: bytes, name: str, caps: int, cache_dir: Path | None) -> tuple[bytes, bool]:
    """(BPF program, whether the profile asks for no_new_privs) for the profile ``raw`` and capability mask
    ``caps``, from ``cache_dir`` when these exact bytes were compiled before.

    A hit neither parses the profile nor imports libseccomp: the key is the hash of the profile's bytes, which
    were validated when the entry was written. The cache is the user's own (under the 0700 data root); an entry is
    one flag byte (b"1": no_new_privs) and the program, written temp → rename, so a reader sees all or nothing."""
    key = cache_key("sha256:" + sha256_hex(raw), caps)
    path = cache_dir / f"{key}.bpf" if cache_dir is not None else None
    if path is not None:
        try:
            data = path.read_bytes()
            if data[:1] in (b"0", b"1") and len(data) > 1 and (len(data) - 1) % 8 == 0:
                return data[1:], data[:1] == b"1"
        except OSError:
            pass
    from sandbox.security.compiler import build
    from sandbox.security.profile import parse

    loaded = parse(raw, name)
    bpf = build(loaded, caps).bpf
    if path is not None:
        try:
            cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = cache_dir / f".{key}.{os.getpid()}.tmp"
            temp.write_bytes((b"1" if loaded.no_new_privs else b"0") + bpf)
            os.replace(temp, path)
        except OSError:
            pass  # a read-only or full store costs a rebuild next time, nothing else
    return bpf, loaded.no_new_privs
