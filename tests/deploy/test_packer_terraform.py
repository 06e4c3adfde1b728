"""Static checks of the Packer templates and the Terraform fleets.

What the local tools can check offline they check (packer validate / fmt,
terraform fmt / providers / templatefile); the rest is read with a HCL2
parser: which blocks exist, what they reference, and the security-relevant
settings (who may reach which port, what the coordinator's role may do).
"""
import os
import re
import shutil

import pytest

from ._support import (
    FILES,
    PACKER,
    PROVISION,
    TEMPLATES,
    TERRAFORM,
    HclModule,
    flatten,
    one,
    references,
    require_tool,
    run,
    strip_comments,
    template_variables,
    terraform_env,
)

MANAGEMENT_PORT = 8000
GENERATOR_PORT = 9696
ROLES = ("coordinator", "generator")
OPEN_TO_ALL = ("0.0.0.0/0", "::/0")


# =========================================================================
# Packer
# =========================================================================


@pytest.fixture(scope="module")
def packer_module():
    return HclModule(PACKER, "*.pkr.hcl")


def packer_version(packer):
    output = run([packer, "version"]).stdout
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", output)
    assert match, output
    return tuple(int(part) for part in match.groups())


def test_packer_variables_declared_and_used(packer_module):
    declared = set(packer_module.variables)
    code = packer_module.code()
    used = references(code, "var")
    assert used <= declared, f"undeclared variables: {sorted(used - declared)}"
    assert declared <= used, f"unused variables: {sorted(declared - used)}"
    local_names = references(code, "local")
    assert local_names <= set(packer_module.locals), sorted(local_names - set(packer_module.locals))
    assert {"wheel", "aws_region", "ami_regions", "gcp_project_id", "gcp_zone"} <= declared


def test_packer_ami_regions_is_a_list_with_defaults(packer_module):
    ami_regions = packer_module.variables["ami_regions"]
    assert ami_regions["type"] == "${list(string)}"
    default = ami_regions["default"]
    assert isinstance(default, list) and default, default
    assert all(re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region) for region in default), default


def test_packer_plugins_required(packer_module):
    packer_block = one(packer_module.blocks["packer"], "packer")
    plugins = one(packer_block["required_plugins"], "required_plugins")
    assert plugins["amazon"]["source"] == "github.com/hashicorp/amazon"
    assert plugins["googlecompute"]["source"] == "github.com/hashicorp/googlecompute"


def test_packer_sources_start_from_ubuntu_24_04(packer_module):
    sources = packer_module.sources
    assert set(sources) == {("amazon-ebs", "ubuntu"), ("googlecompute", "ubuntu")}

    aws = sources[("amazon-ebs", "ubuntu")]
    assert aws["ami_regions"] == "${var.ami_regions}"
    assert aws["region"] == "${var.aws_region}"
    ami_filter = one(aws["source_ami_filter"], "source_ami_filter")
    assert "ubuntu-noble-24.04-amd64-server-" in ami_filter["filters"]["name"]
    assert ami_filter["owners"] == ["099720109477"]  # Canonical
    assert ami_filter["most_recent"] is True

    gcp = sources[("googlecompute", "ubuntu")]
    assert gcp["project_id"] == "${var.gcp_project_id}"
    assert gcp["source_image_family"] == "ubuntu-2404-lts-amd64"
    assert "ubuntu-os-cloud" in gcp["source_image_project_id"]


def _build(packer_module):
    return one(packer_module.blocks["build"], "build")


def _build_sources(packer_module):
    """{(source reference, role name): body} of the build-level source blocks."""
    found = {}
    for entry in _build(packer_module)["source"]:
        for reference, body in entry.items():
            found[(reference, body["name"])] = body
    return found


def test_packer_build_has_each_role_on_each_cloud(packer_module):
    sources = _build_sources(packer_module)
    assert set(sources) == {
        (reference, role) for reference in ("amazon-ebs.ubuntu", "googlecompute.ubuntu") for role in ROLES
    }
    for role in ROLES:
        aws = sources[("amazon-ebs.ubuntu", role)]
        assert aws["ami_name"].startswith(f"stressgrid-{role}-"), aws["ami_name"]
        assert aws["tags"]["Role"] == role
        gcp = sources[("googlecompute.ubuntu", role)]
        assert gcp["image_family"] == f"stressgrid-{role}"
        assert gcp["image_name"].startswith(f"stressgrid-{role}-"), gcp["image_name"]


def _provisioners(packer_module):
    ordered = []
    for entry in _build(packer_module)["provisioner"]:
        for kind, body in entry.items():
            ordered.append((kind, body))
    return ordered


def test_packer_provisioners_upload_then_run_the_script(packer_module):
    provisioners = _provisioners(packer_module)
    upload_dir = packer_module.locals["upload_dir"]
    uploads = [body for kind, body in provisioners if kind == "file"]
    sources = {body["source"]: body["destination"] for body in uploads}
    assert sources["${path.root}/files/"] == "${local.upload_dir}/files"
    assert sources["${var.wheel}"] == "${local.upload_dir}/${local.wheel_name}"
    assert (PACKER / "files").is_dir()

    scripts = [(i, body) for i, (kind, body) in enumerate(provisioners) if kind == "shell" and "script" in body]
    assert len(scripts) == 1
    index, shell = scripts[0]
    assert shell["script"] == "${path.root}/scripts/provision.sh"
    assert PROVISION.is_file() and os.access(PROVISION, os.X_OK)
    last_upload = max(i for i, (kind, _) in enumerate(provisioners) if kind == "file")
    assert index > last_upload, "the script must run after the uploads"
    env = dict(item.split("=", 1) for item in shell["environment_vars"])
    assert env == {
        "STRESSGRID_ROLE": "${source.name}",
        "STRESSGRID_WHEEL": "${local.upload_dir}/${local.wheel_name}",
        "STRESSGRID_FILES": "${local.upload_dir}/files",
    }
    assert "sudo" in shell["execute_command"]
    assert upload_dir.startswith("/tmp/")


def test_packer_files_needed_by_the_script_exist():
    script = PROVISION.read_text()
    for name in re.findall(r'"\$files/([\w.-]+)"', script):
        if "$" not in name:
            assert (FILES / name).is_file(), name
    for role in ROLES:
        assert (FILES / f"stressgrid-{role}.service").is_file()
        assert (FILES / f"stressgrid-{role}.env").is_file()


def _packer_copy_for_old_packer(tmp_path):
    """The templates minus plugins.pkr.hcl, whose `packer {}` block Packer
    releases before 1.7 cannot read, plus the files the templates upload."""
    copy = tmp_path / "packer"
    shutil.copytree(PACKER, copy, ignore=shutil.ignore_patterns("plugins.pkr.hcl"))
    wheel = tmp_path / "stressgrid-0.1.0-cp312-cp312-linux_x86_64.whl"
    wheel.write_bytes(b"placeholder: validate only checks that the file exists")
    return copy, wheel


def test_packer_validate(tmp_path):
    packer = require_tool("packer", "packer")
    version = packer_version(packer)
    if version >= (1, 7, 0):
        # Full validation would need `packer init` to download the plugins.
        result = run([packer, "validate", "-syntax-only", str(PACKER)])
        assert "Syntax-only check passed" in result.stdout
        return
    copy, wheel = _packer_copy_for_old_packer(tmp_path)
    run([packer, "validate", "-var", f"wheel={wheel}", "-var", "gcp_project_id=demo-project", str(copy)])
    # The AWS images alone need no GCP project.
    run([packer, "validate", "-only=stressgrid.amazon-ebs.*", "-var", f"wheel={wheel}", str(copy)])


def test_packer_validate_rejects_a_missing_or_misnamed_package(tmp_path):
    packer = require_tool("packer", "packer")
    if packer_version(packer) >= (1, 7, 0):
        pytest.skip("this Packer needs plugins (packer init, online) to evaluate variables and provisioners")
    copy, wheel = _packer_copy_for_old_packer(tmp_path)
    misnamed = tmp_path / "something-else.whl"
    misnamed.write_bytes(b"")
    result = run([packer, "validate", "-var", f"wheel={misnamed}", "-var", "gcp_project_id=p", str(copy)],
                 check=False)
    assert result.returncode != 0 and "wheel variable must name" in result.stdout + result.stderr
    absent = tmp_path / "absent" / wheel.name
    result = run([packer, "validate", "-var", f"wheel={absent}", "-var", "gcp_project_id=p", str(copy)],
                 check=False)
    assert result.returncode != 0 and str(absent) in result.stdout + result.stderr


def test_packer_fmt():
    packer = require_tool("packer", "packer")
    result = run([packer, "fmt", "-check", "-diff", str(PACKER)], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# =========================================================================
# Terraform
# =========================================================================

CLOUDS = ("aws", "gcp")

EXPECTED_VARIABLES = {
    "aws": {"region", "capacity", "generator_instance_type", "coordinator_instance_type",
            "ami_owner", "key_name", "vpc_id", "management_cidr_blocks"},
    "gcp": {"project", "region", "zone", "capacity", "generator_instance_type",
            "coordinator_instance_type", "image_project", "network", "management_cidr_blocks"},
}
# The fleet's CurveZMQ key and join token are made beforehand (python -m coordinator_app
# join-token) and passed as sensitive variables: there is no default for them.
FLEET_SECRETS = {"coordinator_key", "join_token"}
REQUIRED_VARIABLES = {"aws": {"region"} | FLEET_SECRETS, "gcp": {"project", "region", "zone"} | FLEET_SECRETS}
EXPECTED_PROVIDERS = {"aws": {"aws", "http", "random"}, "gcp": {"google", "http", "random"}}


@pytest.fixture(scope="module", params=CLOUDS)
def cloud(request):
    return request.param


@pytest.fixture(scope="module")
def tf_modules():
    return {name: HclModule(TERRAFORM / name, "*.tf") for name in CLOUDS}


@pytest.fixture(scope="module")
def tf(cloud, tf_modules):
    return tf_modules[cloud]


def test_terraform_variables(cloud, tf):
    variables = tf.variables
    missing = EXPECTED_VARIABLES[cloud] - set(variables)
    assert not missing, f"missing variables: {sorted(missing)}"
    required = {name for name, body in variables.items() if "default" not in body}
    assert required == REQUIRED_VARIABLES[cloud]
    assert variables["capacity"]["default"] == 1
    for name, body in variables.items():
        assert body.get("description"), f"variable {name} has no description"


def test_terraform_references_resolve(tf):
    code = tf.code()
    declared = set(tf.variables)
    used = references(code, "var")
    assert used <= declared, f"undeclared variables: {sorted(used - declared)}"
    assert declared <= used, f"unused variables: {sorted(declared - used)}"
    locals_used = references(code, "local")
    assert locals_used <= set(tf.locals), f"undefined locals: {sorted(locals_used - set(tf.locals))}"
    data_used = set(re.findall(r"(?<![\w.])data\.([a-z0-9_]+)\.([\w-]+)", code))
    assert data_used <= set(tf.data), f"undefined data sources: {sorted(data_used - set(tf.data))}"
    resources_used = set(re.findall(r"(?<![\w.])((?:aws|google|random)_[a-z0-9_]+)\.([\w-]+)", code))
    assert resources_used <= set(tf.resources), f"undefined resources: {sorted(resources_used - set(tf.resources))}"


def test_terraform_outputs(tf):
    outputs = tf.outputs
    assert "coordinator_url" in outputs
    assert outputs["coordinator_url"]["value"].startswith("http://")
    assert "local.management_port" in outputs["coordinator_url"]["value"]
    token = outputs["management_token"]
    assert token["sensitive"] is True
    assert token["value"] == "${random_password.management_token.result}"
    assert "generator_coordinator_url" in outputs


def test_terraform_token_is_generated(tf):
    token = tf.resources[("random_password", "management_token")]
    assert token["length"] >= 32
    assert token["special"] is False  # safe unquoted in env files and headers


def test_terraform_ports_and_caller_ip(tf):
    assert tf.locals["management_port"] == MANAGEMENT_PORT
    assert tf.locals["generator_port"] == GENERATOR_PORT
    caller = tf.data[("http", "caller_ip")]
    assert caller["url"] == "${var.caller_ip_url}"
    assert tf.variables["caller_ip_url"]["default"].startswith("https://")
    cidrs = tf.locals["management_cidr_blocks"]
    assert "data.http.caller_ip[0].response_body" in cidrs and "/32" in cidrs
    assert "var.management_cidr_blocks" in cidrs


def _templatefile_calls(tf):
    """[(template name, {keys passed})] for every templatefile() call."""
    calls = []
    for match in re.finditer(
        r'templatefile\("\$\{path\.module\}/\.\./templates/([\w.-]+)",\s*\{(.*?)\}\)',
        tf.code(), re.S,
    ):
        keys = set(re.findall(r"^\s*(\w+)\s*=", match.group(2), re.M))
        calls.append((match.group(1), keys))
    return calls


def test_terraform_templates_get_exactly_their_variables(tf):
    calls = _templatefile_calls(tf)
    assert sorted(name for name, _ in calls) == [
        "coordinator-startup.sh.tftpl", "generator-startup.sh.tftpl",
    ]
    for name, keys in calls:
        assert keys == template_variables(TEMPLATES / name), name


def test_terraform_fmt(cloud, tmp_path):
    terraform = require_tool("terraform", "terraform (HashiCorp's release)")
    result = run([terraform, "fmt", "-check", "-diff", "-recursive", str(TERRAFORM / cloud)],
                 check=False, env=terraform_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_parses_and_requires_its_providers(cloud, tmp_path):
    """`terraform providers` loads the whole configuration without plugins."""
    terraform = require_tool("terraform", "terraform (HashiCorp's release)")
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    result = run([terraform, "providers"], cwd=copy / cloud, env=terraform_env(tmp_path))
    found = set(re.findall(r"provider\[registry\.terraform\.io/hashicorp/([\w-]+)\]", result.stdout))
    assert found == EXPECTED_PROVIDERS[cloud], result.stdout


def test_terraform_validate(cloud, tmp_path):
    terraform = require_tool("terraform", "terraform (HashiCorp's release)")
    plugin_dir = os.environ.get("STRESSGRID_TF_PLUGIN_DIR")
    if not plugin_dir:
        pytest.skip(
            "terraform validate needs the provider plugins (hashicorp/aws, google, http, random), "
            "which `terraform init` downloads from the Terraform registry; set "
            "STRESSGRID_TF_PLUGIN_DIR to a local plugin directory to run it offline"
        )
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    env = terraform_env(tmp_path)
    run([terraform, "init", "-backend=false", "-input=false", f"-plugin-dir={plugin_dir}"],
        cwd=copy / cloud, env=env, timeout=600)
    run([terraform, "validate"], cwd=copy / cloud, env=env, timeout=600)


# --- AWS ------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(tf_modules):
    return tf_modules["aws"]


def test_aws_no_ingress_open_to_everyone(aws):
    for name, rule in aws.resources_of("aws_vpc_security_group_ingress_rule").items():
        for value in flatten(rule):
            assert value not in OPEN_TO_ALL, f"ingress rule {name} is open to everyone"
    for name, group in aws.resources_of("aws_security_group").items():
        assert "ingress" not in group, f"security group {name} has inline ingress rules"


def test_aws_management_port_only_from_caller(aws):
    rules = aws.resources_of("aws_vpc_security_group_ingress_rule")
    management = [r for r in rules.values() if r["from_port"] == "${local.management_port}"]
    assert len(management) == 1
    (rule,) = management
    assert rule["to_port"] == "${local.management_port}"
    assert rule["ip_protocol"] == "tcp"
    assert rule["for_each"] == "${toset(local.management_cidr_blocks)}"
    assert rule["cidr_ipv4"] == "${each.value}"
    assert rule["security_group_id"] == "${aws_security_group.coordinator.id}"


def test_aws_generator_port_only_from_generators(aws):
    rules = aws.resources_of("aws_vpc_security_group_ingress_rule")
    generator = [r for r in rules.values() if r["from_port"] == "${local.generator_port}"]
    assert len(generator) == 1
    (rule,) = generator
    assert rule["to_port"] == "${local.generator_port}"
    assert rule["referenced_security_group_id"] == "${aws_security_group.generator.id}"
    assert rule["security_group_id"] == "${aws_security_group.coordinator.id}"
    assert not {"cidr_ipv4", "cidr_ipv6", "prefix_list_id"} & set(rule)


def test_aws_coordinator_role_may_only_put_metrics(aws):
    document = aws.data[("aws_iam_policy_document", "coordinator_cloudwatch")]
    statement = one(document["statement"], "statement")
    assert statement["actions"] == ["cloudwatch:PutMetricData"]
    condition = one(statement["condition"], "condition")
    assert condition["variable"] == "cloudwatch:namespace" and condition["values"] == ["Stressgrid"]
    assume = one(aws.data[("aws_iam_policy_document", "coordinator_assume_role")]["statement"], "statement")
    assert assume["actions"] == ["sts:AssumeRole"]
    assert one(assume["principals"], "principals")["identifiers"] == ["ec2.amazonaws.com"]

    policy = aws.resources[("aws_iam_role_policy", "coordinator_cloudwatch")]
    assert policy["policy"] == "${data.aws_iam_policy_document.coordinator_cloudwatch.json}"
    assert policy["role"] == "${aws_iam_role.coordinator.id}"
    profile = aws.resources[("aws_iam_instance_profile", "coordinator")]
    assert profile["role"] == "${aws_iam_role.coordinator.name}"
    instance = aws.resources[("aws_instance", "coordinator")]
    assert instance["iam_instance_profile"] == "${aws_iam_instance_profile.coordinator.name}"


def test_aws_coordinator_instance(aws):
    instance = aws.resources[("aws_instance", "coordinator")]
    assert instance["vpc_security_group_ids"] == ["${aws_security_group.coordinator.id}"]
    assert instance["instance_type"] == "${var.coordinator_instance_type}"
    assert instance["ami"] == "${data.aws_ami.coordinator.id}"
    user_data = instance["user_data"]
    assert "coordinator-startup.sh.tftpl" in user_data
    assert "random_password.management_token.result" in user_data
    assert "aws_region = var.region" in user_data
    assert one(instance["metadata_options"], "metadata_options")["http_tokens"] == "required"


def test_aws_generators_autoscaling_group(aws):
    group = aws.resources[("aws_autoscaling_group", "generators")]
    for key in ("min_size", "max_size", "desired_capacity"):
        assert group[key] == "${var.capacity}", key
    template_ref = one(group["launch_template"], "launch_template")
    assert template_ref["id"] == "${aws_launch_template.generator.id}"
    assert template_ref["version"] == "${aws_launch_template.generator.latest_version}"

    template = aws.resources[("aws_launch_template", "generator")]
    assert template["instance_type"] == "${var.generator_instance_type}"
    assert "generator-startup.sh.tftpl" in template["user_data"]
    assert "coordinator_url = local.generator_coordinator_url" in template["user_data"]
    interface = one(template["network_interfaces"], "network_interfaces")
    assert interface["security_groups"] == ["${aws_security_group.generator.id}"]
    url = aws.locals["generator_coordinator_url"]
    assert url == "tcp://${aws_instance.coordinator.private_ip}:${local.generator_port}"


def test_aws_subnets_offer_both_instance_types(aws):
    for role in ROLES:
        offering = aws.data[("aws_ec2_instance_type_offerings", role)]
        assert one(offering["filter"], "filter")["values"] == [f"${{var.{role}_instance_type}}"]
    filters = aws.data[("aws_subnets", "selected")]["filter"]
    by_name = {f["name"]: f["values"] for f in filters}
    assert by_name["vpc-id"] == ["${data.aws_vpc.selected.id}"]
    zones = by_name["availability-zone"]
    for role in ROLES:
        assert f"data.aws_ec2_instance_type_offerings.{role}.locations" in zones
    assert "setintersection" in zones


def test_aws_images_match_packer_names(aws, packer_module):
    sources = _build_sources(packer_module)
    for role in ROLES:
        image = aws.data[("aws_ami", role)]
        assert image["owners"] == ["${var.ami_owner}"]
        (pattern,) = one(image["filter"], "filter")["values"]
        assert pattern == f"stressgrid-{role}-*"
        assert sources[("amazon-ebs.ubuntu", role)]["ami_name"].startswith(pattern[:-1])


# --- GCP --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcp(tf_modules):
    return tf_modules["gcp"]


def test_gcp_no_firewall_open_to_everyone(gcp):
    for name, rule in gcp.resources_of("google_compute_firewall").items():
        assert rule.get("direction", "INGRESS") == "INGRESS"
        for value in flatten(rule.get("source_ranges", [])):
            assert value not in OPEN_TO_ALL, f"firewall {name} is open to everyone"


def test_gcp_management_port_only_from_caller(gcp):
    rule = gcp.resources[("google_compute_firewall", "coordinator_management")]
    assert rule["source_ranges"] == "${local.management_cidr_blocks}"
    assert rule["target_tags"] == ["${local.coordinator_tag}"]
    allow = one(rule["allow"], "allow")
    assert allow["protocol"] == "tcp"
    assert allow["ports"] == ["${tostring(local.management_port)}"]
    assert "source_tags" not in rule


def test_gcp_generator_port_only_from_generators(gcp):
    rule = gcp.resources[("google_compute_firewall", "coordinator_generators")]
    assert rule["source_tags"] == ["${local.generator_tag}"]
    assert rule["target_tags"] == ["${local.coordinator_tag}"]
    assert "source_ranges" not in rule
    allow = one(rule["allow"], "allow")
    assert allow["protocol"] == "tcp"
    assert allow["ports"] == ["${tostring(local.generator_port)}"]


def test_gcp_coordinator_instance(gcp):
    instance = gcp.resources[("google_compute_instance", "coordinator")]
    assert instance["tags"] == ["${local.coordinator_tag}"]
    assert instance["machine_type"] == "${var.coordinator_instance_type}"
    startup = instance["metadata"]["startup-script"]
    assert "coordinator-startup.sh.tftpl" in startup
    assert "random_password.management_token.result" in startup
    interface = one(instance["network_interface"], "network_interface")
    assert interface["network"] == "${var.network}"
    assert "service_account" not in instance  # no Google credentials on the VM


def test_gcp_generators_managed_instance_group(gcp):
    group = gcp.resources[("google_compute_instance_group_manager", "generators")]
    assert group["target_size"] == "${var.capacity}"
    assert group["zone"] == "${var.zone}"
    version = one(group["version"], "version")
    assert version["instance_template"] == "${google_compute_instance_template.generator.id}"
    template = gcp.resources[("google_compute_instance_template", "generator")]
    assert template["tags"] == ["${local.generator_tag}"]
    assert template["machine_type"] == "${var.generator_instance_type}"
    assert "generator-startup.sh.tftpl" in template["metadata"]["startup-script"]
    url = gcp.locals["generator_coordinator_url"]
    assert url == "tcp://${google_compute_instance.coordinator.network_interface[0].network_ip}:${local.generator_port}"


def test_gcp_images_match_packer_families(gcp, packer_module):
    sources = _build_sources(packer_module)
    for role in ROLES:
        image = gcp.data[("google_compute_image", role)]
        assert image["family"] == f"stressgrid-{role}"
        assert image["project"] == "${local.image_project}"
        assert sources[("googlecompute.ubuntu", role)]["image_family"] == image["family"]


def test_comments_do_not_hide_code():
    """strip_comments keeps '#' inside strings (used by the checks above)."""
    assert strip_comments('a = "x#y" # note\nb = 1 // c\n/* d */e = 2') == 'a = "x#y" \nb = 1 \ne = 2'
