"""Start-up helpers: package attributes imported on first use, so that importing a package does not import
every module it exports (a tool pays only for the modules it uses), instance attributes built on first use
(`defer`), and a `cache` decorator that does not import functools."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar


def lazy_attributes(package: str, module_of: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: attribute `name` comes from module `module_of[name]` (a full
    name, or relative to the package when it starts with "."), and is then kept in `namespace`."""

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        full = package + module if module.startswith(".") else module
        __import__(full)  # not importlib.import_module: importing importlib costs ~0.5 ms of start-up
        value = getattr(sys.modules[full], name)
        namespace[name] = value
        return value

    return __getattr__


def defer(obj: object, name: str, build: Callable[[], Any]) -> None:
    """Leave attribute `name` of `obj` unset until it is read: then `build()` makes it (see `build_deferred`,
    which the class's `__getattr__` calls). A collection replayed from a cached load plan builds its specs
    and BTF codecs this way, from the object file, only when asked for."""
    obj.__dict__.pop(name, None)
    obj.__dict__["_build_" + name] = build


def build_deferred(obj: object, name: str) -> Any:
    """For a class's `__getattr__`: attribute `name` of `obj` made by the function `defer` left for it, and
    kept in `obj` from then on. AttributeError when nothing was deferred under that name; a build that
    raises stays deferred (asking again raises again)."""
    build = obj.__dict__.get("_build_" + name)
    if build is None:
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")
    value = build()
    del obj.__dict__["_build_" + name]
    setattr(obj, name, value)
    return value


if TYPE_CHECKING:
    from typing import Generic, ParamSpec

    _P = ParamSpec("_P")
    _R = TypeVar("_R")

    class _Cached(Generic[_P, _R]):  # what `cache` returns, for the type checker only
        def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
        def cache_clear(self) -> None: ...


def cache(function: Callable[_P, _R]) -> _Cached[_P, _R]:
    """`functools.cache` for modules on the start-up path: `import functools` costs ~2 ms (it imports
    `collections`), a fifth of what loading a cached object takes. Positional, hashable arguments only;
    `cache_clear()` empties it."""
    results: dict[tuple[Any, ...], Any] = {}
    call: Callable[..., Any] = function  # positional arguments only

    def cached(*args: Any) -> Any:
        try:
            return results[args]
        except KeyError:
            value = results[args] = call(*args)
            return value

    cached.cache_clear = results.clear  # type: ignore[attr-defined]
    cached.__wrapped__ = function  # type: ignore[attr-defined]
    cached.__name__ = function.__name__
    cached.__qualname__ = function.__qualname__
    cached.__doc__ = function.__doc__
    return cached  # type: ignore[return-value]
