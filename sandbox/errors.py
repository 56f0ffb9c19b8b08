"""The error tree (layer L0).

Every failure a user can act on is a subclass of :class:`SbxError`. The library raises them with a short
lowercase message (no final period) and, where there is one, a hint that says what to do next. Only the CLI
renders them, once, as ``sbx: MESSAGE`` plus the hint; ``--debug`` adds the traceback.

Fields (``op``, ``path``, ``errno``, ``digest``, ...) travel as attributes so callers and tests can inspect them
without parsing the message.
"""

from __future__ import annotations

import errno as errno_codes

from sandbox import exitcodes


class SbxError(Exception):
    """Base of every error sbx raises on purpose."""

    hint: str | None = None
    exit_code: int | None = None  # sbx's own exit code (see sandbox.exitcodes); None: the command's failure code

    def __init__(self, message: str, *, hint: str | None = None, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


# --- configuration -------------------------------------------------------------------------------------------


class ConfigError(SbxError):
    """The config file or a setting is invalid."""


# --- names and formats -----------------------------------------------------------------------------------------


class InvalidReference(SbxError):
    """An image reference (name, tag or digest) does not parse."""

    hint = "use NAME[:TAG] or NAME@sha256:DIGEST, e.g. docker.io/library/busybox:latest"


class InvalidDigest(SbxError):
    """A digest string is not `sha256:` + 64 lower-case hex (or `sha512:` + 128)."""


class InvalidManifest(SbxError):
    """A manifest, index or image config is malformed, ambiguous or of an unsupported kind."""


class PlatformNotFound(SbxError):
    """An index has no manifest for the requested platform."""


# --- registry ----------------------------------------------------------------------------------------------------


class RegistryError(SbxError):
    """The registry answered with an error or could not be reached."""


class RegistryUnreachable(RegistryError):
    """Connecting to the registry failed or timed out."""


class AuthenticationRequired(RegistryError):
    """The registry refused the request for lack of (valid) credentials."""

    hint = "run: sbx login REGISTRY"


class ManifestUnknown(RegistryError):
    """The registry has no such repository, tag or manifest."""


class ResponseTooLarge(RegistryError):
    """A body was larger than the bound sbx allows for its kind."""


class InsecureRegistry(RegistryError):
    """Plain http was asked of a registry that is not configured insecure, or https redirected to http."""


class RedirectRefused(RegistryError):
    """A redirect could not be followed safely."""


# --- content verification ------------------------------------------------------------------------------------------


class VerificationError(SbxError):
    """Content did not match what its descriptor promised."""


class DigestMismatch(VerificationError):
    """Bytes hashed to another digest than expected."""


class SizeMismatch(VerificationError):
    """A blob's length differs from its descriptor's size."""


class DiffIDMismatch(VerificationError):
    """A layer's uncompressed stream does not hash to the config's diff_id."""


class InvalidLayer(VerificationError):
    """A layer blob does not decompress (corrupt or truncated gzip/zstd)."""


# --- the store -----------------------------------------------------------------------------------------------------


class StoreError(SbxError):
    """The local store could not be read or written."""


class StoreCorrupt(StoreError):
    """An item in the store is missing or damaged."""

    hint = "run: sbx system check, then sbx rmi -f IMAGE or sbx system prune"


class NoSpace(StoreError):
    """The store's file system is full (ENOSPC)."""

    hint = "free some space (sbx system prune, sbx rmi) and try again"

    errno = errno_codes.ENOSPC


class LockTimeout(StoreError):
    """Another sbx process held a lock for too long."""


class ImageNotFound(SbxError):
    """No local image matches the name or id."""


class ImageInUse(SbxError):
    """An image cannot be removed because something still uses it."""


class AmbiguousImage(SbxError):
    """A short id matches more than one image."""


# --- layer extraction ----------------------------------------------------------------------------------------------


class UnsafeLayer(VerificationError):
    """A layer entry would leave the root, or cannot be made safe (bad whiteout, escaping hardlink, absurd device)."""


class LayerTooLarge(VerificationError):
    """A layer unpacks to more bytes than the configured limit (a decompression bomb)."""


class WhiteoutUnsupported(StoreError):
    """Whiteouts cannot be stored the way kernel overlayfs needs them (0:0 character devices, opaque xattrs)."""

    hint = "use the fuse-overlayfs or copy storage driver"


# --- image archives (save, load, import) ------------------------------------------------------------------------


class InvalidArchive(VerificationError):
    """An image archive or rootfs tar is malformed or hostile (unsafe member name, escaping link, missing file)."""


class RootfsError(SbxError):
    """The container's root filesystem could not be prepared or mounted."""


class NamespaceError(SbxError):
    """A user-namespace job could not start, died, or ran out of time."""


class ContainerStartError(SbxError):
    """The container could not be started; ``exit_code`` is the one Docker gives (125, 126 or 127)."""

    exit_code = exitcodes.CANNOT_RUN


class SyncError(ContainerStartError):
    """The process on the other end of a sync channel closed it, sent another kind or a malformed message, or said
    nothing in time (``reason``: closed, unexpected, malformed, timeout); see :mod:`sandbox.runtime.sync`."""


# --- terminals -------------------------------------------------------------------------------------------------------


class InvalidDetachKeys(SbxError):
    """A ``--detach-keys`` value does not parse (Docker's comma-separated ``ctrl-X`` / single-character format)."""

    hint = (
        'use comma-separated keys such as "ctrl-p,ctrl-q" (ctrl-a..ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^,'
        ' ctrl-_ or one printable character), or "" to disable detaching'
    )


class InvalidRunOption(SbxError):
    """A run flag (volume, mount, network, name) does not parse or is not supported."""


# --- process configuration (user, command, environment, hostname) --------------------------------------------------


class InvalidUser(SbxError):
    """``--user`` (or the image's USER) does not parse, is out of range, or names no entry in the image's files."""


class NoCommand(SbxError):
    """Neither the image nor the command line gives a command to run."""

    hint = "give a command after the image name, or use an image with an ENTRYPOINT or CMD"


class InvalidCommand(SbxError):
    """An argument of the command cannot be passed to execve (it contains a NUL byte)."""


class InvalidEnv(SbxError):
    """An environment variable (``-e``, ``--env-file``, the image's Env) has no name, or contains a NUL byte."""


class InvalidHostname(SbxError):
    """``--hostname`` is not a valid RFC 1123 host name."""

    hint = "use letters, digits and '-' in dot-separated labels of at most 63 characters (253 in all)"


# --- container records ---------------------------------------------------------------------------------------------


class ContainerNotFound(SbxError):
    """No container record matches the name, id or id prefix."""

    hint = "run: sbx ps -a"


class AmbiguousContainer(SbxError):
    """An id prefix matches more than one container."""

    hint = "give more characters of the id, or the container's name"


class NameInUse(SbxError):
    """Another container already has the requested name."""


class InvalidContainerName(SbxError):
    """A container name is not ``[a-zA-Z0-9][a-zA-Z0-9_.-]*`` of at most 253 characters."""

    hint = "use letters, digits, '_', '.' and '-', starting with a letter or digit (at most 253 characters)"


class ContainerRunning(SbxError):
    """The operation needs a stopped container."""


class ContainerNotRunning(SbxError):
    """The operation needs a running container."""



# --- output formats ----------------------------------------------------------------------------------------------


class TemplateError(SbxError):
    """A --format Go template does not parse or fails while it runs (the message is Go's, as Docker prints it)."""


# --- resource limits (cgroups, rlimits) -------------------------------------------------------------------------------


class LimitUnavailable(SbxError):
    """A resource limit was asked for that nothing on this machine can enforce (no delegated cgroup controller and
    no rlimit to stand in for it)."""


class CgroupError(SbxError):
    """A container's cgroup could not be made, written, frozen or removed."""


# --- security --------------------------------------------------------------------------------------------------


class InvalidSecurityProfile(SbxError):
    """A seccomp profile is not valid JSON, or not Docker's schema, or names an unknown syscall, arch or action.

    Never falls back to running unconfined: the container is not created (or not started)."""

    hint = "check the profile with sbx policy check FILE, or choose another with --security-opt seccomp=NAME|PATH"


# --- networking ----------------------------------------------------------------------------------------------------


class InvalidPort(InvalidRunOption):
    """A ``-p`` value does not parse, or names a host port the user may not bind."""


class PortInUse(SbxError):
    """A published host port is already bound by another process (maybe another container)."""


class NetworkError(SbxError):
    """The network helper (slirp4netns, pasta) is missing, failed to start, or refused a port forward."""


# --- volumes ---------------------------------------------------------------------------------------------------------


class VolumeNotFound(SbxError):
    """No named volume has that name."""

    hint = "run: sbx volume ls"


class VolumeInUse(SbxError):
    """A container still mounts the volume."""

    hint = "remove the container first (sbx rm), or use -f"


class InvalidVolumeName(SbxError):
    """A volume name is not ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``."""

    hint = "use letters, digits, '_', '.' and '-', starting with a letter or digit (at least 2 characters)"


# --- hostile neighbours ----------------------------------------------------------------------------------------------


class UnsafeRuntimeDir(SbxError):
    """The runtime dir (sockets) is not a 0700 directory of this user: another local user may have made it."""


class BindSourceChanged(RootfsError):
    """A bind mount's source is no longer the file or directory the container was created with."""
