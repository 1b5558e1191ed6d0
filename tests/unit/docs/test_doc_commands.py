"""Every command in README.md and docs/*.md runs, so the documentation cannot rot.

Each Markdown file's fenced blocks run in order, in a scratch copy of the repository (so commands may
write files, e.g. regenerate docs/api-reference.md, without touching the checkout), with `.venv/bin`
and `.tools/bin` first on PATH:

- shell blocks (bash, sh, shell, console) run with `bash -euo pipefail` and must exit 0 (or the
  `exit=N` their directive names);
- python blocks run with the project's interpreter;
- yaml blocks must parse, and every SLMDeployment in them must pass `slm validate`'s checks (the
  CRD schema and its CEL rules); a `file="path"` directive also writes the block there for later blocks;
- a block that needs a cluster, a GPU, Docker, network or minutes is not run, and must say so with
  `<!-- doc-test: skip reason="…" -->` on the line before it (see `blocks.py`). An unmarked block is
  always run: one that cannot run here fails this test.

The chart declares no dependencies, so documented `helm template`/`helm lint` commands render offline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slm_operator.api.validation import validate_object
from tests.conftest import REPO_ROOT
from tests.unit.docs.blocks import (
    QUIET_LANGUAGES,
    SHELL_LANGUAGES,
    Block,
    Directive,
    DirectiveError,
    extract_blocks,
    parse_directive,
)

DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT_S = 180
_NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".tools",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
    "*.egg-info",
    ".slm-cache",
    "build",
    "dist",
)


def _scratch_repository(root: Path) -> Path:
    """A copy of the working tree with the project's venv and tools linked in (see module docstring)."""
    copy = root / "repo"
    shutil.copytree(REPO_ROOT, copy, ignore=_NOT_COPIED, symlinks=True)
    for linked in (".venv", ".tools"):
        if (REPO_ROOT / linked).exists():
            (copy / linked).symlink_to(REPO_ROOT / linked)
    return copy


def _environment(repo: Path, home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLM_", "KUBECONFIG"))}
    path = [str(repo / ".venv" / "bin"), str(repo / ".tools" / "bin"), env.get("PATH", "/usr/bin:/bin")]
    env |= {"PATH": os.pathsep.join(path), "HOME": str(home), "NO_COLOR": "1", "TERM": "dumb"}
    return env


def _run(block: Block, repo: Path, env: dict[str, str]) -> str | None:
    """Run one block; a failure message, or None when it behaved as documented."""
    if block.language in SHELL_LANGUAGES:
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    elif block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        return _check_yaml(block, repo) if block.language in ("yaml", "yml") else None
    try:
        result = subprocess.run(
            command, cwd=repo, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f'did not finish in {COMMAND_TIMEOUT_S} s: mark it skip reason="takes minutes" or shorten it'
    if result.returncode != block.directive.exit_code:
        return (
            f"exited {result.returncode}, expected {block.directive.exit_code}\n--- code\n{block.code}"
            f"--- stdout (tail)\n{result.stdout[-2000:]}\n--- stderr (tail)\n{result.stderr[-2000:]}"
        )
    return None


def _check_yaml(block: Block, repo: Path) -> str | None:
    try:
        documents = [d for d in yaml.safe_load_all(block.code) if d is not None]
    except yaml.YAMLError as error:
        return f"not valid YAML: {error}"
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "SLMDeployment":
            errors = validate_object(document)
            if errors and block.directive.exit_code == 0:
                return "invalid SLMDeployment: " + "; ".join(map(str, errors))
            if not errors and block.directive.exit_code != 0:
                return "documented as invalid (exit != 0) but passes validation"
    if block.directive.file is not None:
        target = repo / block.directive.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code)
    return None


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_documented_commands_run(doc: Path, tmp_path: Path) -> None:
    blocks = extract_blocks(doc.read_text())
    repo = _scratch_repository(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = _environment(repo, home)
    failures = []
    for block in blocks:
        if block.directive.skip is not None:
            continue
        if block.language not in SHELL_LANGUAGES | QUIET_LANGUAGES | {"python", "yaml", "yml"}:
            failures.append(f"{block.where}: unknown language; use bash, python, yaml or one of {QUIET_LANGUAGES}")
            continue
        problem = _run(block, repo, env)
        if problem is not None:
            failures.append(f"{doc.name} {block.where}: {problem}")
    assert not failures, "\n\n".join(failures)


def test_docs_exist_and_have_commands() -> None:
    """The documentation set the README links to, each file with at least one block."""
    names = {p.name for p in DOC_FILES}
    expected = {
        "README.md",
        "architecture.md",
        "api-reference.md",
        "rollout.md",
        "autoscaling.md",
        "operations.md",
        "security.md",
        "gitops.md",
        "comparison.md",
    }
    assert expected <= names, f"missing: {expected - names}"
    readme = (REPO_ROOT / "README.md").read_text()
    for name in expected - {"README.md"}:
        assert f"docs/{name}" in readme, f"README.md does not link docs/{name}"


def test_readme_starts_with_the_two_setup_commands() -> None:
    first = extract_blocks((REPO_ROOT / "README.md").read_text())[0]
    assert first.code.splitlines()[0].startswith("make demo")
    assert first.code.splitlines()[1].startswith("make test")


def test_relative_links_resolve() -> None:
    """Links between the docs and to files of the repository point at something that exists."""
    broken = []
    for doc in DOC_FILES:
        prose = re.sub(r"`[^`\n]*`", "", doc.read_text())  # code spans may hold "](" (regexes)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO_ROOT)} → {target}")
    assert not broken, broken


# ------------------------------------------------------------------ the block parser itself


def test_an_unmarked_block_is_run_and_a_marked_one_is_not() -> None:
    text = (
        "Intro\n\n```bash\nslm crd\n```\n\n"
        '<!-- doc-test: skip reason="needs a cluster" -->\n```bash\nkubectl get slmd\n```\n'
    )
    first, second = extract_blocks(text)
    assert (first.directive.skip, first.line) == (None, 3)
    assert (second.directive.skip, second.code) == ("needs a cluster", "kubectl get slmd\n")


@pytest.mark.parametrize(
    "text",
    [
        "```\nmake demo\n```\n",  # no language: could hide an untested command
        "<!-- doc-test: skip -->\n```bash\nkubectl apply -f x\n```\n",  # a skip without a reason
        '<!-- doc-test: skip reason="boring" -->\n```bash\nslm crd\n```\n',  # not an accepted reason
        "<!-- doc-test: retries=3 -->\n```bash\nslm crd\n```\n",  # unknown directive
        "<!-- doc-test skip -->\n```bash\nslm crd\n```\n",  # malformed
    ],
)
def test_bad_blocks_are_rejected(text: str) -> None:
    with pytest.raises(DirectiveError):
        extract_blocks(text)


def test_directives() -> None:
    assert parse_directive(' exit=1 file="a/b.yaml" ').exit_code == 1
    assert parse_directive(' file="a/b.yaml" ').file == "a/b.yaml"
    assert parse_directive(' skip reason="takes minutes (starts Ray)" ').skip == "takes minutes (starts Ray)"


@pytest.mark.parametrize(
    ("block", "fails"),
    [
        (Block("bash", "exit 3\n", 1), True),
        (Block("bash", "false | cat\n", 1), True),  # pipefail: a failing stage fails the block
        (Block("bash", "exit 3\n", 1, Directive(exit_code=3)), False),
        (Block("python", "assert 1 + 1 == 3\n", 1), True),
        (Block("yaml", "kind: SLMDeployment\napiVersion: slm.dev/v1alpha1\nspec: {}\n", 1), True),
    ],
)
def test_a_block_that_misbehaves_is_reported(block: Block, fails: bool, tmp_path: Path) -> None:
    problem = _run(block, tmp_path, _environment(tmp_path, tmp_path))
    assert (problem is not None) == fails, problem
