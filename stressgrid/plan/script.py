"""Device script checking and compilation.

A script is the body of an ``async`` function; it is parsed, checked and
compiled once per plan block. ``compile_script`` raises ``ScriptError`` with
the line and column of the first problem: a syntax error, a protocol function
the plan's protocol does not have, an I/O function used without ``await``, or
a name that nothing defines (a mistyped function, a module not imported).
"""
import ast
import builtins
import difflib
import sys

from . import api

SCRIPT_FILENAME = "<script>"
SCRIPT_FUNCTION = "__stressgrid_script__"
SCRIPT_ARGUMENTS = ("params", "device_id")

# An I/O call passed straight to one of these is awaited by it.
_AWAITING_WRAPPERS = frozenset({
    "wait_for", "gather", "shield", "create_task", "ensure_future", "timeout",
})


# Names a script may use without defining them besides Python's builtins (__class__:
# inside a method).
_IMPLICIT_NAMES = frozenset({"__name__", "__builtins__", "__class__"})
# A script calling one of these may define names the checker cannot see.
_DYNAMIC_NAMESPACE = frozenset({"exec", "eval", "globals", "locals", "vars", "__import__"})


class ScriptError(ValueError):
    """A script that cannot run; ``line`` and ``column`` are 1-based."""

    def __init__(self, message, line=None, column=None, block=None):
        self.message = message
        self.line = line
        self.column = column
        self.block = block
        super().__init__(str(self))

    def __str__(self):
        where = []
        if self.block is not None:
            where.append(f"block {self.block}")
        if self.line is not None:
            where.append(f"line {self.line}")
            if self.column is not None:
                where.append(f"column {self.column}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def to_dict(self):
        return {"message": self.message, "line": self.line, "column": self.column,
                "block": self.block}


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

    def _fail(self, message, node):
        raise ScriptError(message, node.lineno, node.col_offset + 1)

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


def _check_sync_builtin_awaits(tree, sync_names):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Await) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id in sync_names):
            name = node.value.func.id
            raise ScriptError(f"{name}() returns at once and must not be awaited",
                              node.lineno, node.col_offset + 1)


def _check_names_defined(tree, protocol, bound):
    """Reject a name that is neither bound by the script nor available to it.

    Conservative: every name bound anywhere in the script counts as defined, and a
    script that can define names dynamically is not checked.
    """
    python_names = frozenset(dir(builtins))
    available = python_names | _IMPLICIT_NAMES | set(SCRIPT_ARGUMENTS) | api.protocol_functions(protocol)
    loaded = [node for node in ast.walk(tree)
              if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)]
    if any(node.id in _DYNAMIC_NAMESPACE for node in loaded):
        return
    known = available | bound
    unknown = [node for node in loaded if node.id not in known]
    if not unknown:
        return
    first = min(unknown, key=lambda node: (node.lineno, node.col_offset))
    message = f"name {first.id!r} is not defined"
    if first.id in sys.stdlib_module_names:
        message += f"; add 'import {first.id}' to the script"
    else:
        # The script's own and Stressgrid's names first: 'gett' means get, not getattr.
        close = (difflib.get_close_matches(first.id, sorted(known - python_names), n=1)
                 or difflib.get_close_matches(first.id, sorted(python_names), n=1))
        if close:
            message += f"; did you mean {close[0]!r}?"
    raise ScriptError(message, first.lineno, first.col_offset + 1)


def parse_script(source, protocol):
    """Parse and check ``source`` for ``protocol``; returns the wrapped module AST."""
    if not isinstance(source, str):
        raise ScriptError("script must be text")
    if protocol not in api.PROTOCOLS:
        raise ScriptError(f"unknown protocol {protocol!r}; expected one of {', '.join(api.PROTOCOLS)}")
    try:
        tree = ast.parse(source, filename=SCRIPT_FILENAME)
    except SyntaxError as exc:
        raise ScriptError(f"syntax error: {exc.msg}", exc.lineno, exc.offset) from None
    bound = _BoundNames()
    bound.visit(tree)
    bound_names = frozenset(bound.names)
    checker = _Checker(protocol, bound_names)
    # Awaits are seen before their calls because ast visits parents first.
    checker.visit(tree)
    _check_sync_builtin_awaits(tree, checker.sync_names)
    _check_names_defined(tree, protocol, bound_names)

    arguments = ast.arguments(
        posonlyargs=[], args=[ast.arg(arg=name) for name in SCRIPT_ARGUMENTS],
        vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    function = ast.AsyncFunctionDef(
        name=SCRIPT_FUNCTION, args=arguments, body=tree.body or [ast.Pass()],
        decorator_list=[], returns=None, type_comment=None, type_params=[],
        lineno=1, col_offset=0)
    module = ast.Module(body=[function], type_ignores=[])
    ast.fix_missing_locations(module)
    return module


def compile_script(source, protocol):
    """Check ``source`` and return its code object (a module defining the script)."""
    module = parse_script(source, protocol)
    try:
        return compile(module, SCRIPT_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise ScriptError(f"syntax error: {exc.msg}", exc.lineno, exc.offset) from None


def check_script(source, protocol):
    """Raise ``ScriptError`` when ``source`` cannot run under ``protocol``."""
    compile_script(source, protocol)


def script_function(code, namespace):
    """Run the compiled module in ``namespace`` and return the script coroutine function."""
    exec(code, namespace)
    return namespace[SCRIPT_FUNCTION]
