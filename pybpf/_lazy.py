"""Package attributes imported on first use, so that importing a package does not import every module
it exports (start-up time: a tool pays only for the modules it uses)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_attributes(package: str, module_of: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: attribute `name` comes from module `module_of[name]` (a full
    name, or relative to the package when it starts with "."), and is then kept in `namespace`."""

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
