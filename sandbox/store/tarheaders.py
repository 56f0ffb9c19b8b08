"""Tar headers, bounded before they are read (TESTPLAN 61).

``tarfile`` reads a GNU long-name or long-link header (``L``/``K``) and a PAX extended header (``x``/``g``) whole
into memory, as large as the header *claims* to be: a 600 KB gzip layer whose PAX header claims 2.5 GB costs 2.5 GB
of RAM before a single file is written. :class:`BoundedTarInfo` is the ``tarinfo`` class sbx opens every tar with:
it refuses an extended header over :data:`MAX_EXTENDED_HEADER` bytes, and a chain of them (several ``x`` or ``L``
headers before one member) over the same total, before anything of it is read. Linux paths stop at 4 KiB and
an xattr value at 64 KiB, so 1 MiB refuses nothing a real image holds.

:func:`header_bytes` is what a member's headers took in the stream (its ustar header and every extended header
before it): the unpacker counts it toward ``layer_size_limit`` with the file data, so a layer of a million small
headers is stopped like a decompression bomb.
"""

from __future__ import annotations

import tarfile

from sandbox.errors import InvalidLayer

MAX_EXTENDED_HEADER = 1024 * 1024
_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
             tarfile.SOLARIS_XHDTYPE)


class HeaderTooLarge(InvalidLayer):
    """A tar extended header (GNU long name or link, PAX records) over :data:`MAX_EXTENDED_HEADER`."""


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo whose extended headers are checked against :data:`MAX_EXTENDED_HEADER` before they are read."""

    def _proc_member(self, tarfile_):  # tarfile's one dispatch point for every header it reads
        if self.type in _EXTENDED:
            chain = getattr(tarfile_, "_sbx_extended", 0) + self.size
            if self.size < 0 or chain > MAX_EXTENDED_HEADER:
                kind = "PAX" if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) else "GNU long"
                raise HeaderTooLarge(
                    f"invalid tar: a {kind} header of {self.size} bytes (or a chain of them) is over the limit of "
                    f"{MAX_EXTENDED_HEADER} bytes",
                    hint="the archive is damaged or hostile",
                )
            tarfile_._sbx_extended = chain
            try:
                return super()._proc_member(tarfile_)
            finally:
                tarfile_._sbx_extended = 0
        return super()._proc_member(tarfile_)


def header_bytes(member: tarfile.TarInfo) -> int:
    """Bytes the member's headers took in the stream: from its first extended header to its data."""
    return max(member.offset_data - member.offset, tarfile.BLOCKSIZE)
