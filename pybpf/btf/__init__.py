"""BTF: parsing, the type model, CO-RE and the value codec."""

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

__all__ = [
    "Array", "Composite", "Const", "Datasec", "DeclTag", "Enum", "EnumValue", "Float", "Func", "FuncProto",
    "Fwd", "Int", "Kind", "Member", "Param", "Pointer", "Qualifier", "Restrict", "Spec", "Struct", "Type",
    "TypeTag", "Typedef", "Union", "Var", "VarSecinfo", "Void", "Volatile", "alignof", "kernel_spec",
    "load_cached", "module_spec", "sizeof",
]
