"""Supply chain: hashed lock files generated from requirements*.in, installs that refuse
anything unhashed, images pinned by version, a password on Redis, request limits in nginx."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*\\?$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = normalise(match[1])
            pins[current] = (match[2], [])
        elif line.strip().startswith("--hash=sha256:") and current:
            pins[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{path.name}: unexpected line {line!r}")
    return pins


def top_level(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(normalise(re.split(r"[\[<>=!~; ]", line)[0]))
    return names


def test_every_requirement_is_pinned_with_hashes_and_both_sets_agree():
    production, dev = lock(ROOT / "requirements.txt"), lock(ROOT / "requirements-dev.txt")
    for pins in (production, dev):
        unhashed = [name for name, (_version, hashes) in pins.items()
                    if not hashes or not all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)]
        assert pins and unhashed == []
    # The lock files are current: every top-level requirement is in its lock.
    assert top_level(ROOT / "requirements.in") <= set(production)
    assert top_level(ROOT / "requirements-dev.in") - {"requirements.in"} <= set(dev)
    # The dev set is the production set plus test tools, at the same versions.
    assert {name: pin[0] for name, pin in dev.items() if name in production} == \
        {name: pin[0] for name, pin in production.items()}
    assert "pytest" in dev and "pytest" not in production


def test_every_install_refuses_unhashed_packages():
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(VENV\)/\.installed:(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert rule, "no $(VENV)/.installed rule"
    assert set(rule[1].split()) >= {"requirements.txt", "requirements-dev.txt"}
    installs = [line for line in rule[2].splitlines() if "pip install" in line]
    assert installs and all("--require-hashes -r requirements-dev.txt" in line for line in installs)
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements.txt" in dockerfile


def exact_version(image: str) -> bool:
    """A digest, or a tag naming one release: major.minor.patch (PostgreSQL's releases are
    major.minor), an optional variant; never latest, a bare major or minor, or no tag."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    parts = 2 if name.split("/")[-1] == "postgres" else 3
    return bool(re.fullmatch(r"\d+(\.\d+){%d}(-[a-z0-9.]+)*" % (parts - 1), tag))


def test_images_are_pinned_to_exact_versions():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    images = [service["image"] for service in compose["services"].values() if "image" in service]
    images += re.findall(r"^FROM\s+(\S+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert len(images) >= 4
    assert [image for image in images if not exact_version(image)] == []
    for floating in ("redis:7", "redis:7.4", "postgres:15", "node:20-bookworm-slim",
                     "python:3.11-slim-bookworm", "redis:latest", "redis"):
        assert not exact_version(floating)


def test_redis_requires_a_password_that_the_portal_uses():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert re.search(r"requirepass \$\$REDIS_PASSWORD", command)
    assert redis["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:?set in .env}"
    assert "REDIS_PASSWORD" not in command.split("<<")[0]  # stdin, not argv (ps shows argv)
    assert "ports" not in redis
    broker = compose["x-portal"]["environment"]["CELERY_BROKER_URL"]
    assert broker == "redis://:${REDIS_PASSWORD:?set in .env}@redis:6379/0"


def nginx_blocks(text: str) -> dict:
    """A tiny nginx parser: {'directives': [[name, args...]], 'blocks': [(head, block)]}."""
    tokens = re.findall(r"[{};]|[^\s{};#]+|#[^\n]*", text)
    tokens = [token for token in tokens if not token.startswith("#")]

    def parse(position: int) -> tuple[dict, int]:
        node: dict = {"directives": [], "blocks": []}
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                node["directives"].append(words)
                words = []
            elif token == "{":
                child, position = parse(position)
                node["blocks"].append((words, child))
                words = []
            elif token == "}":
                return node, position
            else:
                words.append(token)
        return node, position

    return parse(0)[0]


def test_nginx_limits_sign_in_and_api_requests_and_body_size():
    config = nginx_blocks((ROOT / "deploy" / "nginx.conf").read_text())
    zones = {re.search(r"zone=(\w+):", " ".join(d))[1] for d in config["directives"]
             if d[0] == "limit_req_zone"}
    server = next(block for head, block in config["blocks"]
                  if head == ["server"] and ["listen", "443", "ssl"] in block["directives"])
    locations = {" ".join(head[1:]): block for head, block in server["blocks"]
                 if head[0] == "location"}

    for where in ("= /accounts/login/", "/accounts/entra/", "= /accounts/reauthenticate/",
                  "/api/"):
        limits = [d for d in locations[where]["directives"] if d[0] == "limit_req"]
        assert limits, f"no limit_req on location {where}"
        assert all(re.search(r"zone=(\w+)", " ".join(d))[1] in zones for d in limits)
        assert any(d[0] == "proxy_pass" for d in locations[where]["directives"])

    # nginx lets through what the portal accepts (it answers bigger bodies with its own 413),
    # and cuts off bodies far beyond it.
    from django.conf import settings

    size = next(d[1] for d in server["directives"] if d[0] == "client_max_body_size")
    assert size.endswith("m")
    assert settings.PORTAL_MAX_BODY_BYTES <= int(size[:-1]) * 1024 * 1024 <= 4 * 1024 * 1024
