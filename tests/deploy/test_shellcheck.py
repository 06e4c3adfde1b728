"""shellcheck over every shell script of the deployment: the provisioning
script as written, and the Terraform startup templates as Terraform renders
them (the raw templates are not shell: ${...} is Terraform's syntax)."""
import pytest

from ._support import PACKER, REPO, TEMPLATES, TERRAFORM, render_template, require_tool, run

JOIN_TOKEN = "sgj1_" + "Ab-_" * 21 + "Ab"

SAMPLE_VARIABLES = {
    "coordinator-startup.sh.tftpl": {
        "management_token": "abcDEF123", "management_port": 8000,
        "coordinator_key": "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", "join_token": JOIN_TOKEN,
        "generator_port": 9696, "aws_region": "eu-west-1",
    },
    "generator-startup.sh.tftpl": {"coordinator_url": "tcp://10.0.0.5:9696", "join_token": JOIN_TOKEN},
}


def _is_shell_script(path):
    if path.suffix in (".sh", ".bash"):
        return True
    try:
        first = path.read_text(errors="replace").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        return False
    return first.startswith("#!") and any(sh in first for sh in ("bash", "/sh", " sh"))


SCRIPTS = sorted(
    path for base in (PACKER, TERRAFORM, REPO / "tests" / "deploy")
    for path in base.rglob("*")
    if path.is_file() and path.suffix != ".tftpl" and _is_shell_script(path)
)
TEMPLATE_FILES = sorted(TEMPLATES.glob("*.sh.tftpl"))


def test_scripts_found():
    names = {path.relative_to(REPO).as_posix() for path in SCRIPTS}
    assert "packer/scripts/provision.sh" in names
    assert {path.name for path in TEMPLATE_FILES} == set(SAMPLE_VARIABLES)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck_script(script):
    shellcheck = require_tool("shellcheck", "shellcheck")
    result = run([shellcheck, "--severity=style", str(script)], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("template", TEMPLATE_FILES, ids=lambda p: p.name)
def test_shellcheck_rendered_template(template, tmp_path):
    shellcheck = require_tool("shellcheck", "shellcheck")
    terraform = require_tool("terraform", "terraform (HashiCorp's release)")
    rendered = tmp_path / template.name.replace(".tftpl", "")
    rendered.write_text(render_template(terraform, template, SAMPLE_VARIABLES[template.name], tmp_path))
    result = run([shellcheck, "--severity=style", "--shell=bash", str(rendered)], check=False)
    assert result.returncode == 0, rendered.read_text() + "\n" + result.stdout + result.stderr
