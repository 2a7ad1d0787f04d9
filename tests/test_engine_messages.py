"""Every message the engine raises is a template and its values
(`InvalidInput("At most {n} hours.", n=24)`), never text built beforehand:
a kiosk in another language translates the template and words the values,
and a message built with an f-string, `%`, `.format()` or `+` reaches it
already in English.

The scan reads every module under `core/` with `ast`: a call to a
`LotkeeperError` subclass (those of `core.errors` and any declared in
`core/` on top of them), or such a class's `super().__init__(...)`, whose
message argument is built is named by file and line."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import core
from core import errors

CORE_DIR = Path(core.__file__).parent
ROOT = CORE_DIR.parent

# Files whose messages are still being turned into templates (none now:
# core/devices/printer.py was the last); the scan skips them, and
# `test_the_files_not_yet_converted_still_build_messages` says when to drop one.
NOT_YET_CONVERTED: set[str] = set()


@dataclass(frozen=True)
class Message:
    """A message argument given to an engine error in `core/`."""

    path: str  # relative to the repository, e.g. "core/services/stays.py"
    line: int
    error: str  # the class called, or the class whose super().__init__ it is
    node: ast.expr
    scope: ast.AST  # the function (or module) it is in, to follow a name

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _message_index(init: object) -> int | None:
    """Where `message` sits among an `__init__`'s positional parameters
    (self left out), or None when the class words its message itself."""
    names = [
        p.name
        for p in list(inspect.signature(init).parameters.values())[1:]  # type: ignore[arg-type]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return names.index("message") if "message" in names else None


def _ast_message_index(init: ast.FunctionDef) -> int | None:
    names = [a.arg for a in [*init.args.posonlyargs, *init.args.args][1:]]
    return names.index("message") if "message" in names else None


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(CORE_DIR.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _base_name(base: ast.expr) -> str | None:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return None


def error_classes() -> dict[str, int | None]:
    """Every engine error class by name, with where its constructor takes
    the message: those of `core.errors`, then any class in `core/` that
    subclasses one of them (to any depth)."""
    found: dict[str, int | None] = {
        name: _message_index(cls.__init__)
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.LotkeeperError)
    }
    classes = [
        node
        for _, module in _modules()
        for node in ast.walk(module)
        if isinstance(node, ast.ClassDef) and node.name not in found
    ]
    grew = True
    while grew:
        grew = False
        for node in classes:
            bases = [b for b in map(_base_name, node.bases) if b in found]
            if node.name in found or not bases:
                continue
            init = next(
                (
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__"
                ),
                None,
            )
            found[node.name] = found[bases[0]] if init is None else _ast_message_index(init)
            grew = True
    return found


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _is_super_init(func: ast.expr) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "__init__"
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "super"
    )


def _argument(call: ast.Call, index: int | None) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "message":
            return keyword.value
    if index is not None and index < len(call.args):
        argument = call.args[index]
        return None if isinstance(argument, ast.Starred) else argument
    return None


def engine_messages() -> list[Message]:
    """Every message argument given to an engine error in `core/`."""
    classes = error_classes()
    found: list[Message] = []
    for path, module in _modules():
        parents = {child: node for node in ast.walk(module) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(module):
            if not isinstance(node, ast.Call):
                continue
            if _is_super_init(node.func):
                owner = _enclosing(node, parents, ast.ClassDef)
                if not isinstance(owner, ast.ClassDef):
                    continue
                known = [b for b in map(_base_name, owner.bases) if b in classes]
                if not known:
                    continue
                name, index = f"{owner.name} (super().__init__)", classes[known[0]]
            else:
                called = _called(node.func)
                if called is None or called not in classes:
                    continue
                name, index = called, classes[called]
            argument = _argument(node, index)
            if argument is not None:
                scope = _enclosing(node, parents, (ast.FunctionDef, ast.AsyncFunctionDef))
                found.append(Message(path, node.lineno, name, argument, scope or module))
    return found


def _enclosing(
    node: ast.AST, parents: dict[ast.AST, ast.AST], kind: type[ast.AST] | tuple[type[ast.AST], ...]
) -> ast.AST | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, kind):
            return node
    return None


def built(node: ast.expr, scope: ast.AST) -> bool:
    """Whether `node` builds its text from values: an f-string with a
    field, `%`, `+`, `.format()` or `.join()` (here or in what it picks
    from, `a if c else b`), or a name assigned one of those in its scope."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, (ast.Mod, ast.Add))
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join")
    if isinstance(node, ast.IfExp):
        return built(node.body, scope) or built(node.orelse, scope)
    if isinstance(node, ast.BoolOp):
        return any(built(value, scope) for value in node.values)
    if isinstance(node, ast.Name):
        return any(built(value, scope) for value in _assigned(node.id, scope))
    return False


def _assigned(name: str, scope: ast.AST) -> Iterator[ast.expr]:
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            yield node.value
        elif (
            isinstance(node, (ast.AnnAssign, ast.AugAssign))
            and isinstance(node.target, ast.Name)
            and node.target.id == name
            and node.value is not None
        ):
            # `text += ...` builds the text as surely as `text = a + b`.
            yield (
                ast.BinOp(node.target, ast.Add(), node.value)
                if isinstance(node, ast.AugAssign)
                else node.value
            )


def templates(message: Message) -> list[str]:
    """The templates a message argument can be: its text, each text it
    picks from (`a if c else b`), the texts its name is bound to in its
    scope, a parameter's default. Empty for a text only known when it
    runs (`str(exc)`)."""
    return list(_texts(message.node, message.scope))


def _texts(node: ast.expr, scope: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _texts(node.body, scope)
        yield from _texts(node.orelse, scope)
    elif isinstance(node, ast.Name):
        for value in _assigned(node.id, scope):
            yield from _texts(value, scope)
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = scope.args
            positional = [*arguments.posonlyargs, *arguments.args]
            defaults: list[tuple[ast.arg, ast.expr | None]] = [
                *zip(
                    positional[len(positional) - len(arguments.defaults) :],
                    arguments.defaults,
                    strict=True,
                ),
                *zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True),
            ]
            for parameter, default in defaults:
                if parameter.arg == node.id and default is not None:
                    yield from _texts(default, scope)


def built_messages(skip: set[str] = NOT_YET_CONVERTED) -> list[str]:
    return [
        f"{m.where}: {m.error}({ast.unparse(m.node)[:70]})"
        for m in engine_messages()
        if m.path not in skip and built(m.node, m.scope)
    ]


def test_the_scan_finds_the_engine_s_errors_and_messages() -> None:
    classes = error_classes()
    # Subclasses declared outside core.errors, and where each takes its message.
    assert {"NotAllowed", "DeliveryFailed", "TicketInAnotherAccount"} <= set(classes)
    assert classes["ReservationError"] == 1 and classes["InvalidInput"] == 0
    assert classes["LotFull"] is None  # words its message itself
    messages = engine_messages()
    assert len(messages) > 150
    assert any(m.error.startswith("TicketUnknown (super") for m in messages)


def test_the_scan_knows_a_built_message_from_a_template() -> None:
    def parse(source: str) -> tuple[ast.expr, ast.AST]:
        scope = ast.parse(source)
        last = scope.body[-1]
        assert isinstance(last, ast.Expr)
        return last.value, scope

    for source in (
        'f"At most {n} hours."',
        '"At most %d hours." % n',
        '"At most {} hours.".format(n)',
        '"At most " + str(n) + " hours."',
        '"Nothing" if n else f"At most {n} hours."',
        'text = f"At most {n} hours."\ntext',
        'text = "At most "\ntext += str(n)\ntext',
    ):
        assert built(*parse(source)), source
    for source in (
        '"At most {n} hours."',
        'f"At most 24 hours."',
        '"Nothing" if n else "At most {n} hours."',
        'text = "At most {n} hours."\ntext',
    ):
        assert not built(*parse(source)), source


def test_a_message_s_templates_are_found_through_choices_names_and_defaults() -> None:
    by_error: dict[str, set[str]] = {}
    for message in engine_messages():
        by_error.setdefault(message.error.split(" ")[0], set()).update(templates(message))
    assert "Nothing to pay: you may leave until {time}." in by_error["NothingToPay"]
    assert "Nothing to pay: you may leave now." in by_error["NothingToPay"]
    # SignInFailed's own message is its parameter's default.
    assert (
        "That email and password do not match an account. Please try again."
        in by_error["SignInFailed"]
    )


def test_every_engine_message_is_a_template_with_its_values() -> None:
    found = built_messages()
    assert not found, "messages built before the error is made:\n" + "\n".join(found)


def test_the_files_not_yet_converted_still_build_messages() -> None:
    # When this fails, that file's messages are templates: drop it from NOT_YET_CONVERTED.
    left = {line.split(":")[0] for line in built_messages(skip=set())}
    assert left >= NOT_YET_CONVERTED
