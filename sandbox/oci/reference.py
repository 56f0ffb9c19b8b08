"""Image references, normalised the way Docker does.

``nginx`` is ``docker.io/library/nginx:latest``; ``host:5000/a/b:tag`` names a registry by its first component
when that contains a ``.`` or a ``:``, is ``localhost``, or has upper-case letters; ``name@sha256:…`` pins a
digest (and a tag given beside a digest is kept only for display, as Docker does).
The grammar follows distribution's ``reference`` package.
"""

from __future__ import annotations

import re

from sandbox.errors import InvalidReference
from sandbox.oci.digest import Digest
from sandbox.valueclass import valueclass

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # not \w: that matches Unicode letters
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?")
_NAME_MAX = 255


@valueclass(slots=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: bool = True) -> Reference:
        if not isinstance(text, str) or not text:
            raise InvalidReference("invalid reference format: empty name")
        if len(text) > 512 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in text):
            raise InvalidReference(f"invalid reference format: {text[:80]!r}")
        name, at, digest_text = text.partition("@")
        digest = None
        if at:
            try:
                digest = Digest.parse(digest_text)
            except Exception as exc:
                raise InvalidReference(f"invalid reference format: {exc}") from None
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise InvalidReference(f"invalid reference format: bad tag {tag!r}")
        registry, repository = _split_registry(name)
        if not repository:
            raise InvalidReference(f"invalid reference format: {text!r} has no repository")
        for component in repository.split("/"):
            if not _COMPONENT.fullmatch(component):
                if component.lower() != component:
                    raise InvalidReference(
                        f"invalid reference format: repository name {repository!r} must be lowercase"
                    )
                raise InvalidReference(f"invalid reference format: bad repository component {component!r}")
        if len(registry) + 1 + len(repository) > _NAME_MAX:
            raise InvalidReference("invalid reference format: repository name is longer than 255 characters")
        if tag is None and digest is None and default_tag:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """registry/repository, fully qualified."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it: docker.io/library/ dropped."""
        if self.registry == DEFAULT_REGISTRY:
            remainder = self.repository.removeprefix("library/")
            return remainder if "/" not in remainder else self.repository
        return self.name

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return str(self.digest) if self.digest else (self.tag or DEFAULT_TAG)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def _suffixed(self, name: str) -> str:
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self._suffixed(self.name)

    @property
    def familiar(self) -> str:
        return self._suffixed(self.familiar_name)


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        if not _DOMAIN.fullmatch(first):
            raise InvalidReference(f"invalid reference format: bad registry host {first!r}")
        registry, repository = first, rest
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry in _LEGACY_REGISTRIES:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository


def parse_repository(text: str) -> Reference:
    """A repository name with neither tag nor digest (for `search`, `login` scopes and tag targets)."""
    return Reference.parse(text, default_tag=False)
