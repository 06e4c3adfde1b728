"""Device script checking and compilation.

A script is the body of an ``async`` function; it is parsed, checked and
compiled once per plan block. ``compile_script`` raises ``ScriptError`` listing
every problem in line order, each with its line and column: a syntax error (only
the first: Python cannot read past it), a protocol function the plan's protocol
does not have, an I/O function used without ``await``, or a name that nothing
defines (a mistyped function, a module not imported).
"""
import ast
import builtins
import dataclasses
import difflib
import sys

from . import api

SCRIPT_FILENAME = "<script>"
SCRIPT_FUNCTION = "__stressgrid_script__"
SCRIPT_ARGUMENTS = ("params", "device_id", "row")

# An I/O call passed straight to one of these is awaited by it.
_AWAITING_WRAPPERS = frozenset({
    "wait_for", "gather", "shield", "create_task", "ensure_future", "timeout",
})


# Names a script may use without defining them besides Python's builtins (__class__:
# inside a method).
_IMPLICIT_NAMES = frozenset({"__name__", "__builtins__", "__class__"})
# A script calling one of these may define names the checker cannot see.
_DYNAMIC_NAMESPACE = frozenset({"exec", "eval", "globals", "locals", "vars", "__import__"})


@dataclasses.dataclass(frozen=True)
class ScriptProblem:
    """One mistake in a script; ``line`` and ``column`` are 1-based (``None``: the whole script)."""

    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self):
        if self.line is None:
            return self.message
        where = f"line {self.line}" + (f", column {self.column}" if self.column is not None else "")
        return f"{where}: {self.message}"

    def to_dict(self):
        return {"message": self.message, "line": self.line, "column": self.column}


class ScriptError(ValueError):
    """A script that cannot run: ``problems`` in line order; ``message``, ``line`` and
    ``column`` are those of the first."""

    def __init__(self, problems):
        self.problems = tuple(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
        first = self.problems[0]
        self.message, self.line, self.column = first.message, first.line, first.column
        super().__init__(str(self))

    def __str__(self):
        return "; ".join(str(problem) for problem in self.problems)


def _problem_at(message, node):
    return ScriptProblem(message, node.lineno, node.col_offset + 1)


def _syntax_problem(exc):
    return ScriptProblem(f"syntax error: {exc.msg}", exc.lineno, exc.offset)


class _BoundNames(ast.NodeVisitor):
    """Every name the script binds anywhere: those shadow builtins."""

    def __init__(self):
        self.names = set()

    def visit_Name(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.names.add(node.id)

    def _visit_function(self, node):
        self.names.add(node.name)
        arguments = node.args
        for argument in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
            self.names.add(argument.arg)
        for argument in (arguments.vararg, arguments.kwarg):
            if argument is not None:
                self.names.add(argument.arg)
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def visit_Lambda(self, node):
        for argument in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            self.names.add(argument.arg)
        self.generic_visit(node)

    def visit_ClassDef(self, node):
        self.names.add(node.name)
        self.generic_visit(node)

    def visit_alias(self, node):
        self.names.add((node.asname or node.name).split(".")[0])

    def visit_ExceptHandler(self, node):
        if node.name:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node):
        if node.name:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node):
        if node.name:
            self.names.add(node.name)

    def visit_MatchMapping(self, node):
        if node.rest:
            self.names.add(node.rest)
        self.generic_visit(node)


class _Checker(ast.NodeVisitor):
    def __init__(self, protocol, shadowed):
        self.protocol = protocol
        self.shadowed = shadowed
        self.async_names = api.protocol_async_functions(protocol) - shadowed
        self.sync_names = api.protocol_sync_functions(protocol) - shadowed
        self.foreign = (api.ALL_PROTOCOL_FUNCTIONS - self.async_names - self.sync_names) - shadowed
        self.awaited = set()
        self.function_depth = 0
        self.problems = []
        self.reported_names = set()  # ids of the Name nodes a problem is already about

    def _fail(self, message, node):
        self.problems.append(_problem_at(message, node))

    def visit_Await(self, node):
        self.awaited.add(id(node.value))
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        wrapper = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if wrapper in _AWAITING_WRAPPERS:
            for argument in node.args:
                self.awaited.add(id(argument))
        if isinstance(func, ast.Name):
            name = func.id
            if name in self.foreign:
                self.reported_names.add(id(func))
                self._fail(
                    f"{name}() is not available for protocol {self.protocol!r} "
                    f"(it has {api.protocol_description(self.protocol)})", node)
            if name in self.async_names and id(node) not in self.awaited:
                self._fail(f"{name}() must be awaited: write 'await {name}(...)'", node)
        self.generic_visit(node)

    def visit_Yield(self, node):
        self._check_yield(node)

    def visit_YieldFrom(self, node):
        self._check_yield(node)

    def _check_yield(self, node):
        if self.function_depth == 0:
            self._fail("'yield' is not allowed at the top level of a script", node)
        self.generic_visit(node)

    def _visit_function(self, node):
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function


def _sync_builtin_awaits(tree, sync_names):
    """A problem for every ``await`` of a function that returns at once."""
    return [_problem_at(f"{node.value.func.id}() returns at once and must not be awaited", node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Await) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id in sync_names]


def _undefined_names(tree, protocol, bound, reported):
    """A problem for every use of a name neither bound by the script nor available to it
    (but those in ``reported``, ids of nodes another problem is about).

    Conservative: every name bound anywhere in the script counts as defined, and a
    script that can define names dynamically is not checked.
    """
    python_names = frozenset(dir(builtins))
    available = python_names | _IMPLICIT_NAMES | set(SCRIPT_ARGUMENTS) | api.protocol_functions(protocol)
    loaded = [node for node in ast.walk(tree)
              if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)]
    if any(node.id in _DYNAMIC_NAMESPACE for node in loaded):
        return []
    known = available | bound
    problems = []
    for node in loaded:
        if node.id in known or id(node) in reported:
            continue
        message = f"name {node.id!r} is not defined"
        if node.id in sys.stdlib_module_names:
            message += f"; add 'import {node.id}' to the script"
        else:
            # The script's own and Stressgrid's names first: 'gett' means get, not getattr.
            close = (difflib.get_close_matches(node.id, sorted(known - python_names), n=1)
                     or difflib.get_close_matches(node.id, sorted(python_names), n=1))
            if close:
                message += f"; did you mean {close[0]!r}?"
        problems.append(_problem_at(message, node))
    return problems


def _wrapped_module(source, protocol):
    """``(module AST wrapping the script in its function, problems found)``; a source that
    cannot be parsed raises ``ScriptError`` at once."""
    if not isinstance(source, str):
        raise ScriptError([ScriptProblem("script must be text")])
    if protocol not in api.PROTOCOLS:
        raise ScriptError([ScriptProblem(
            f"unknown protocol {protocol!r}; expected one of {', '.join(api.PROTOCOLS)}")])
    try:
        tree = ast.parse(source, filename=SCRIPT_FILENAME)
    except SyntaxError as exc:
        raise ScriptError([_syntax_problem(exc)]) from None
    bound = _BoundNames()
    bound.visit(tree)
    bound_names = frozenset(bound.names)
    checker = _Checker(protocol, bound_names)
    # Awaits are seen before their calls because ast visits parents first.
    checker.visit(tree)
    problems = [*checker.problems, *_sync_builtin_awaits(tree, checker.sync_names),
                *_undefined_names(tree, protocol, bound_names, checker.reported_names)]

    arguments = ast.arguments(
        posonlyargs=[], args=[ast.arg(arg=name) for name in SCRIPT_ARGUMENTS],
        vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    function = ast.AsyncFunctionDef(
        name=SCRIPT_FUNCTION, args=arguments, body=tree.body or [ast.Pass()],
        decorator_list=[], returns=None, type_comment=None, type_params=[],
        lineno=1, col_offset=0)
    module = ast.Module(body=[function], type_ignores=[])
    ast.fix_missing_locations(module)
    return module, problems


def compile_script(source, protocol):
    """Check ``source`` and return its code object (a module defining the script); raises
    ``ScriptError`` with every problem found."""
    module, problems = _wrapped_module(source, protocol)
    code = None
    try:
        code = compile(module, SCRIPT_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:  # what only the compiler sees ('nonlocal' at the top level...)
        problems.append(_syntax_problem(exc))
    if problems:
        raise ScriptError(problems)
    return code


def check_script(source, protocol):
    """Raise ``ScriptError`` when ``source`` cannot run under ``protocol``."""
    compile_script(source, protocol)


def script_function(code, namespace):
    """Run the compiled module in ``namespace`` and return the script coroutine function."""
    exec(code, namespace)
    return namespace[SCRIPT_FUNCTION]
