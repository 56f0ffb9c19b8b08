"""sandbox.valueclass behaves as the stdlib dataclasses it replaces, for every feature sbx declares."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import valueclass as vc


def body(field):
    class Point:
        """A point."""

        kind: ClassVar[str] = "point"
        x: int
        y: int = 0
        tags: list = field(default_factory=list)
        note: str = field(default="", compare=False, repr=False)

    return Point


def pair(**options):
    """The same class body made a stdlib dataclass and a value class (frozen unless said)."""
    frozen = options.pop("frozen", True)
    return (dataclasses.dataclass(frozen=frozen, **options)(body(dataclasses.field)),
            vc.valueclass(frozen=frozen, **options)(body(vc.field)))


values = st.tuples(st.integers(-5, 5), st.integers(-5, 5), st.lists(st.integers(0, 3), max_size=2).map(tuple),
                   st.sampled_from(["", "a"]))


@pytest.mark.parametrize("options", [{}, {"slots": True}, {"order": True}, {"frozen": False}])
@given(a=values, b=values)
def test_init_repr_eq_hash_order_replace_asdict_match_dataclasses(options, a, b):
    std, ours = pair(**options)
    for args in (a, b):
        s, o = std(*args[:3], note=args[3]), ours(*args[:3], note=args[3])
        assert repr(o) == repr(s)
        assert dataclasses.asdict(s) == vc.asdict(o)
        assert [f.name for f in dataclasses.fields(s)] == [f.name for f in vc.fields(o)]
        assert dataclasses.replace(s, y=9).y == vc.replace(o, y=9).y == 9
        assert o.__match_args__ == s.__match_args__
    sa, sb = std(*a[:3], note=a[3]), std(*b[:3], note=b[3])
    oa, ob = ours(*a[:3], note=a[3]), ours(*b[:3], note=b[3])
    assert (oa == ob) == (sa == sb)
    assert (oa == a) is False  # another type is never equal
    if options.get("frozen", True):
        assert hash(oa) == hash(sa)  # the same tuple of the same fields
    else:
        with pytest.raises(TypeError):
            hash(oa)
    if options.get("order"):
        assert (oa < ob) == (sa < sb) and (oa <= ob) == (sa <= sb)
        assert (oa > ob) == (sa > sb) and (oa >= ob) == (sa >= sb)


def test_defaults_and_factories_are_fresh_per_instance():
    _, ours = pair()
    one, two = ours(1), ours(2)
    assert one.y == 0 and one.tags == [] and one.tags is not two.tags and one.note == ""
    assert ours.kind == "point" and "kind" not in [f.name for f in vc.fields(ours)]


@pytest.mark.parametrize("call, message", [
    (lambda c: c(), "missing 1 required argument: 'x'"),
    (lambda c: c(1, 2, [], "n", 5), "takes 5 positional arguments but 6 were given"),
    (lambda c: c(1, x=2), "multiple values for argument 'x'"),
    (lambda c: c(1, z=2), "unexpected keyword argument 'z'"),
])
def test_wrong_arguments_are_a_type_error(call, message):
    _, ours = pair()
    with pytest.raises(TypeError, match=message):
        call(ours)


@pytest.mark.parametrize("options", [{}, {"slots": True}])
def test_frozen_refuses_assignment_and_deletion(options):
    _, ours = pair(**options)
    point = ours(1)
    with pytest.raises(vc.FrozenInstanceError):
        point.x = 2
    with pytest.raises(AttributeError):  # FrozenInstanceError is one, as in dataclasses
        del point.y
    with pytest.raises(AttributeError):
        point.other = 1
    assert point.x == 1


def test_mutable_allows_assignment():
    _, ours = pair(frozen=False)
    point = ours(1)
    point.x = 5
    assert point == ours(5)


def test_slots_leave_no_instance_dict_and_survive_copy_and_pickle():
    _, ours = pair(slots=True)
    point = ours(1, 2, [3], note="n")
    assert not hasattr(point, "__dict__") and ours.__slots__ == ("x", "y", "tags", "note")
    assert copy.copy(point) == point and copy.deepcopy(point) == point


def test_frozen_slotted_pickles():
    restored = pickle.loads(pickle.dumps(Pickled(1, "a")))
    assert restored == Pickled(1, "a") and restored.name == "a"


@vc.valueclass(slots=True)
class Pickled:
    """Module level, so pickle finds it."""

    number: int
    name: str


def test_post_init_runs_and_can_refuse():
    @vc.valueclass
    class Positive:
        """Checked."""

        value: int

        def __post_init__(self) -> None:
            if self.value <= 0:
                raise ValueError("not positive")

    assert Positive(1).value == 1
    with pytest.raises(ValueError, match="not positive"):
        Positive(0)
    with pytest.raises(ValueError, match="not positive"):
        vc.replace(Positive(1), value=-1)  # replace goes through __init__


def test_methods_the_class_defines_are_kept():
    @vc.valueclass
    class Named:
        """Own repr and hash."""

        name: str

        def __repr__(self) -> str:
            return "named"

        def __hash__(self) -> int:
            return 7

    assert repr(Named("a")) == "named" and hash(Named("a")) == 7


def test_field_hash_false_leaves_the_field_out_of_the_hash():
    @vc.valueclass
    class Keyed:
        """One hashed field."""

        key: str
        extra: dict = vc.field(default_factory=dict, hash=False)

    assert hash(Keyed("a", {"x": 1})) == hash(Keyed("a", {"y": 2}))


@pytest.mark.parametrize("declare, error", [
    (lambda: type("Bad", (), {"__annotations__": {"a": "int", "b": "int"}, "a": 1}), TypeError),
    (lambda: type("Bad", (), {"__annotations__": {"a": "list"}, "a": []}), ValueError),
    (lambda: type("Bad", (), {"__annotations__": {}, "a": vc.field(default=1)}), TypeError),
])
def test_declarations_dataclasses_refuses_are_refused(declare, error):
    with pytest.raises(error):
        vc.valueclass(declare())


def test_a_value_class_cannot_extend_another():
    @vc.valueclass
    class Base:
        """Base."""

        a: int

    with pytest.raises(TypeError, match="cannot inherit"):
        vc.valueclass(type("Child", (Base,), {"__annotations__": {"b": "int"}}))


def test_fields_and_asdict_refuse_other_objects():
    with pytest.raises(TypeError):
        vc.fields(object())
    with pytest.raises(TypeError):
        vc.asdict({"a": 1})


def test_instances_of_two_classes_with_the_same_fields_are_not_equal():
    first, second = vc.valueclass(body(vc.field)), vc.valueclass(body(vc.field))
    assert first(1) != second(1) and first(1) == first(1)
