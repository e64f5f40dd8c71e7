"""Issue #13: the README's references and commands work as written."""

from __future__ import annotations

import re
from pathlib import Path

from session_assets.cli import main

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_relative_link_names_a_file_in_the_repository():
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
            if re.match(r"[a-z]+://|#|mailto:", target):
                continue
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{document.name} links to {target}, which is not in the repository"


def test_no_document_points_at_notes_outside_the_repository():
    for document in [*DOCUMENTS, REPO / "dagster.yaml", REPO / "docs" / "production" / "dagster.yaml"]:
        text = document.read_text()
        assert "DAGSTER_NOTES" not in text and "SPEC.md" not in text and "SPEC §" not in text, document.name


def test_every_session_assets_command_the_readme_names_exists():
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"session-assets ([a-z][a-z-]+)", readme))
    assert {"dev", "demo", "backfill", "up", "env"} <= named
    commands = set(main.commands)
    assert named <= commands, f"the README names commands that do not exist: {sorted(named - commands)}"


def test_ci_runs_the_readmes_test_command_word_for_word():
    readme = (REPO / "README.md").read_text()
    block = readme.split("Run the tests", 1)[1].split("```", 2)[1]
    (command,) = [line for line in block.splitlines() if line.strip()]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci, "CI must run the README's test command as written"
