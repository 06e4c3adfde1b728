"""Checks of deploy/kubernetes and the container image, without a cluster.

Every overlay is rendered by ``kubectl kustomize`` (kubectl's own kustomize,
offline), every object is validated against the Kubernetes OpenAPI schemas
that kubernetes-validate ships (strict: unknown fields fail), for the oldest
release the manifests support and the newest one the package knows. Then
the invariants are checked in code: tokens only from Secrets, the
coordinator's probes, non-root everywhere, resources on every container,
one image, generator settings that the real configuration parsers accept.
The Dockerfile is read stage by stage, and the coordinator probe it
installs is run against a real coordinator.
"""
import fnmatch
import os
import re
import shlex
import subprocess
import sys

import pytest
import zmq

from coordinator_app.config import config_from_args
from stressgrid import __version__
from stressgrid.generator.config import config_from as generator_config_from
from stressgrid.join_token import JoinToken
from tests.coordinator.support import coordinator_process, wait_until
from tests.support.servers import free_port

from ._support import REPO, import_tool_module, require_tool, run

KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(path.parent.name for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
COMPONENTS = KUBERNETES / "components"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROBE = REPO / "deploy" / "container" / "stressgrid-probe"
DOC = REPO / "docs" / "kubernetes.md"

# The oldest release whose safe sysctls include every one the base sets
# (tcp_rmem / tcp_wmem became safe in 1.32); docs/kubernetes.md says so too.
OLDEST_KUBERNETES = "1.32"

# Sysctls the kubelet allows without configuration, with the release that
# made each safe (Kubernetes documentation, "Using sysctls in a Kubernetes
# Cluster").
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced": "1.0",
    "net.ipv4.ip_local_port_range": "1.0",
    "net.ipv4.tcp_syncookies": "1.0",
    "net.ipv4.ping_group_range": "1.18",
    "net.ipv4.ip_unprivileged_port_start": "1.22",
    "net.ipv4.ip_local_reserved_ports": "1.27",
    "net.ipv4.tcp_keepalive_time": "1.29",
    "net.ipv4.tcp_fin_timeout": "1.29",
    "net.ipv4.tcp_keepalive_intvl": "1.29",
    "net.ipv4.tcp_keepalive_probes": "1.29",
    "net.ipv4.tcp_rmem": "1.32",
    "net.ipv4.tcp_wmem": "1.32",
}
# Not namespaced (the IPC ones under fs.mqueue aside, which a generator has no
# use for): a pod cannot set them at all; they belong to the node.
NODE_LEVEL_PREFIXES = ("fs.", "vm.", "net.netfilter.", "net.ipv4.tcp_mem",
                       "net.core.netdev_max_backlog")

MANAGEMENT_TOKEN_SECRET = "stressgrid-management-token"
JOIN_TOKEN_SECRET = "stressgrid-join-token"
SECRET_ENV_PATTERN = re.compile(r"TOKEN|SECRET|PASSWORD|CREDENTIAL|KEY", re.IGNORECASE)


def version_tuple(version):
    return tuple(int(part) for part in version.split("."))


# --- rendering --------------------------------------------------------------

_rendered = {}


def kustomize(directory):
    """The objects ``kubectl kustomize directory`` renders (cached per directory)."""
    key = str(directory)
    if key not in _rendered:
        kubectl = require_tool("kubectl", None, how_to_install=(
            "it is in neither Debian's nor PyPI's archives: install the Kubernetes release"))
        yaml = import_tool_module("yaml", "pyyaml")
        output = run([kubectl, "kustomize", str(directory)], timeout=120).stdout
        _rendered[key] = [doc for doc in yaml.safe_load_all(output) if doc]
    return _rendered[key]


def render(overlay):
    return kustomize(KUBERNETES / "overlays" / overlay)


def with_components(tmp_path, overlay, *components):
    """Render ``overlay`` with more components, the way docs/kubernetes.md tells users to."""
    directory = tmp_path / f"{overlay}-with-{'-'.join(components)}"
    directory.mkdir()

    def relative(path):  # kustomize takes no absolute paths
        return os.path.relpath(path, directory)

    listed = "\n".join(f"  - {relative(COMPONENTS / name)}" for name in components)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {relative(KUBERNETES / 'overlays' / overlay)}\ncomponents:\n{listed}\n")
    return kustomize(directory)


def objects_of(objects, kind):
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def workloads(objects):
    return [obj for obj in objects if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")]


def component_of(obj):
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def containers_of(workload):
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def the_coordinator(objects):
    found = [w for w in workloads(objects) if component_of(w) == "coordinator"]
    assert len(found) == 1, [w["metadata"]["name"] for w in found]
    return found[0]


def the_generators(objects):
    found = [w for w in workloads(objects) if component_of(w) == "generator"]
    assert len(found) == 1, [f"{w['kind']}/{w['metadata']['name']}" for w in found]
    return found[0]


def container(workload, name):
    by_name = {c["name"]: c for c in containers_of(workload)}
    assert name in by_name, sorted(by_name)
    return by_name[name]


def env_of(container_spec):
    return {entry["name"]: entry for entry in container_spec.get("env", [])}


def plain_env(container_spec):
    return {name: entry["value"] for name, entry in env_of(container_spec).items() if "value" in entry}


def expand(arguments, environment):
    """Kubernetes' $(VAR) expansion of command arguments."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: environment[m.group(1)], arg)
            for arg in arguments]


def selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def quantity(value):
    """A CPU or memory quantity in base units (cores, bytes)."""
    value = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
                "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix, factor in sorted(suffixes.items(), key=lambda item: -len(item[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


# --- the tree -----------------------------------------------------------------


def test_overlays_and_components_found():
    assert {"dev", "large-fleet", "fixed-run"} <= set(OVERLAYS), OVERLAYS
    assert {"generator-pod", "generator-job", "unsafe-sysctls", "ingress"} <= {
        path.parent.name for path in COMPONENTS.glob("*/kustomization.yaml")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_fleet(overlay):
    objects = render(overlay)
    kinds = sorted(f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects)
    assert "Service/stressgrid-coordinator" in kinds
    assert "PersistentVolumeClaim/stressgrid-coordinator-data" in kinds
    assert "Deployment/stressgrid-coordinator" in kinds
    assert "NetworkPolicy/stressgrid-coordinator" in kinds
    # The operator makes the Secrets; no token is ever rendered from this tree.
    assert not objects_of(objects, "Secret"), kinds
    assert all(obj["metadata"].get("namespace") == "stressgrid" for obj in objects), kinds
    the_generators(objects)


def _validate_all(objects, version):
    validator = import_tool_module("kubernetes_validate", "kubernetes-validate")
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            validator.validate(obj, version, strict=True)
        except validator.ValidationError as exc:
            path = ".".join(str(part) for part in exc.absolute_path)
            pytest.fail(f"{name} is not valid Kubernetes {version}: {path}: {exc.message}")
        except validator.SchemaNotFoundError as exc:
            pytest.fail(f"{name}: {exc.message}")


def _schema_versions():
    validator = import_tool_module("kubernetes_validate", "kubernetes-validate")
    newest = validator.utils.latest_version()
    assert version_tuple(newest)[:2] >= version_tuple(OLDEST_KUBERNETES), newest
    return OLDEST_KUBERNETES, newest


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_matches_the_kubernetes_schema(overlay):
    for version in _schema_versions():
        _validate_all(render(overlay), version)


def test_ingress_component_matches_the_schema_and_the_service(tmp_path):
    objects = with_components(tmp_path, "dev", "ingress")
    for version in _schema_versions():
        _validate_all(objects, version)
    ingress = objects_of(objects, "Ingress")["stressgrid-coordinator"]
    service = objects_of(objects, "Service")["stressgrid-coordinator"]
    port_names = {port["name"] for port in service["spec"]["ports"]}
    backends = [path["backend"]["service"] for rule in ingress["spec"]["rules"]
                for path in rule["http"]["paths"]]
    assert backends == [{"name": "stressgrid-coordinator", "port": {"name": "management"}}], backends
    assert "management" in port_names
    # Only the website and API leave the cluster, and over TLS.
    assert ingress["spec"]["tls"] and ingress["spec"]["tls"][0]["secretName"]


# --- invariants ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tokens_come_only_from_secrets(overlay):
    objects = render(overlay)
    for workload in workloads(objects):
        for spec in containers_of(workload):
            for name, entry in env_of(spec).items():
                if SECRET_ENV_PATTERN.search(name):
                    assert "value" not in entry, f"{workload['metadata']['name']}: {name} has a literal value"
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name} is not from a Secret"
            assert "envFrom" not in spec, "envFrom would hide which variables are set"
    coordinator_env = env_of(container(the_coordinator(objects), "coordinator"))
    generator_env = env_of(container(the_generators(objects), "generator"))
    def secret(entry):
        return entry["valueFrom"]["secretKeyRef"]

    assert secret(coordinator_env["STRESSGRID_TOKEN"]) == {"name": MANAGEMENT_TOKEN_SECRET, "key": "token"}
    # The coordinator makes its own key and join token on its volume; generators get the token
    # from the Secret filled from it.
    assert "STRESSGRID_JOIN_TOKEN" not in coordinator_env
    assert secret(generator_env["STRESSGRID_JOIN_TOKEN"]) == {"name": JOIN_TOKEN_SECRET, "key": "token"}
    # Generators run plan scripts: they never see the management token.
    assert "STRESSGRID_TOKEN" not in generator_env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_coordinator_has_probes_on_the_api(overlay):
    coordinator = container(the_coordinator(render(overlay)), "coordinator")
    for kind in ("readinessProbe", "livenessProbe"):
        probe = coordinator[kind]
        command = probe["exec"]["command"]
        assert command[0] == PROBE.name, command
        asked = float(command[command.index("--timeout") + 1])
        # The probe gives up before Kubernetes does, so its reason is the one reported.
        assert asked < probe["timeoutSeconds"], (kind, asked, probe["timeoutSeconds"])
    liveness, readiness = coordinator["livenessProbe"], coordinator["readinessProbe"]
    assert (liveness["periodSeconds"] * liveness["failureThreshold"]
            > readiness["periodSeconds"] * readiness["failureThreshold"])


def dockerfile_user_id():
    users = [line.split(None, 1)[1].strip() for line in DOCKERFILE.read_text().splitlines()
             if line.startswith("USER ")]
    assert users, "the Dockerfile sets no USER"
    return int(users[-1].split(":")[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root(overlay):
    uid = dockerfile_user_id()
    for workload in workloads(render(overlay)):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] == uid != 0, name
        assert pod_security["runAsGroup"] != 0, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        assert not any("hostPath" in volume for volume in volumes.values()), name
        for spec_container in containers_of(workload):
            security = spec_container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert not security.get("privileged"), name
            mounts = {mount["mountPath"]: mount["name"] for mount in spec_container.get("volumeMounts", [])}
            # Temporary files (the agent's ipc:// sockets, archives being written).
            assert "emptyDir" in volumes[mounts["/tmp"]], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay):
    for workload in workloads(render(overlay)):
        for spec_container in containers_of(workload):
            where = f"{workload['metadata']['name']}/{spec_container['name']}"
            resources = spec_container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                limit = quantity(resources["limits"][resource])
                assert 0 < request <= limit, (where, resource, request, limit)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_everywhere_at_the_project_version(overlay):
    images = {(c["image"], c["imagePullPolicy"]) for w in workloads(render(overlay)) for c in containers_of(w)}
    assert len(images) == 1, images
    (image, pull_policy), = images
    assert image.rsplit(":", 1)[1] == __version__, image
    assert pull_policy == "IfNotPresent"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_coordinator_settings(overlay):
    objects = render(overlay)
    deployment = the_coordinator(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = container(deployment, "coordinator")
    assert spec["command"] == ["python", "-m", "coordinator_app"]
    # The real configuration parser, fed the container's env and arguments.
    config = config_from_args(spec.get("args", []), environ=plain_env(spec))
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    assert ports == {"management": config.management_port, "generators": config.generator_port}
    assert config.bind == "0.0.0.0"
    mounts = {mount["mountPath"]: mount["name"] for mount in spec["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
    claim = volumes[mounts[config.data_dir]]["persistentVolumeClaim"]["claimName"]
    assert claim in objects_of(objects, "PersistentVolumeClaim")
    service = objects_of(objects, "Service")["stressgrid-coordinator"]
    service_ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]}
    assert service_ports == {name: (number, name) for name, number in ports.items()}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert selects(deployment["spec"]["selector"], labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_generator_settings(overlay):
    objects = render(overlay)
    workload = the_generators(objects)
    spec = container(workload, "generator")
    assert spec["command"] == ["python", "-m", "stressgrid.generator"]
    env = env_of(spec)
    assert env["GENERATOR_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Workers from the CPU limit, rounded up to whole CPUs.
    workers_source = {name: entry["valueFrom"]["resourceFieldRef"] for name, entry in env.items()
                      if "resourceFieldRef" in entry.get("valueFrom", {})}
    assert len(workers_source) == 1, workers_source
    (workers_variable, field), = workers_source.items()
    assert field == {"containerName": "generator", "resource": "limits.cpu", "divisor": "1"}
    limit = quantity(spec["resources"]["limits"]["cpu"])
    expanded = expand(spec["args"], {workers_variable: str(int(-(-limit // 1)))})
    assert any(f"$({workers_variable})" in arg for arg in spec["args"]), spec["args"]
    # The real configuration parser, fed the container's env and arguments.
    # The join token comes from the Secret, as the env above says; any valid token stands in for it.
    token = JoinToken.new(zmq.curve_keypair()[0]).encode()
    config = generator_config_from(expanded, environ={**plain_env(spec), "GENERATOR_ID": "pod-name",
                                                      "STRESSGRID_JOIN_TOKEN": token})
    assert config.workers == int(-(-limit // 1))
    assert config.generator_id == "pod-name"
    service = objects_of(objects, "Service")["stressgrid-coordinator"]
    generator_port = {port["name"]: port["port"] for port in service["spec"]["ports"]}["generators"]
    assert config.coordinator_url == f"tcp://{service['metadata']['name']}:{generator_port}"
    labels = workload["spec"]["template"]["metadata"]["labels"]
    if "selector" in workload["spec"] and workload["kind"] != "Job":
        assert selects(workload["spec"]["selector"], labels)
    # The coordinator's Service must not send management traffic to generators.
    assert not selects({"matchLabels": service["spec"]["selector"]}, labels)


def longest_pod_name(workload):
    """The longest name Kubernetes gives a pod of ``workload`` (GENERATOR_ID is that name)."""
    name = workload["metadata"]["name"]
    if workload["kind"] == "Job":  # <job>-<completion index>-<5 random>
        return f"{name}-{workload['spec']['completions'] - 1}-xxxxx"
    return f"{name}-{'h' * 10}-xxxxx"  # <deployment>-<pod template hash>-<5 random>


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_generator_ids_from_pod_names_are_ids_the_coordinator_accepts(overlay):
    # Generator ids: at most 64 characters of [A-Za-z0-9._-].
    pod_name = longest_pod_name(the_generators(render(overlay)))
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", pod_name), pod_name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_generators_spread_over_nodes(overlay):
    workload = the_generators(render(overlay))
    labels = workload["spec"]["template"]["metadata"]["labels"]
    anti = pod_spec(workload)["affinity"]["podAntiAffinity"]
    terms = [term["podAffinityTerm"] for term in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(term["topologyKey"] == "kubernetes.io/hostname" and selects(term["labelSelector"], labels)
               for term in terms), anti
    if overlay == "large-fleet":
        assert anti.get("requiredDuringSchedulingIgnoredDuringExecution"), "one generator per node"


def packer_sysctls():
    values = {}
    for line in (REPO / "packer" / "files" / "sysctl-stressgrid.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.lstrip("-").split("=", 1)
            values[key.strip()] = " ".join(value.split())
    return values


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_generator_sysctls(overlay):
    workload = the_generators(render(overlay))
    sysctls = {item["name"]: item["value"] for item in pod_spec(workload)["securityContext"]["sysctls"]}
    assert "net.ipv4.ip_local_port_range" in sysctls
    assert not [name for name in sysctls if name.startswith(NODE_LEVEL_PREFIXES)], sysctls
    # The same tuning as the machine images.
    reference = packer_sysctls()
    assert {name: " ".join(value.split()) for name, value in sysctls.items()} == {
        name: reference[name] for name in sysctls}
    unsafe = {name for name in sysctls if name not in SAFE_SYSCTLS}
    kustomization = (KUBERNETES / "overlays" / overlay / "kustomization.yaml").read_text()
    if overlay == "large-fleet":
        assert "components/unsafe-sysctls" in kustomization, "the large fleet reuses TIME_WAIT ports"
    if "components/unsafe-sysctls" in kustomization:
        assert unsafe == {"net.ipv4.tcp_tw_reuse"}, unsafe
    else:
        assert not unsafe, f"{overlay} sets unsafe sysctls {sorted(unsafe)} without the unsafe-sysctls component"
    too_new = {name: SAFE_SYSCTLS[name] for name in sysctls if name in SAFE_SYSCTLS
               and version_tuple(SAFE_SYSCTLS[name]) > version_tuple(OLDEST_KUBERNETES)}
    assert not too_new, too_new
    # Whoever runs the cluster learns which ones need allowing.
    text = DOC.read_text()
    for name in sysctls:
        assert f"`{name}`" in text, f"docs/kubernetes.md does not explain {name}"


def test_fixed_run_is_an_indexed_job_in_place_of_the_deployment():
    objects = render("fixed-run")
    assert "stressgrid-generator" not in objects_of(objects, "Deployment")
    job = objects_of(objects, "Job")["stressgrid-generator"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 1
    assert spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] >= 0
    assert pod_spec(job)["restartPolicy"] == "OnFailure"
    # The same pod as the Deployment it replaces, but for the restart policy.
    deployment_pod = dict(pod_spec(the_generators(render("dev"))))
    job_pod = {key: value for key, value in pod_spec(job).items() if key != "restartPolicy"}
    for key in ("securityContext", "affinity", "volumes", "automountServiceAccountToken", "enableServiceLinks"):
        assert job_pod[key] == deployment_pod[key], key
    dev_container = container(the_generators(render("dev")), "generator")
    job_container = container(job, "generator")
    for key in ("command", "args", "env", "securityContext", "volumeMounts"):
        assert job_container[key] == dev_container[key], key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_generators_to_the_generator_port(overlay):
    objects = render(overlay)
    policy = objects_of(objects, "NetworkPolicy")["stressgrid-coordinator"]["spec"]
    coordinator_labels = the_coordinator(objects)["spec"]["template"]["metadata"]["labels"]
    generator_labels = the_generators(objects)["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"], coordinator_labels)
    by_port = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            by_port[port["port"]] = rule.get("from")
    assert by_port["management"] is None  # from anywhere in the cluster
    sources = by_port["generators"]
    assert sources and all(selects(source["podSelector"], generator_labels) for source in sources)
    assert not any(selects(source["podSelector"], coordinator_labels) for source in sources)


# --- the image ----------------------------------------------------------------


def dockerfile_stages():
    """[(stage name, base image, [instructions])] with line continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    arguments = {}
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            arguments[name.strip()] = default.strip()
        elif keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append((name, image, []))
        else:
            assert stages, f"instruction before FROM: {line}"
            stages[-1][2].append((keyword, " ".join(rest.split())))
    return stages


def runs(instructions):
    return [rest for keyword, rest in instructions if keyword == "RUN"]


def apt_installed(instructions):
    packages = set()
    for command in runs(instructions):
        for match in re.finditer(r"apt-get install ([^&;|]+)", command):
            packages |= {word for word in match.group(1).split() if not word.startswith("-")}
    return packages


def test_dockerfile_builds_the_extensions_then_a_slim_runtime():
    stages = dockerfile_stages()
    assert [name for name, _, _ in stages] == ["build", "runtime"], stages
    (_, build_image, build), (_, runtime_image, runtime) = stages
    assert build_image == runtime_image == "python:3.11-slim-bookworm"
    assert apt_installed(build) == {"gcc", "python3-dev", "libnghttp2-dev", "node-llhttp"}
    assert any(re.search(r"\bpip wheel\b.*--wheel-dir /wheels \.$", command) for command in runs(build)), runs(build)
    assert ("COPY", ". .") in build
    # No compiler or headers at run time; the library the HTTP/2 core links.
    assert apt_installed(runtime) == {"libnghttp2-14"}
    installs = [command for command in runs(runtime) if "pip install" in command]
    assert len(installs) == 1, installs
    assert "from=build" in installs[0] and "--no-index" in installs[0]
    assert installs[0].endswith(" stressgrid"), installs[0]
    assert all("rm -rf /var/lib/apt/lists/*" in command for command in runs(build) + runs(runtime)
               if "apt-get install" in command)


def test_dockerfile_runs_as_the_unprivileged_user():
    (_, _, runtime) = dockerfile_stages()[-1]
    uid = dockerfile_user_id()
    assert uid != 0
    assert ("USER", f"{uid}:{uid}") in runtime
    assert any(f"--uid {uid}" in command and "useradd" in command for command in runs(runtime))
    keywords = [keyword for keyword, _ in runtime]
    # Nothing after USER runs as root.
    assert "RUN" not in keywords[keywords.index("USER"):]
    cmd = dict(runtime)["CMD"]
    assert cmd.startswith('["python", "-m", "coordinator_app"'), cmd


def test_dockerfile_installs_the_probe_the_manifests_call():
    (_, _, runtime) = dockerfile_stages()[-1]
    copies = [rest for keyword, rest in runtime if keyword == "COPY" and PROBE.name in rest]
    assert copies == [f"--chmod=0755 {PROBE.relative_to(REPO).as_posix()} /usr/local/bin/{PROBE.name}"], copies
    assert (PROBE.stat().st_mode & 0o111) == 0o111


def test_manifests_run_modules_the_package_has():
    for overlay in OVERLAYS:
        for workload in workloads(render(overlay)):
            for spec_container in containers_of(workload):
                command = spec_container["command"]
                assert command[:2] == ["python", "-m"], command
                module = REPO.joinpath(*command[2].split("."))
                assert (module / "__main__.py").is_file() or module.with_suffix(".py").is_file(), command


def dockerignored(path):
    """True when .dockerignore keeps ``path`` (relative, posix) out of the build context."""
    ignored = False
    for pattern in DOCKERIGNORE.read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if matched:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_sources_and_drops_build_products():
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    sources = [name for name in listed.stdout.splitlines() if name]
    needed = [name for name in sources
              if name in ("setup.py", "pyproject.toml", "README.md", PROBE.relative_to(REPO).as_posix())
              or name.startswith(("stressgrid/", "coordinator_app/"))]
    assert any(name.endswith(".pyx") for name in needed)
    assert not [name for name in needed if dockerignored(name)]
    for product in (".git/config", "stressgrid/_core/http2.c", "stressgrid/_core/http2.cpython-311-x86_64-linux-gnu.so",
                    ".tox/py3/bin/python", "build/lib/x.py", "coordinator_app/__pycache__/app.cpython-311.pyc"):
        assert dockerignored(product), product


# --- the probe ----------------------------------------------------------------


def probe(environment, *args):
    return subprocess.run([sys.executable, str(PROBE), "--timeout", "5", *args], env=environment,
                          capture_output=True, text=True, timeout=30)


def test_probe_passes_with_the_coordinators_token_and_fails_without(tmp_path):
    token = "probe-token-0123456789"
    with coordinator_process(tmp_path, token=token) as coordinator:
        port = str(coordinator.management_port)
        # As in the container: the coordinator's own MANAGEMENT_PORT and token.
        ready = wait_until(lambda: probe({"MANAGEMENT_PORT": port, "STRESSGRID_TOKEN": token}).returncode == 0,
                           message="the probe to pass")
        assert ready
        refused = probe({"MANAGEMENT_PORT": port, "STRESSGRID_TOKEN": "wrong"})
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr, refused.stderr
        missing = probe({"MANAGEMENT_PORT": port})
        assert missing.returncode == 1 and "HTTP 401" in missing.stderr, missing.stderr


def test_probe_fails_when_nothing_listens():
    closed = probe({"MANAGEMENT_PORT": str(free_port())})
    assert closed.returncode == 1
    assert closed.stderr.startswith("stressgrid-probe: http://127.0.0.1:"), closed.stderr


# --- the guide ----------------------------------------------------------------


def test_guide_names_what_exists():
    text = DOC.read_text()
    for overlay in OVERLAYS:
        assert f"overlays/{overlay}" in text, overlay
    for path in set(re.findall(r"deploy/kubernetes/[\w./-]+", text)):
        assert (REPO / path.rstrip(".")).exists(), path
    for secret in (MANAGEMENT_TOKEN_SECRET, JOIN_TOKEN_SECRET):
        assert secret in text
    build = [line for line in text.splitlines() if line.strip().startswith("docker build")]
    assert build and all(shlex.split(line)[-1] == "." for line in build), build
    assert f"stressgrid:{__version__}" in text
    assert "kubernetes.md" in (REPO / "README.md").read_text()
    assert "kubernetes.md" in (REPO / "docs" / "deployment.md").read_text()
