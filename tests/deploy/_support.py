"""Helpers shared by the deployment checks (packer/, terraform/, provisioning).

Nothing here talks to a cloud: the checks read the templates, run the local
tools that can work offline, and run the provisioning script into a scratch
directory.
"""
import base64
import importlib
import os
import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKER = REPO / "packer"
TERRAFORM = REPO / "terraform"
PROVISION = PACKER / "scripts" / "provision.sh"
FILES = PACKER / "files"
TEMPLATES = TERRAFORM / "templates"

# Set to 1 to turn "tool missing" skips into failures (for CI, once the
# tools listed in tests/deploy/REQUIREMENTS.txt are installed there).
REQUIRE_TOOLS = os.environ.get("STRESSGRID_DEPLOY_REQUIRE_TOOLS") == "1"


def require_tool(name, package, *, how_to_install=None):
    """Path of executable ``name``; skip (or fail when required) if absent."""
    path = shutil.which(name)
    if path is None:
        how_to_install = how_to_install or f"install the Debian package `{package}`"
        message = f"`{name}` is not on PATH ({how_to_install})"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return path


def import_tool_module(module, package):
    """Python module ``module`` (PyPI package ``package``); skip (or fail when required) if absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"python module `{module}` is missing (pip install {package})"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)


def import_hcl2():
    return import_tool_module("hcl2", "python-hcl2")


def run(cmd, *, check=True, **kwargs):
    """Run a command, capturing text output; on failure show all of it."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run(cmd, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd!r} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def terraform_env(tmp_path):
    """Environment for running terraform without any user configuration."""
    env = dict(os.environ)
    rc = tmp_path / "terraformrc"
    rc.write_text("")
    env["TF_CLI_CONFIG_FILE"] = str(rc)
    env["CHECKPOINT_DISABLE"] = "1"
    env["TF_IN_AUTOMATION"] = "1"
    env.pop("TF_PLUGIN_CACHE_DIR", None)
    return env


# --- HCL2 -------------------------------------------------------------------
#
# python-hcl2 keeps the quotes of string literals and block labels (newer
# releases) or drops them (older ones), and marks blocks with "__is_block__".
# normalize() gives one shape for both: plain strings for literals, "${...}"
# for expressions, dicts for blocks (lists of dicts where a block repeats).


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def normalize(node):
    if isinstance(node, dict):
        return {
            _unquote(k): normalize(v)
            for k, v in node.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(node, list):
        return [normalize(v) for v in node]
    return _unquote(node)


class HclModule:
    """All *.tf / *.pkr.hcl files of one directory, merged by block kind."""

    def __init__(self, directory, pattern):
        hcl2 = import_hcl2()
        self.directory = pathlib.Path(directory)
        self.paths = sorted(self.directory.glob(pattern))
        assert self.paths, f"no {pattern} files in {self.directory}"
        self.text = {}
        self.blocks = {}  # kind -> list of normalized bodies
        for path in self.paths:
            text = path.read_text()
            self.text[path.name] = text
            with path.open() as handle:
                parsed = normalize(hcl2.load(handle))
            for kind, entries in parsed.items():
                if not isinstance(entries, list):
                    entries = [entries]
                self.blocks.setdefault(kind, []).extend(entries)

    def _labelled(self, kind, depth):
        """{labels tuple: body} for blocks with ``depth`` labels."""
        found = {}

        def walk(node, labels):
            if len(labels) == depth:
                assert labels not in found, f"duplicate {kind} {labels}"
                found[labels] = node
                return
            for label, inner in node.items():
                walk(inner, labels + (label,))

        for entry in self.blocks.get(kind, []):
            walk(entry, ())
        return found

    @property
    def variables(self):
        return {k[0]: v for k, v in self._labelled("variable", 1).items()}

    @property
    def outputs(self):
        return {k[0]: v for k, v in self._labelled("output", 1).items()}

    @property
    def resources(self):
        return self._labelled("resource", 2)

    @property
    def data(self):
        return self._labelled("data", 2)

    @property
    def sources(self):
        return self._labelled("source", 2)

    @property
    def locals(self):
        merged = {}
        for entry in self.blocks.get("locals", []):
            for name, value in entry.items():
                assert name not in merged, f"local {name} defined twice"
                merged[name] = value
        return merged

    def resources_of(self, rtype):
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def code(self):
        """All files' text with comments removed (strings kept intact)."""
        return "\n".join(strip_comments(t) for t in self.text.values())


def strip_comments(text):
    """Drop # and // line comments and /* */ comments outside string literals."""
    out = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif c == "#" or text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def flatten(node):
    """Every string found anywhere in a normalized body."""
    if isinstance(node, dict):
        for value in node.values():
            yield from flatten(value)
    elif isinstance(node, list):
        for value in node:
            yield from flatten(value)
    elif isinstance(node, str):
        yield node


def one(blocks, what):
    """The single block of a repeated-block list (python-hcl2 lists them)."""
    if isinstance(blocks, dict):
        return blocks
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {what} block, got {blocks!r}"
    return blocks[0]


def references(code, prefix):
    """Names used as ``prefix.NAME`` (e.g. var.region -> region)."""
    return set(re.findall(rf"(?<![\w.]){re.escape(prefix)}\.([A-Za-z_][\w-]*)", code))


# --- Terraform templates ----------------------------------------------------


def template_variables(path):
    """Variables a Terraform template file interpolates or tests."""
    text = pathlib.Path(path).read_text()
    names = set(re.findall(r"(?<!\$)\$\{\s*([A-Za-z_]\w*)\s*\}", text))
    names |= set(re.findall(r"%\{~?\s*(?:if|for\s+\w+\s+in)\s+([A-Za-z_]\w*)", text))
    return names


def render_template(terraform, path, variables, tmp_path):
    """Render ``path`` with Terraform's own templatefile(), offline.

    terraform console evaluates expressions in an empty working directory
    without needing any provider.
    """

    def literal(value):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${")
        return f'"{escaped}"'

    body = ", ".join(f"{k} = {literal(v)}" for k, v in variables.items())
    expression = f'base64encode(templatefile("{path}", {{ {body} }}))\n'
    workdir = tmp_path / "tf-console"
    workdir.mkdir(exist_ok=True)
    result = run(
        [terraform, "console"],
        input=expression,
        cwd=workdir,
        env=terraform_env(tmp_path),
    )
    encoded = result.stdout.strip().strip('"')
    return base64.b64decode(encoded).decode()
