"""Value classes: the records of sbx, declared as dataclasses are, built without compiling code at import time.

``@valueclass`` turns a class whose body declares annotated fields (with defaults, or :func:`field` for a factory or for
a field left out of equality, hashing or repr) into a value class: ``__init__`` taking the fields in order
(positional or keyword), ``__repr__``, ``__eq__`` over the compared fields, ``__match_args__``, a ``__post_init__``
call if the class has one, and by default frozen (assigning raises :class:`FrozenInstanceError`, an
AttributeError) and hashable over its fields. ``@valueclass(frozen=False)`` is mutable and unhashable,
``order=True`` adds ``< <= > >=`` over the fields, ``slots=True`` gives the class ``__slots__``. :func:`replace`,
:func:`fields` and :func:`asdict` work as their namesakes in :mod:`dataclasses`. A method the class defines itself is
kept, as dataclasses keeps it.

Why not :mod:`dataclasses`: it generates each class's methods as source text and compiles it when the class is
created, on every start of the interpreter (nothing of it is cached in .pyc files), and it imports :mod:`inspect`
(with ast, dis, tokenize, enum...). sbx declares some 70 value classes; on `sbx run` that was ~11 ms of import and
~21 ms of class creation, a third of the command (BENCHMARKS B1). Here the methods are shared closures over a
per-class field table: creating a class costs microseconds, and an instance is built with a few dictionary
operations more than a generated ``__init__`` would do. What dataclasses offers and sbx does not use (inheritance
between value classes, ``init=False`` fields, ``InitVar``, ``kw_only``, ``unsafe_hash``) is not offered.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs every start ~3 ms (BENCHMARKS B1)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FrozenInstanceError", "MISSING", "Field", "asdict", "field", "fields", "replace", "valueclass"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_FIELDS = "__valueclass_fields__"
_MUTABLE_DEFAULTS = (list, dict, set, bytearray)
_KEPT = ("__init__", "__repr__", "__eq__")  # generated only where the class does not define its own


class FrozenInstanceError(AttributeError):
    """An assignment to (or deletion of) a field of a frozen value class."""


class Field:
    """One field of a value class: its name, its default or default factory, and whether it takes part in the
    generated ``__repr__``, ``__eq__`` (and ordering) and ``__hash__`` (``hash=None``: as ``compare``)."""

    __slots__ = ("name", "type", "default", "default_factory", "repr", "compare", "hash")

    def __init__(self, default: Any, default_factory: Any, repr: bool, compare: bool, hash: bool | None) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = hash

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r}, "
                f"repr={self.repr}, compare={self.compare}, hash={self.hash})")


def field(*, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True, compare: bool = True,
          hash: bool | None = None) -> Any:
    """A field declaration with more than a plain default (as :func:`dataclasses.field`)."""
    return Field(default, default_factory, repr, compare, hash)


def valueclass(cls: type | None = None, /, *, frozen: bool = True, order: bool = False, slots: bool = False) -> Any:
    """Make ``cls`` a value class (see the module's docstring): ``@valueclass`` or
    ``@valueclass(frozen=..., order=..., slots=...)``."""

    def wrap(target: type) -> type:
        return _build(target, frozen=frozen, order=order, slots=slots)

    return wrap if cls is None else wrap(cls)


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    """The value class's fields, in declaration order; TypeError for anything that is not a value class."""
    try:
        return getattr(class_or_instance, _FIELDS)
    except AttributeError:
        raise TypeError("must be called with a value class or instance") from None


def replace(obj: Any, /, **changes: Any) -> Any:
    """A new instance like ``obj`` with ``changes`` applied (through ``__init__``, so ``__post_init__`` checks run)."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    values.update(changes)
    return obj.__class__(**values)


def asdict(obj: Any) -> dict[str, Any]:
    """The instance as a dict, recursively (value classes inside lists, tuples and dicts too); other values are
    deep-copied."""
    fields(obj)
    return _asdict(obj)


def _asdict(value: Any) -> Any:
    if hasattr(type(value), _FIELDS):
        return {f.name: _asdict(getattr(value, f.name)) for f in getattr(value, _FIELDS)}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_asdict(item) for item in value)
    if isinstance(value, dict):
        return type(value)((_asdict(k), _asdict(v)) for k, v in value.items())
    if value is None or isinstance(value, (str, int, float, bool, bytes, frozenset)):
        return value
    import copy

    return copy.deepcopy(value)


def _is_class_var(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return getattr(annotation, "__origin__", None) is not None and repr(annotation).startswith("typing.ClassVar")


def _collect(cls: type) -> tuple[Field, ...]:
    for base in cls.__mro__[1:]:
        if hasattr(base, _FIELDS):
            raise TypeError(f"{cls.__name__}: a value class cannot inherit from another ({base.__name__})")
    found = []
    seen_default = False
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_class_var(annotation):
            continue
        declared = cls.__dict__.get(name, MISSING)
        item = declared if isinstance(declared, Field) else Field(declared, MISSING, True, True, None)
        item.name, item.type = name, annotation
        if isinstance(item.default, _MUTABLE_DEFAULTS):
            raise ValueError(f"mutable default {type(item.default)} for field {name} is not allowed: "
                             "use default_factory")
        has_default = item.default is not MISSING or item.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {name!r} follows default argument")
        seen_default = seen_default or has_default
        found.append(item)
    for name, value in cls.__dict__.items():
        if isinstance(value, Field) and name not in {f.name for f in found}:
            raise TypeError(f"{cls.__name__}.{name} is a field() without an annotation")
    return tuple(found)


def _build(cls: type, *, frozen: bool, order: bool, slots: bool) -> type:
    table = _collect(cls)
    names = tuple(f.name for f in table)
    own = cls.__dict__
    for item in table:  # a plain default stays a class attribute (as in dataclasses); a field() declaration goes
        if isinstance(own.get(item.name), Field):
            if item.default is MISSING:
                delattr(cls, item.name)
            else:
                setattr(cls, item.name, item.default)
    if slots:
        cls = _with_slots(cls, names)
    methods: dict[str, Any] = {
        "__init__": _make_init(cls.__qualname__, table, frozen, hasattr(cls, "__post_init__")),
        "__repr__": _make_repr(tuple(f.name for f in table if f.repr)),
        "__eq__": _make_compare(tuple(f.name for f in table if f.compare), "__eq__"),
    }
    if order:
        for method in ("__lt__", "__le__", "__gt__", "__ge__"):
            if method in cls.__dict__:
                raise TypeError(f"cannot overwrite attribute {method} in class {cls.__name__}: order=True")
            methods[method] = _make_compare(tuple(f.name for f in table if f.compare), method)
    if frozen:
        for method in ("__setattr__", "__delattr__"):
            if method in cls.__dict__:
                raise TypeError(f"cannot overwrite attribute {method} in class {cls.__name__}: frozen")
        methods["__setattr__"], methods["__delattr__"] = _frozen_methods(cls, names)
        if slots:
            methods["__getstate__"], methods["__setstate__"] = _slot_state(names)
    if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
        methods["__hash__"] = (_make_hash(tuple(f.name for f in table
                                                if (f.compare if f.hash is None else f.hash)))
                               if frozen else None)
    for name, method in methods.items():
        if name in _KEPT and name in cls.__dict__:
            continue
        if method is not None:
            method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    cls.__match_args__ = names
    setattr(cls, _FIELDS, table)
    return cls


def _with_slots(cls: type, names: tuple[str, ...]) -> type:
    body = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
    body["__slots__"] = names
    slotted = type(cls)(cls.__name__, cls.__bases__, body)
    slotted.__qualname__ = cls.__qualname__
    return slotted


def _make_init(qualname: str, table: tuple[Field, ...], frozen: bool, post_init: bool):
    names = tuple(f.name for f in table)
    known = frozenset(names)
    count = len(names)
    fill = tuple((f.name, f.default, f.default_factory) for f in table
                 if f.default is not MISSING or f.default_factory is not MISSING)
    required = tuple(f.name for f in table if f.default is MISSING and f.default_factory is MISSING)
    assign = object.__setattr__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(f"{qualname}.__init__() takes {count + 1} positional arguments "
                            f"but {len(args) + 1} were given")
        values = dict(zip(names, args, strict=False))
        for name in kwargs:
            if name not in known:
                raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"{qualname}.__init__() got multiple values for argument {name!r}")
        values.update(kwargs)
        if len(values) < count:
            missing = [name for name in required if name not in values]
            if missing:
                listed = " and ".join(repr(name) for name in missing)
                raise TypeError(f"{qualname}.__init__() missing {len(missing)} required argument"
                                f"{'s' if len(missing) > 1 else ''}: {listed}")
            for name, default, factory in fill:
                if name not in values:
                    values[name] = default if factory is MISSING else factory()
        for name in names:
            assign(self, name, values[name])
        if post_init:
            self.__post_init__()

    return __init__


def _make_repr(shown: tuple[str, ...]):
    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    return __repr__


def _make_compare(compared: tuple[str, ...], operator: str):
    def key(obj: Any) -> tuple:
        return tuple(getattr(obj, name) for name in compared)

    compare = getattr(tuple, operator)

    def method(self, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return compare(key(self), key(other))

    method.__name__ = operator
    return method


def _make_hash(hashed: tuple[str, ...]):
    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in hashed))

    return __hash__


def _frozen_methods(cls: type, names: tuple[str, ...]):
    frozen_names = frozenset(names)

    def __setattr__(self, name: str, value: Any) -> None:
        if type(self) is cls or name in frozen_names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if type(self) is cls or name in frozen_names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __setattr__, __delattr__


def _slot_state(names: tuple[str, ...]):
    def __getstate__(self) -> list:
        return [getattr(self, name) for name in names]

    def __setstate__(self, state: list) -> None:
        for name, value in zip(names, state, strict=True):
            object.__setattr__(self, name, value)

    return __getstate__, __setstate__
