"""The README stays true: every environment variable the code reads is in its table."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READS = re.compile(r"""(?:env_(?:str|bool|int|list|secret)|os\.environ\.get|environ\.get|os\.getenv)"""
                   r"""\(\s*f?["']([A-Z][A-Z0-9_]+)|os\.environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]""")
# What the portal runs: the project package, the deployment scripts and every domain app.
SOURCE_DIRS = ["portal", "deploy"] + sorted(p.name for p in ROOT.glob("*_app") if p.is_dir())


def configuration_section(readme: str) -> str:
    """The README's Configuration section (its table and the subsections under it)."""
    start = readme.index("\n## Configuration\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end != -1 else None]


def test_every_environment_variable_is_documented():
    configuration = configuration_section((ROOT / "README.md").read_text())
    sources = [path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py")]
    names = {name for path in sources for match in READS.findall(path.read_text())
             for name in match if name}
    # The pattern finds what it should, in the portal and in the domain apps.
    assert {"DATABASE_URL", "POSTURE_RUN_SECONDS"} <= names and "dr_app" in SOURCE_DIRS
    missing = sorted(name for name in names if f"`{name}" not in configuration
                     and not name.startswith("PORTAL_DEMO_PASSWORD_"))
    assert missing == []


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
