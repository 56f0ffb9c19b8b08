"""What the API answers when something fails: an HTTP status and Docker's JSON body ``{"message": ...}``."""

from __future__ import annotations

from sandbox.errors import (
    AmbiguousContainer,
    AmbiguousImage,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerRunning,
    ImageInUse,
    ImageNotFound,
    InvalidCommand,
    InvalidContainerName,
    InvalidEnv,
    InvalidHostname,
    InvalidReference,
    InvalidRunOption,
    InvalidSecurityProfile,
    InvalidUser,
    LimitUnavailable,
    NameInUse,
    NoCommand,
    SbxError,
)


class ApiError(Exception):
    """A request the API answers with ``status`` and ``{"message": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def unsupported(field: str, why: str = "is not supported by sbx") -> ApiError:
    return ApiError(400, f"{field} {why}")


# Docker's status for each failure a client can act on; anything else is a 500
_STATUS = (
    ((ContainerNotFound, ImageNotFound), 404),
    ((NameInUse, ContainerRunning, ImageInUse, ContainerNotRunning), 409),
    (
        (InvalidRunOption, InvalidUser, InvalidEnv, InvalidHostname, InvalidCommand, InvalidContainerName,
         InvalidReference, NoCommand, AmbiguousContainer, AmbiguousImage, InvalidSecurityProfile, LimitUnavailable),
        400,
    ),
)


def status_of(error: SbxError) -> int:
    for kinds, status in _STATUS:
        if isinstance(error, kinds):
            return status
    return 500


def message_of(error: SbxError) -> str:
    return f"{error.message}: {error.hint}" if error.hint else error.message
