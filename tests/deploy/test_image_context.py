"""The image's build context (what `COPY . .` can take) holds no secrets, local state or
test tools, computed from .dockerignore the way Docker does; the image installs only the
production requirements."""
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TEST_TOOLS = ("pytest", "playwright", "ruff", "pytest-django", "pytest-asyncio", "pytest-timeout",
              "pip-tools")


class DockerIgnore:
    """Docker's .dockerignore semantics (moby/patternmatcher): patterns are cleaned and
    anchored at the context root, `*` and `?` stay within one path element, `**` spans any
    number of them, `!` takes a path back, the last matching pattern wins, and a path is
    excluded when it or one of its parent directories matches."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern]] = []
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            line = line.strip()
            if not line:
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            line = os.path.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
            self.patterns.append((exception, re.compile(self._regex(line))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i, in_class = "^", 0, False
        while i < len(pattern):
            ch = pattern[i]
            if in_class:
                out += ch
                in_class = ch != "]"
            elif ch == "*" and pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 == len(pattern) else "(.*/)?"
            elif ch == "*":
                out += "[^/]*"
            elif ch == "?":
                out += "[^/]"
            elif ch == "\\" and i + 1 < len(pattern):
                i += 1
                out += re.escape(pattern[i])
            elif ch == "[":
                out += "["
                in_class = True
            else:
                out += re.escape(ch)
            i += 1
        return out + "$"

    def excluded(self, path: str) -> bool:
        parents = path.split("/")[:-1]
        candidates = [path] + ["/".join(parents[:n]) for n in range(1, len(parents) + 1)]
        matched = False
        for exception, regex in self.patterns:
            if exception != matched:
                continue  # only an exception can change an excluded path, and vice versa
            if any(regex.match(candidate) for candidate in candidates):
                matched = not exception
        return matched


def build_context(root: Path, ignore: DockerIgnore) -> set[str]:
    """Every file Docker would send as the build context of `root`."""
    files = set()
    for directory, _dirs, names in os.walk(root):
        for name in names:
            relative = (Path(directory) / name).relative_to(root).as_posix()
            if not ignore.excluded(relative):
                files.add(relative)
    return files


def project_ignore() -> DockerIgnore:
    path = ROOT / ".dockerignore"
    assert path.exists(), "no .dockerignore: `COPY . .` takes the whole checkout"
    return DockerIgnore(path.read_text())


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    ("var", "var/emulator/ca-key.pem", True),
    ("var", "portal/var/x", False),
    (".env", "portal/.env", False),
    ("**/.env", "portal/settings/.env", True),
    ("**/*.pem", "ca.pem", True),
    ("*.pem", "certs/ca.pem", False),
    ("**/__pycache__", "portal/audit/__pycache__/models.cpython-311.pyc", True),
    ("docs\n!docs/keep.md", "docs/keep.md", False),
    ("docs\n!docs/keep.md", "docs/other.md", True),
    ("/.git", ".git/config", True),
    ("tests/*/data", "tests/deploy/data/x", True),
    ("tests/*/data", "tests/a/b/data/x", False),
    ("file?.txt", "file1.txt", True),
    ("file[0-9].txt", "filex.txt", False),
])
def test_the_matcher_follows_dockers_rules(patterns, path, excluded):
    assert DockerIgnore(patterns).excluded(path) is excluded


SECRETS_AND_STATE = [
    ".env", ".env.production", "portal/settings/.env",
    "var/secret_key", "var/portal.sqlite3", "var/celerybeat-schedule",
    "var/emulator/state.key", "var/emulator/ca-key.pem", "var/emulator/endpoints.json",
    "var/broker/processed/msg", "var/staticfiles/x.css",
    ".git/config", ".git/objects/ab/cdef",
    ".venv/bin/python", ".venv/lib/python3.11/site-packages/pytest/__init__.py",
    ".venv-lock/bin/pip", "var/pip-tools/bin/pip-compile",
    "node_modules/.bin/azurite-blob", "staticfiles/portal/site.css",
    "portal/__pycache__/urls.cpython-311.pyc", "db.sqlite3",
    "deploy/tls/portal.key", "deploy/tls/portal.pem", "client-cert.p12",
    ".pytest_cache/v/cache/lastfailed", "tests/conftest.py", "requirements-dev.txt",
]


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True)
    return listing.stdout.split()


def test_the_build_context_holds_no_secrets_state_or_test_tools(tmp_path):
    # A checkout after `make run` and `make test`: every tracked file plus what they leave.
    for relative in tracked_files() + SECRETS_AND_STATE:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")

    context = build_context(tmp_path, project_ignore())

    assert sorted(set(SECRETS_AND_STATE) & context) == []
    assert not any(name.startswith(("tests/", "bench/", ".git/", "var/")) for name in context)
    # What the image runs still goes in.
    for needed in ("manage.py", "requirements.txt", "deploy/gunicorn.conf.py",
                   "portal/settings/base.py", "portal/wsgi.py", "keys_app/services.py",
                   "dr_app/__init__.py", "hsm_emulator/__main__.py", "templates/base.html"):
        assert needed in context
    assert any(name.startswith("static/") for name in context)


def test_the_image_installs_only_the_production_requirements():
    dockerfile = DOCKERFILE.read_text()
    installs = [line for line in re.findall(r"^RUN .*$", dockerfile, re.M) if "pip install" in line]
    assert installs == [
        "RUN pip install --no-cache-dir --require-hashes -r requirements.txt"]
    assert "requirements-dev" not in dockerfile

    production = (ROOT / "requirements.txt").read_text().lower()
    pinned = set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", production, re.M))
    assert pinned, "requirements.txt pins nothing"
    assert pinned.isdisjoint(TEST_TOOLS), sorted(pinned & set(TEST_TOOLS))
