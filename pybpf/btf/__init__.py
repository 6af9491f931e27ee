"""BTF: parsing, the type model, CO-RE and the value codec."""

from pybpf._lazy import lazy_attributes
from pybpf.btf.spec import Spec, kernel_spec, load_cached, module_spec
from pybpf.btf.types import (
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Param,
    Pointer,
    Qualifier,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
    alignof,
    sizeof,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.btf.by_id import btf_by_id

# Imported on first use (pybpf.btf.by_id needs the bpf() syscall layer).
__getattr__ = lazy_attributes(__name__, {"btf_by_id": ".by_id"}, globals())

__all__ = [
    "Array", "Composite", "Const", "Datasec", "DeclTag", "Enum", "EnumValue", "Float", "Func", "FuncProto",
    "Fwd", "Int", "Kind", "Member", "Param", "Pointer", "Qualifier", "Restrict", "Spec", "Struct", "Type",
    "TypeTag", "Typedef", "Union", "Var", "VarSecinfo", "Void", "Volatile", "alignof", "btf_by_id", "kernel_spec",
    "load_cached", "module_spec", "sizeof",
]
