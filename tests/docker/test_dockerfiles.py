"""The container files in docker/, checked without Docker: what the Dockerfiles copy exists
in the build context (the repository root), the compose file wires the services and sets only
settings the platform reads, and the RunPod image carries the engine and the handler with
what they import and nothing of Django."""
from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
RUNPOD_DOCKERFILE = DOCKER / "Dockerfile.runpod"
DOCKERFILES = [DOCKERFILE, RUNPOD_DOCKERFILE]
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
RUNPOD_REQUIREMENTS = DOCKER / "requirements-runpod.txt"

PLATFORM_SERVICES = ("migrate", "web", "worker")
DJANGO_APPS = {"accounts", "studies", "trials", "hpo_platform"}
DJANGO_DISTRIBUTIONS = {"django", "djangorestframework", "channels", "channels-redis", "daphne", "django-q2",
                        "drf-spectacular", "drf-spectacular-sidecar", "psycopg"}
DJANGO_IMPORTS = {"django", "rest_framework", "channels", "channels_redis", "daphne", "django_q",
                  "drf_spectacular", "drf_spectacular_sidecar", "psycopg"} | DJANGO_APPS
FIRST_PARTY = {"workers", "runpod_service"} | DJANGO_APPS
# Import names whose distribution has another name (the rest: packages_distributions()).
DISTRIBUTION_OF = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml", "cv2": "opencv-python",
                   "google": "protobuf", "absl": "absl-py"}
# Variables in docker/.env for compose itself (PostgreSQL's image, the proxy), not the platform.
COMPOSE_ONLY = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB",
                "PROXY_SITE_ADDRESS", "PROXY_HTTP_PORT", "PROXY_HTTPS_PORT"}


# --- parsing helpers -----------------------------------------------------------------------------

def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    assert not pending, f"{dockerfile.name} ends inside a continued line"
    return result


def copy_sources(dockerfile: Path) -> list[str]:
    """The build-context paths every COPY and ADD reads (not those from another stage)."""
    sources: list[str] = []
    for keyword, arguments in instructions(dockerfile):
        if keyword not in {"COPY", "ADD"}:
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        paths = [word for word in words if not word.startswith("--")]
        assert len(paths) >= 2, f"{dockerfile.name}: {keyword} {arguments} has no destination"
        sources.extend(paths[:-1])
    return sources


def env_instructions(dockerfile: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in instructions(dockerfile):
        if keyword == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                values[name] = value
    return values


def cmd(dockerfile: Path) -> list[str]:
    commands = [arguments for keyword, arguments in instructions(dockerfile) if keyword == "CMD"]
    assert commands, f"{dockerfile.name} has no CMD"
    return json.loads(commands[-1])


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``path`` (or a folder above it) out of the context. The
    patterns here are simple: no exceptions (!), ``**/`` only as a prefix."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        assert not pattern.startswith("!"), "exceptions in .dockerignore are not handled here"
        pattern = pattern.strip("/")
        for candidate in candidates:
            if pattern.startswith("**/"):
                if fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], pattern[3:]) or fnmatch.fnmatchcase(candidate, pattern[3:]):
                    return True
            elif fnmatch.fnmatchcase(candidate, pattern):
                return True
    return False


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {str(name): str(value) for name, value in environment.items()}


def env_file_names(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f"{path.name}: {line!r} is not NAME=value"
            values[name.strip()] = value
    return values


def platform_settings() -> set[str]:
    """Environment variables the platform reads: settings.py's env_*() calls and README's
    Configuration table (and the 'Also read' line under it)."""
    names = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]*)"', (ROOT / "hpo_platform" / "settings.py").read_text()))
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if line.startswith("|"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
        elif line.startswith("Also read"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line))
    return names


def imports_needed_at_run_time(path: Path) -> set[str]:
    """Top-level module names ``path`` imports, except under ``if TYPE_CHECKING:`` and in a
    ``try`` that catches ImportError (optional imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
        if isinstance(node, ast.Try):
            caught = " ".join(ast.unparse(handler.type) for handler in node.handlers if handler.type is not None)
            if "ImportError" in caught or "ModuleNotFoundError" in caught:
                skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules_imported(path: Path) -> set[str]:
    """Every absolute module ``path`` imports, full dotted names, ``from a import b`` as a.b too."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(Requirement(line).name))
    return names


def distribution_of(import_name: str) -> str:
    if import_name in DISTRIBUTION_OF:
        return canonicalize_name(DISTRIBUTION_OF[import_name])
    installed = importlib.metadata.packages_distributions().get(import_name)
    return canonicalize_name(installed[0] if installed else import_name)


def runpod_image_files() -> list[Path]:
    """The files Dockerfile.runpod copies (folders expanded, caches left out)."""
    files: list[Path] = []
    for source in copy_sources(RUNPOD_DOCKERFILE):
        path = ROOT / source
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        else:
            files.append(path)
    return files


def runpod_python_files() -> list[Path]:
    return [path for path in runpod_image_files() if path.suffix == ".py"]


# --- the Dockerfiles -------------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_copied_path_is_in_the_build_context(dockerfile: Path) -> None:
    sources = copy_sources(dockerfile)
    assert sources, f"{dockerfile.name} copies nothing"
    patterns = dockerignore_patterns()
    for source in sources:
        assert source not in {".", "./"}, f"{dockerfile.name} copies the whole context; name the paths"
        assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repository"
        assert not ignored(source, patterns), f"{dockerfile.name} copies {source}, which .dockerignore leaves out"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_start_from_python_3_11_slim(dockerfile: Path) -> None:
    bases = [arguments.split()[0] for keyword, arguments in instructions(dockerfile) if keyword == "FROM"]
    assert bases == ["python:3.11-slim"]


def test_platform_image_installs_every_package_of_pyproject_and_runs_serve() -> None:
    copied = {source.rstrip("/") for source in copy_sources(DOCKERFILE)}
    assert {"pyproject.toml", "README.md", "manage.py", "templates", "static"} <= copied
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert package in copied, f"pyproject.toml installs {package}, which docker/Dockerfile does not copy"
    runs = [arguments for keyword, arguments in instructions(DOCKERFILE) if keyword == "RUN"]
    assert any("pip install" in run and "-e ." in run for run in runs), "the project is not pip-installed"
    assert any("collectstatic" in run for run in runs)
    users = [arguments for keyword, arguments in instructions(DOCKERFILE) if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the platform image must not run as root"
    assert cmd(DOCKERFILE) == ["python", "manage.py", "serve", "--host", "0.0.0.0"]


def test_platform_image_dependencies_come_from_pyproject(tmp_path: Path) -> None:
    """The RUN that turns pyproject.toml's dependencies into a requirements file, run here
    with /bin/sh as the image would, with and without TensorFlow's CUDA extra."""
    run = next(arguments for keyword, arguments in instructions(DOCKERFILE) if keyword == "RUN" and "tomllib" in arguments)
    command = run.split(" > /tmp/requirements.txt", 1)[0]
    assert command.startswith("python -c ")
    command = shlex.quote(sys.executable) + command[len("python"):]
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for extras, tensorflow in (("", "tensorflow"), ("and-cuda", "tensorflow[and-cuda]")):
        output = subprocess.run(
            ["sh", "-c", command], cwd=ROOT, env={"TENSORFLOW_EXTRAS": extras, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=True,
        ).stdout.split()
        assert len(output) == len(dependencies)
        for line, dependency in zip(output, dependencies):
            assert line == (dependency.replace("tensorflow", tensorflow, 1) if dependency.startswith("tensorflow") else dependency)


def test_runpod_image_runs_the_handler_module() -> None:
    command = cmd(RUNPOD_DOCKERFILE)
    assert command[:2] == ["python", "-u"]
    if command[2] == "-m":
        module = command[3]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{module} is not in the repository"
        assert env_instructions(RUNPOD_DOCKERFILE).get("PYTHONPATH") == "/app"
    else:
        assert (ROOT / command[2]).is_file()
    assert "runpod_service/handler.py" in {str(path.relative_to(ROOT)) for path in runpod_image_files()}


def test_runpod_image_copies_no_django_app() -> None:
    for source in copy_sources(RUNPOD_DOCKERFILE):
        parts = Path(source).parts
        assert parts[0] not in DJANGO_APPS | {"manage.py", "templates", "static"}, f"Dockerfile.runpod copies {source}"
        if parts[0] == "workers":
            # workers/ holds the platform's tasks and models; only its __init__ and the engine go.
            assert source.rstrip("/") in {"workers/__init__.py", "workers/engine"}, f"Dockerfile.runpod copies {source}"
    for path in runpod_python_files():
        for module in modules_imported(path):
            top = module.split(".")[0]
            assert top not in DJANGO_IMPORTS, f"{path.relative_to(ROOT)} imports {module}: the RunPod image has no Django"


def test_runpod_image_has_every_first_party_module_it_imports() -> None:
    copied = {path.relative_to(ROOT).as_posix() for path in runpod_image_files()}
    for path in runpod_python_files():
        for module in modules_imported(path):
            if module.split(".")[0] not in FIRST_PARTY:
                continue
            as_path = module.replace(".", "/")
            in_repository = [p for p in (f"{as_path}.py", f"{as_path}/__init__.py") if (ROOT / p).is_file()]
            if not in_repository:
                continue  # `from package import name`: a name, not a module
            assert any(p in copied for p in in_repository), (
                f"{path.relative_to(ROOT)} imports {module}, which Dockerfile.runpod does not copy"
            )


def test_runpod_requirements_have_no_django() -> None:
    names = requirement_names(RUNPOD_REQUIREMENTS)
    assert not names & {canonicalize_name(name) for name in DJANGO_DISTRIBUTIONS}, names
    assert not any(name.startswith("django") for name in names), names
    runs = " ".join(arguments for keyword, arguments in instructions(RUNPOD_DOCKERFILE) if keyword == "RUN")
    assert "requirements-runpod.txt" in runs and "pyproject" not in runs and "-e ." not in runs


def test_runpod_requirements_cover_every_third_party_import() -> None:
    engine_and_handler = sorted((ROOT / "workers" / "engine").glob("*.py")) + sorted((ROOT / "runpod_service").glob("*.py"))
    assert ROOT / "runpod_service" / "handler.py" in engine_and_handler
    required = requirement_names(RUNPOD_REQUIREMENTS)
    for path in engine_and_handler:
        for name in imports_needed_at_run_time(path):
            if name in sys.stdlib_module_names or name in FIRST_PARTY or name == "__future__":
                continue
            assert distribution_of(name) in required, (
                f"{path.relative_to(ROOT)} imports {name} ({distribution_of(name)}), which "
                "docker/requirements-runpod.txt does not install"
            )


def test_runpod_requirements_use_pyproject_ranges() -> None:
    import tomllib

    pyproject = {
        canonicalize_name(Requirement(line).name): Requirement(line).specifier
        for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    for line in RUNPOD_REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        assert requirement.specifier, f"{line} is not pinned to a range"
        name = canonicalize_name(requirement.name)
        if name in pyproject:
            assert requirement.specifier == pyproject[name], f"{line}: pyproject.toml says {pyproject[name]}"


def test_dockerignore_keeps_secrets_tests_and_local_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in ("docker/.env", ".env", ".venv", "var", ".git", "tests", "tests/docker/test_dockerfiles.py",
                 "workers/engine/__pycache__/x.pyc"):
        assert ignored(path, patterns), f".dockerignore lets {path} into the images"
    assert (DOCKER / ".gitignore").read_text().splitlines()[-1].strip() == ".env"


# --- the compose file ---------------------------------------------------------------------------------

def test_compose_names_the_services_with_their_images() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker"} <= set(services)
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    images = {services[name]["image"] for name in PLATFORM_SERVICES}
    assert len(images) == 1, f"migrate, web and worker should share one image: {images}"
    for name in PLATFORM_SERVICES:
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, f"{name} builds from {build['context']}"
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_commands() -> None:
    services = compose()["services"]
    web = services["web"]["command"]
    assert web[:3] == ["python", "-m", "daphne"] and web[-1] == "hpo_platform.asgi:application"
    assert web[web.index("-b") + 1] == "0.0.0.0" and web[web.index("-p") + 1] == "8000"
    assert "--proxy-headers" in web, "daphne sits behind the proxy: client addresses come from it"
    assert services["worker"]["command"] == ["python", "manage.py", "qcluster"]
    migrate = " ".join(services["migrate"]["command"])
    assert "manage.py migrate --noinput" in migrate and "collectstatic --noinput" in migrate
    assert services["migrate"]["restart"] == "no"


def test_compose_start_order_and_healthchecks() -> None:
    services = compose()["services"]
    for name in ("postgres", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    web_check = services["web"]["healthcheck"]["test"]
    worker_check = services["worker"]["healthcheck"]["test"]
    assert web_check[1:] == ["python", "/app/docker/healthcheck.py", "web", "8000"]
    assert worker_check[1:] == ["python", "/app/docker/healthcheck.py", "worker"]
    assert "/healthz" in (DOCKER / "healthcheck.py").read_text()
    assert "docker/healthcheck.py" in copy_sources(DOCKERFILE)
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_compose_volumes() -> None:
    document = compose()
    services = document["services"]
    env = env_instructions(DOCKERFILE)

    def mounts(name: str) -> dict[str, str]:
        return {volume.split(":")[1]: volume.split(":")[0] for volume in services[name].get("volumes", [])}

    assert mounts("postgres")["/var/lib/postgresql/data"] == "postgres-data"
    for name in ("web", "worker"):
        assert mounts(name)[env["MEDIA_ROOT"]] == "media", f"{name} does not share MEDIA_ROOT"
        assert mounts(name)[env["KERAS_HOME"]] == "keras", f"{name} does not share the Keras data set cache"
    # migrate collects static files into the volume the proxy serves as /static/.
    assert mounts("migrate")[env["STATIC_ROOT"]] == "static"
    assert mounts("proxy")["/srv/static"] == "static"
    caddyfile = (DOCKER / "Caddyfile").read_text()
    assert "handle /static/*" in caddyfile and "root * /srv" in caddyfile and "reverse_proxy web:8000" in caddyfile
    assert mounts("proxy")["/etc/caddy/Caddyfile"] == "./Caddyfile"
    for volume in {source for name in services for source in mounts(name).values() if not source.startswith(".")}:
        assert volume in document["volumes"], f"volume {volume} is not declared"


def test_compose_sets_only_settings_the_platform_reads() -> None:
    document = compose()
    known = platform_settings()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "Q_WORKERS"} <= known  # the parsing found them
    env_file = document["services"]["web"]["env_file"]
    assert env_file == ".env" and all(document["services"][name]["env_file"] == ".env" for name in PLATFORM_SERVICES)
    example = env_file_names(ENV_EXAMPLE)
    for name in PLATFORM_SERVICES:
        for variable in set(environment_of(document["services"][name])) | set(example):
            if variable in COMPOSE_ONLY:
                continue
            assert variable in known, f"{name} gets {variable}, which the platform does not read"
    gpu_worker = compose(COMPOSE_GPU)["services"]["worker"]
    for variable in environment_of(gpu_worker):
        assert variable in known or variable.startswith("NVIDIA_"), variable
    compose_text = COMPOSE.read_text()
    for variable in COMPOSE_ONLY:
        assert "${" + variable in compose_text, f"{variable} is listed as compose-only but compose.yaml does not use it"


def test_env_example_names_every_variable_compose_interpolates() -> None:
    example = env_file_names(ENV_EXAMPLE)
    for path in (COMPOSE, COMPOSE_GPU):
        for variable in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text()):
            assert variable in example, f"{path.name} uses ${{{variable}}}, which docker/.env.example does not list"
    # The secrets have no value in the example: compose refuses to start until they are set.
    assert example["SECRET_KEY"] == "" and example["POSTGRES_PASSWORD"] == ""
    for required in ("SECRET_KEY", "POSTGRES_PASSWORD"):
        assert "${" + required + ":?" in COMPOSE.read_text()


def test_gpu_override_builds_tensorflow_with_cuda_for_the_worker_only() -> None:
    services = compose(COMPOSE_GPU)["services"]
    assert set(services) == {"worker"}
    worker = services["worker"]
    assert worker["build"]["args"]["TENSORFLOW_EXTRAS"] == "and-cuda"
    assert worker["image"] != compose()["services"]["web"]["image"], "the CUDA image must not replace web's"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert any("TENSORFLOW_EXTRAS" in arguments for keyword, arguments in instructions(DOCKERFILE) if keyword == "ARG")


# --- the health check script --------------------------------------------------------------------------

def _healthcheck_module() -> Any:
    spec = importlib.util.spec_from_file_location("docker_healthcheck", DOCKER / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("allowed_hosts", "host"),
    [
        (None, "localhost"),
        ("", "localhost"),
        ("hpo.example.com,localhost", "hpo.example.com"),
        (" .example.com ", "example.com"),
        ("*", "localhost"),
        ("*, [::1]", "[::1]"),
    ],
)
def test_healthcheck_names_an_allowed_host(allowed_hosts: str | None, host: str) -> None:
    assert _healthcheck_module().host_header(allowed_hosts) == host


def test_healthcheck_fails_when_nothing_answers() -> None:
    module = _healthcheck_module()
    ok, detail = module.check_web(1)  # nothing listens on port 1
    assert not ok and detail
