"""Frozen dataclasses without generated code: :class:`Frozen` and the :func:`frozen` decorator.

``@dataclass(frozen=True)`` compiles five to six methods (``__init__``, ``__repr__``,
``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``) for each class when its module is
imported: about 4.5 million instructions a class on CPython 3.11, most of the plugin's import
cost with the settings' ~20 classes and the ones of haproxy/runtime.py, haproxy/instances.py
... that every session imports (issue 21, benchmarks/plugin_overhead.py). ``@frozen`` on a
subclass of :class:`Frozen` gives the same behaviour from methods written once.
"""

from __future__ import annotations

import dataclasses
import reprlib
from dataclasses import MISSING, FrozenInstanceError
from typing import Any, ClassVar, TypeVar, dataclass_transform

__all__ = ["Frozen", "frozen"]

_F = TypeVar("_F", bound="type[Frozen]")


class Frozen:
    """The methods a frozen dataclass generates, written once: read-only attributes,
    construction by position or keyword with defaults, ``==``/hash/repr over the fields.

    A class made with :func:`frozen` is a dataclass all the same (``dataclasses.fields``,
    ``replace``, ``asdict`` and ``is_dataclass`` work; mypy checks it as a frozen dataclass)
    with these methods instead of generated ones.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    # (name, default, default_factory, init) of each field, in declaration order
    _frozen_init: ClassVar[tuple[tuple[str, Any, Any, bool], ...]]
    _frozen_compare: ClassVar[tuple[str, ...]]
    _frozen_hash: ClassVar[tuple[str, ...]]
    _frozen_repr: ClassVar[tuple[str, ...]]
    _frozen_post_init: ClassVar[bool]  # the class has a __post_init__ of its own

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            kwargs = self._frozen_keywords(args, kwargs)
        name = type(self).__qualname__
        store = object.__setattr__
        for key, default, factory, init in self._frozen_init:
            if init and key in kwargs:
                value = kwargs.pop(key)
            elif default is not MISSING:
                value = default
            elif factory is not MISSING:
                value = factory()
            elif init:
                raise TypeError(f"{name}() missing required argument: {key!r}")
            else:
                continue
            store(self, key, value)
        if kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument {next(iter(kwargs))!r}")
        if self._frozen_post_init:
            self.__post_init__()

    @classmethod
    def _frozen_keywords(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments given by position named as their fields, beside the keywords."""
        positional = [name for name, _, _, init in cls._frozen_init if init]
        name = cls.__qualname__
        if len(args) > len(positional):
            raise TypeError(
                f"{name}() takes {len(positional)} positional arguments but {len(args)} were given"
            )
        for key, value in zip(positional, args, strict=False):
            if key in kwargs:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            kwargs[key] = value
        return kwargs

    def __post_init__(self) -> None:
        """What a dataclass's ``__post_init__`` does, after the fields are set: none here."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = self._frozen_compare
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in self._frozen_hash))

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._frozen_repr)
        return f"{type(self).__qualname__}({shown})"


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen(cls: _F) -> _F:
    """``@dataclass(frozen=True)`` for a subclass of :class:`Frozen`, without generated code:
    the dataclass machinery records the fields (no ``__init__``, ``__eq__``, ``__repr__`` or
    ``__setattr__`` is compiled), :class:`Frozen`'s methods read them."""
    if not issubclass(cls, Frozen):
        raise TypeError(f"@frozen needs a subclass of Frozen, got {cls.__qualname__}")
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cls)
    seen_default = ""
    for f in fields:
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if f.kw_only is True:
            raise TypeError(f"{cls.__qualname__}.{f.name}: @frozen has no keyword-only fields")
        if f.init and has_default:
            seen_default = f.name
        elif f.init and seen_default:
            raise TypeError(
                f"{cls.__qualname__}: field {f.name!r} without a default follows "
                f"{seen_default!r}, which has one"
            )
    cls._frozen_init = tuple((f.name, f.default, f.default_factory, f.init) for f in fields)
    cls._frozen_compare = tuple(f.name for f in fields if f.compare)
    cls._frozen_hash = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    cls._frozen_repr = tuple(f.name for f in fields if f.repr)
    cls._frozen_post_init = cls.__post_init__ is not Frozen.__post_init__
    return cls
