"""What can be checked of the Docker image and the compose stack without a Docker engine.

The compose file parses, names only images and settings that exist (every environment variable of
a LabelHub service is read by ``labelhub backend``/``labelhub sync`` or the image; every Label Studio
variable is read by Label Studio 1.23.2's own source, when its cached venv is there), its volumes
are where the image keeps its state, and every ``${VAR}`` is documented in ``.env.example``. The
Dockerfile installs what ``pyproject.toml`` declares, a CPU torch that satisfies its pin, runs as a
non-root user and has a HEALTHCHECK. ``docker compose config`` runs when the client has the plugin.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from labelhub.sync.labelstudio import server as labelstudio_server

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")

# read by libraries the commands use, or by the image itself
EXTERNAL = {"HF_HOME": "huggingface_hub", "HF_ENDPOINT": "huggingface_hub", "HF_TOKEN": "huggingface_hub",
            "PROMETHEUS_MULTIPROC_DIR": "prometheus-client", "LABELHUB_HEALTH_URL": "the Dockerfile's HEALTHCHECK"}


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value, env: dict[str, str]):
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (the forms the file uses)."""
    if not isinstance(value, str):
        return value

    def one(m):
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if env.get(name):
            return env[name]
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return _VAR.sub(one, value)


def labelhub_env_vars() -> set[str]:
    """Every environment variable ``labelhub backend``, ``labelhub sync`` and ``labelhub worker`` read (click
    envvars and the backend's settings object)."""
    from labelhub.backend.settings import Settings
    from labelhub.cli import main

    names = set(Settings.ENV.values())
    for command in ("sync", "backend", "worker"):
        for param in main.commands[command].params:
            envvar = getattr(param, "envvar", None)
            names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def image_env() -> dict[str, str]:
    """The ``ENV`` of the Dockerfile's final stage."""
    env = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", DOCKERFILE, re.M):
        for name, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", block):
            env[name] = value
    return env


def test_compose_file_parses_and_every_variable_is_documented_in_env_example():
    env = env_example()
    used = set()
    for service in COMPOSE["services"].values():
        for value in [*service.get("environment", {}).values(), *service.get("ports", []), service.get("image", "")]:
            used.update(m.group("name") for m in _VAR.finditer(str(value)))
    assert used - set(env) == set(), "variables of docker-compose.yml missing from .env.example"
    assert set(env) - used == set(), ".env.example variables that docker-compose.yml does not use"
    for service in COMPOSE["services"].values():  # every required variable has a value in the example
        for value in service.get("environment", {}).values():
            interpolate(value, env)


def test_compose_services_use_label_studio_1_23_2_and_the_labelhub_image():
    services = COMPOSE["services"]
    assert set(services) == {"label-studio", "backend", "sync", "redis", "worker"}
    assert services["label-studio"]["image"] == f"heartexlabs/label-studio:{labelstudio_server.LS_VERSION}"
    assert services["redis"]["profiles"] == services["worker"]["profiles"] == ["scale"]  # only when asked for
    assert "--appendonly" in services["redis"]["command"]  # the queue and the models survive a Redis restart
    for name in ("backend", "sync", "worker"):
        assert services[name]["build"] == "."
        assert services[name]["image"].startswith("labelhub:")
        assert services[name]["command"] == [name]
    assert services["sync"]["environment"]["LABELHUB_WEBHOOK_URL"] == "http://sync:9091/webhook"
    assert services["backend"]["environment"]["LABEL_STUDIO_URL"] == "http://label-studio:8080"


def test_labelhub_services_set_only_variables_the_commands_read():
    known = labelhub_env_vars() | set(EXTERNAL)
    for name in ("backend", "sync", "worker"):
        env = COMPOSE["services"][name]["environment"]
        assert set(env) - known == set(), f"{name}: variables no LabelHub command reads"
    assert set(image_env()) - known - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
                                       "PIP_DISABLE_PIP_VERSION_CHECK", "HF_HUB_DISABLE_TELEMETRY"} == set()


def test_label_studio_gets_token_legacy_api_and_local_network_settings_it_reads():
    env = COMPOSE["services"]["label-studio"]["environment"]
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LABEL_STUDIO_USER_TOKEN"] == "${LABEL_STUDIO_API_KEY:?set LABEL_STUDIO_API_KEY in .env}"
    for name in ("backend", "sync", "worker"):
        assert COMPOSE["services"][name]["environment"]["LABEL_STUDIO_API_KEY"] == env["LABEL_STUDIO_USER_TOKEN"]
    site = labelstudio_server.venv_dir() / "lib"
    sources = list(site.glob("python3*/site-packages/label_studio"))
    if not sources:
        pytest.skip("Label Studio's cached venv is not installed (python -m tests.testbed install)")
    text = "\n".join(p.read_text(errors="replace") for p in sources[0].rglob("*.py") if "/tests/" not in str(p))
    for name in env:  # get_env("X") reads LABEL_STUDIO_X too
        short = name.removeprefix("LABEL_STUDIO_")
        assert re.search(rf"['\"]({name}|{short})['\"]", text), f"Label Studio does not read {name}"


def test_named_volumes_hold_label_studio_data_model_dir_and_sync_state():
    declared = set(COMPOSE["volumes"])
    env = image_env()
    mounts = {}
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert source in declared, f"{name}: {source} is not a named volume"
            mounts[(name, target)] = source
    assert mounts[("label-studio", "/label-studio/data")] == "label-studio-data"
    assert mounts[("backend", env["MODEL_DIR"])] == "models"
    assert mounts[("sync", str(Path(env["LABELHUB_STATE"]).parent))] == "sync-state"


def test_dockerfile_installs_pyproject_with_cpu_torch_as_non_root_with_healthcheck():
    from packaging.requirements import Requirement

    torch = re.search(r"pip install --index-url https://download\.pytorch\.org/whl/cpu torch==(\S+)", DOCKERFILE)
    assert torch, "torch must come from PyTorch's CPU index"
    pins = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    assert pins["torch"].specifier.contains(torch.group(1)), (torch.group(1), str(pins["torch"]))
    assert re.search(r"^RUN pip install \.(\s|$)", DOCKERFILE, re.M), "the project (and so its dependencies)"
    copied = " ".join(re.findall(r"^COPY (.+)$", DOCKERFILE, re.M))
    for folder in set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()):
        assert f"{folder} " in copied + " "
    for needed in ("pyproject.toml", PYPROJECT["project"]["readme"]):
        assert needed in copied
    ignore = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "labelhub/", "backend/", "sync/"):
        assert f"!{needed}" in ignore
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*CMD", DOCKERFILE, re.M | re.S)
    assert "LABELHUB_HEALTH_URL" in DOCKERFILE.split("HEALTHCHECK", 1)[1]
    assert re.search(r'^ENTRYPOINT \["labelhub"\]', DOCKERFILE, re.M)
    assert PYPROJECT["project"]["scripts"]["labelhub"] == "labelhub.cli:main"


def test_readme_documents_every_variable_of_the_stack():
    readme = (ROOT / "README.md").read_text()
    docker = readme.split("## Docker", 1)[1].split("\n## ", 1)[0]
    for name in env_example():
        assert f"`{name}`" in docker, name
    for name in COMPOSE["services"]["label-studio"]["environment"]:
        assert re.search(rf"`{name}[`=]", docker), name


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker client")
def test_docker_compose_config_accepts_the_file(tmp_path):
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker client has no compose plugin")
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    proc = subprocess.run(["docker", "compose", "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"),
                           "config", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
