"""README and docs/: every relative link names a file that exists and, for Markdown, a heading in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces as hyphens)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", markdown).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(doc: Path) -> list[str]:
    text = FENCE.sub("", doc.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {_shown(dest)}")
        elif anchor and dest.suffix == ".md" and anchor not in github_anchors(dest.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {_shown(dest)}")
    return broken


def test_github_anchors_follow_githubs_rules():
    md = "# A title\n## The demo's recipe (session 22, one H200)\n```\n# not a heading\n```\n## A title\n"
    assert github_anchors(md) == {"a-title", "the-demos-recipe-session-22-one-h200", "a-title-1"}


def test_broken_links_are_found(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Top\n[ok](#top) [bad](#nowhere) [gone](missing.md) [web](https://example.com/x#y)\n")
    assert broken_links(doc) == [
        f"#nowhere: no heading #nowhere in {doc}",
        f"missing.md: no file {tmp_path}/missing.md",
    ]


@pytest.mark.parametrize("name", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_links_resolve(name):
    doc = ROOT / name if name == "README.md" else ROOT / "docs" / name
    assert broken_links(doc) == []
