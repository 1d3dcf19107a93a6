"""Every error code the package can produce is registered once, in ``faceatlas.errors.ERROR_CODES``."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import faceatlas
from faceatlas import errors
from faceatlas.server import errors as server_errors

SRC = Path(faceatlas.__file__).resolve().parent
#: Roots of the exception family whose codes have dedicated subclasses.
_LIBRARY_ROOT = "FaceAtlasError"
#: Codes that must be raised through their own subclass, never spelled out in another constructor.
_DEDICATED = {"no_face": "NoFaceError", "not_found": "NotFoundError"}


@dataclass(frozen=True)
class Use:
    """One place where a literal code is given to a constructor or set as a class attribute."""

    code: str
    where: str
    callee: str


@dataclass
class _Callable:
    """How a callable takes its code: the positional index (None: keyword only) and its base classes."""

    index: int | None
    bases: tuple[str, ...] = ()


@dataclass
class _Module:
    """A parsed source file and its display name."""

    tree: ast.Module
    name: str
    assigns: dict[str, list[ast.expr]] = field(default_factory=dict)


def _name(node: ast.expr) -> str | None:
    """The last dotted part of a callee or base (``errors.ImageError`` -> ``ImageError``)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return None


def _assigns(body: Iterable[ast.AST]) -> dict[str, list[ast.expr]]:
    """Values assigned to each plain name anywhere under ``body``."""
    out: dict[str, list[ast.expr]] = defaultdict(list)
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        out[target.id].append(node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                out[node.target.id].append(node.value)
    return out


def _code_index(args: ast.arguments, method: bool) -> int | None | bool:
    """Position of the ``code`` parameter (None when keyword-only; False when there is none)."""
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if method and positional and positional[0] in ("self", "cls"):
        positional = positional[1:]
    if "code" in positional:
        return positional.index("code")
    if any(a.arg == "code" for a in args.kwonlyargs):
        return None
    return False


def _is_dataclass(cls: ast.ClassDef) -> bool:
    """Whether a class gets a generated ``__init__`` from its annotated fields."""
    names = {_name(d) for d in cls.decorator_list} | {_name(b) for b in cls.bases}
    return bool(names & {"dataclass", "NamedTuple"})


def _signatures(modules: list[_Module]) -> dict[str, _Callable]:
    """Every function, method or class (by its last name) that takes a ``code``, subclasses included."""
    found: dict[str, _Callable] = {}
    classes: dict[str, tuple[str, ...]] = {}
    for mod in modules:
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.ClassDef):
                bases = tuple(b for b in map(_name, node.bases) if b)
                classes[node.name] = bases
                init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
                if init is not None:
                    index = _code_index(init.args, method=True)
                    if index is not False:
                        found[node.name] = _Callable(index if isinstance(index, int) else None, bases)
                    else:  # its own __init__ hides the code (NoFaceError); remember the class as a family member
                        found.setdefault(node.name, _Callable(-1, bases))
                elif _is_dataclass(node):
                    fields = [s.target.id for s in node.body if isinstance(s, ast.AnnAssign)
                              and isinstance(s.target, ast.Name) and "ClassVar" not in ast.unparse(s.annotation)]
                    if "code" in fields:
                        found[node.name] = _Callable(fields.index("code"), bases)
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name != "__init__":
                        index = _code_index(item.args, method=True)
                        if index is not False:
                            found.setdefault(item.name, _Callable(index if isinstance(index, int) else None))
        for node in mod.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                index = _code_index(node.args, method=False)
                if index is not False:
                    found.setdefault(node.name, _Callable(index if isinstance(index, int) else None))
    aliases = {stmt.targets[0].id: alias for mod in modules for stmt in mod.tree.body
               if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
               and (alias := _name(stmt.value)) is not None and isinstance(stmt.value, (ast.Name, ast.Attribute))}
    changed = True
    while changed:  # classes without their own __init__ take their base's signature; aliases (A = B) take B's
        changed = False
        for name, bases in [*classes.items(), *((a, (b,)) for a, b in aliases.items())]:
            if name in found:
                continue
            for base in bases:
                if base in found:
                    found[name] = _Callable(found[base].index, bases)
                    changed = True
                    break
    return found


def _takes_code(name: str, sigs: dict[str, _Callable]) -> bool:
    """Whether a class, or one of its bases, is built with a code."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in sigs:
            continue
        seen.add(current)
        if sigs[current].index != -1:
            return True
        todo.extend(sigs[current].bases)
    return False


def _family(name: str, sigs: dict[str, _Callable], root: str = _LIBRARY_ROOT) -> bool:
    """Whether class ``name`` is ``root`` or derives from it."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current == root:
            return True
        if current in seen or current not in sigs:
            continue
        seen.add(current)
        todo.extend(sigs[current].bases)
    return False


def _strings(expr: ast.expr, scopes: list[dict[str, list[ast.expr]]], depth: int = 0) -> set[str]:
    """The string literals an expression can evaluate to (names resolved in the enclosing scopes)."""
    if depth > 4:
        return set()
    if isinstance(expr, ast.Constant):
        return {expr.value} if isinstance(expr.value, str) else set()
    if isinstance(expr, ast.IfExp):
        return _strings(expr.body, scopes, depth + 1) | _strings(expr.orelse, scopes, depth + 1)
    if isinstance(expr, ast.BoolOp):
        return set().union(*(_strings(v, scopes, depth + 1) for v in expr.values))
    if isinstance(expr, ast.Dict):  # a lookup table: its values are the codes
        return set().union(set(), *(_strings(v, scopes, depth + 1) for v in expr.values))
    if isinstance(expr, ast.Name):
        for scope in scopes:
            if expr.id in scope:
                return set().union(*(_strings(v, scopes, depth + 1) for v in scope[expr.id]))
        return set()
    if isinstance(expr, ast.Subscript):  # TABLE[key]
        return _strings(expr.value, scopes, depth + 1)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "get":
        out = _strings(expr.func.value, scopes, depth + 1)  # TABLE.get(key, default)
        for arg in expr.args[1:]:
            out |= _strings(arg, scopes, depth + 1)
        return out
    return set()


def _code_arg(call: ast.Call, index: int | None) -> ast.expr | None:
    """The expression a call passes as its code."""
    for kw in call.keywords:
        if kw.arg == "code":
            return kw.value
    if index is not None and 0 <= index < len(call.args) and not any(
            isinstance(a, ast.Starred) for a in call.args[:index + 1]):
        return call.args[index]
    return None


def _walk_scopes(node: ast.AST, scopes: list[dict[str, list[ast.expr]]],
                 cls: str | None) -> Iterator[tuple[ast.AST, list[dict[str, list[ast.expr]]], str | None]]:
    """Every node with the assignment scopes (innermost first) and the enclosing class name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = [_assigns(child.body), *scopes]
            yield child, inner, cls
            yield from _walk_scopes(child, inner, cls)
        elif isinstance(child, ast.ClassDef):
            yield child, scopes, child.name
            yield from _walk_scopes(child, scopes, child.name)
        else:
            yield child, scopes, cls
            yield from _walk_scopes(child, scopes, cls)


def collect(modules: list[_Module]) -> list[Use]:
    """Every literal code given to a code-taking constructor or function, or set as an error class's ``code``."""
    sigs = _signatures(modules)
    uses: list[Use] = []
    for mod in modules:
        top = [_assigns(s for s in mod.tree.body if isinstance(s, (ast.Assign, ast.AnnAssign)))]
        for node, scopes, cls in _walk_scopes(mod.tree, top, None):
            where = f"{mod.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ClassDef) and _takes_code(node.name, sigs):
                for stmt in node.body:  # class attribute: code = "..." / code: str = "..."
                    target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else (
                        stmt.target if isinstance(stmt, ast.AnnAssign) else None)
                    value = getattr(stmt, "value", None)
                    if isinstance(target, ast.Name) and target.id == "code" and value is not None:
                        for code in _strings(value, scopes):
                            uses.append(Use(code, f"{mod.name}:{stmt.lineno}", node.name))
                continue
            if not isinstance(node, ast.Call):
                continue
            callee = _name(node.func)
            if (callee == "__init__" and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call)
                    and _name(node.func.value.func) == "super" and cls in sigs):
                base = next((b for b in sigs[cls].bases if b in sigs and sigs[b].index != -1), None)
                if base is None:
                    continue
                sig, label = sigs[base], f"{cls} (super)"
            elif callee in sigs and sigs[callee].index != -1:
                sig, label = sigs[callee], callee
            else:
                continue
            arg = _code_arg(node, sig.index)
            if arg is not None:
                uses.extend(Use(code, where, label) for code in sorted(_strings(arg, scopes)))
    return uses


def compared(modules: list[_Module]) -> list[Use]:
    """Literal codes that handlers compare an error's ``.code`` with (``exc.code == "x"``, ``exc.code in ("x", "y")``)."""
    uses: list[Use] = []
    for mod in modules:
        for node in ast.walk(mod.tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if not any(isinstance(side, ast.Attribute) and side.attr == "code" for side in sides):
                continue
            for side in sides:
                items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                uses.extend(Use(item.value, f"{mod.name}:{node.lineno}", "comparison") for item in items
                            if isinstance(item, ast.Constant) and isinstance(item.value, str))
    return uses


def parse(files: Iterable[Path], root: Path) -> list[_Module]:
    """Parse source files for :func:`collect`."""
    return [_Module(ast.parse(p.read_text(encoding="utf-8"), filename=str(p)), str(p.relative_to(root)))
            for p in sorted(files)]


def _package_uses() -> list[Use]:
    """Every code use in the installed package's sources."""
    return collect(parse(SRC.rglob("*.py"), SRC.parent))


def _report(by_code: dict[str, list[str]]) -> str:
    """One line per code with where it is used."""
    return "\n".join(f"  {code}: {', '.join(sorted(set(places)))}" for code, places in sorted(by_code.items()))


def test_every_code_used_in_the_package_is_registered() -> None:
    """Every literal code given to an error, Rejection or error helper is in ERROR_CODES."""
    missing: dict[str, list[str]] = defaultdict(list)
    for use in _package_uses():
        if use.code not in errors.ERROR_CODES:
            missing[use.code].append(f"{use.where} ({use.callee})")
    assert not missing, "codes used but not listed in faceatlas.errors.ERROR_CODES:\n" + _report(missing)


def test_codes_that_handlers_test_for_are_registered() -> None:
    """A handler comparing ``exc.code`` with a literal names a registered code (a typo would never match)."""
    missing: dict[str, list[str]] = defaultdict(list)
    uses = compared(parse(SRC.rglob("*.py"), SRC.parent))
    assert any(u.code == "conflict" for u in uses)  # the server's enrol handler
    for use in uses:
        if use.code not in errors.ERROR_CODES:
            missing[use.code].append(use.where)
    assert not missing, "codes compared with but not listed in faceatlas.errors.ERROR_CODES:\n" + _report(missing)


def test_collector_sees_every_way_of_giving_a_code() -> None:
    """The scan finds codes in each form the package uses (so the registry test cannot pass vacuously)."""
    seen = {(u.code, u.callee.split(" ")[0]) for u in _package_uses()}
    codes = {c for c, _ in seen}
    assert ("no_face", "NoFaceError") in seen  # through the dedicated subclass's super().__init__
    assert ("not_found", "NotFoundError") in seen
    assert ("duplicate_image", "Rejection") in seen  # a dataclass with a code field
    assert ("busy", "ApiError") in seen  # the server's error
    assert {"model_checksum", "model_download"} <= codes  # through a local variable and a conditional
    assert {"rate_limited", "method_not_allowed"} <= codes  # through a status -> code lookup table
    assert any(callee == "ImageError" for _, callee in seen)
    assert len(codes) >= 40


def test_the_scan_reports_unregistered_codes_and_where(tmp_path: Path) -> None:
    """A made-up module with unknown codes in every form is caught, with file and line."""
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "mod.py").write_text(
        "from faceatlas.errors import FaceAtlasError, ImageError\n"
        "from dataclasses import dataclass\n"
        "class MyError(ImageError):\n"
        "    code = 'zz_attr'\n"
        "@dataclass\n"
        "class Rejection:\n"
        "    image: str\n"
        "    code: str\n"
        "Problem = Rejection\n"
        "def fail(status: int, code: str, message: str) -> None: ...\n"
        "TABLE = {1: 'zz_table'}\n"
        "def f(flag: bool) -> None:\n"
        "    code = 'zz_a' if flag else 'zz_b'\n"
        "    Rejection('x', 'zz_rejection')\n"
        "    Problem('x', 'zz_alias')\n"
        "    fail(400, TABLE.get(1, 'zz_default'), 'm')\n"
        "    raise MyError(code, 'm')\n"
        "def g() -> None:\n"
        "    raise FaceAtlasError(code='zz_kw', message='m')\n",
        encoding="utf-8")
    modules = parse([src / "mod.py"], tmp_path) + parse([SRC / "errors.py"], SRC.parent)
    uses = {u.code: u.where for u in collect(modules) if u.code.startswith("zz_")}
    assert uses == {"zz_attr": "pkg/mod.py:4", "zz_rejection": "pkg/mod.py:14", "zz_alias": "pkg/mod.py:15",
                    "zz_table": "pkg/mod.py:16", "zz_default": "pkg/mod.py:16", "zz_a": "pkg/mod.py:17",
                    "zz_b": "pkg/mod.py:17", "zz_kw": "pkg/mod.py:19"}


def test_server_codes_are_in_the_one_registry() -> None:
    """The server's own codes and its status table use only registered codes."""
    server_only = set(server_errors.SERVER_ERROR_CODES)
    assert not server_only - set(errors.ERROR_CODES), sorted(server_only - set(errors.ERROR_CODES))
    statuses = set(getattr(server_errors, "_LIBRARY_STATUS", {}))
    assert not statuses - set(errors.ERROR_CODES), sorted(statuses - set(errors.ERROR_CODES))


def test_registry_entries_are_stable_identifiers_with_one_line_descriptions() -> None:
    """Codes are snake_case and each has a one-line description."""
    for code, text in errors.ERROR_CODES.items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", code), code
        assert text.strip() and "\n" not in text, code


def test_codes_use_their_subclass() -> None:
    """``no_face`` is raised only as NoFaceError and ``not_found`` only as NotFoundError."""
    modules = parse(SRC.rglob("*.py"), SRC.parent)
    sigs = _signatures(modules)
    wrong: dict[str, list[str]] = defaultdict(list)
    for use in collect(modules):
        callee = use.callee.split(" ")[0]
        own = _DEDICATED.get(use.code)
        if own is not None and callee != own and _family(callee, sigs):
            wrong[use.code].append(f"{use.where} ({use.callee}, use {own})")
    assert not wrong, "codes with a dedicated subclass raised through another class:\n" + _report(wrong)
