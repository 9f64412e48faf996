"""The documents' cross-references: every section that README.md,
BENCHMARKS.md, docs/training.md or a code comment names, as
BENCHMARKS.md, "Speed" or README "Texture and temperature", exists in the
document named (a heading, or a paragraph's bold title; a shortened name
matches the start of one)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = {"README": "README.md", "BENCHMARKS.md": "BENCHMARKS.md", "docs/training.md": "docs/training.md"}
# a document, then one or more quoted section names ("A", "B" and "C")
REF = re.compile(r'(BENCHMARKS\.md|README|docs/training\.md),?\s+"([^"]+)"((?:,?\s+(?:and\s+)?"[^"]+")*)')


def _clean(name: str) -> str:
    """A quoted name as a heading reads: one line (a wrapped comment's '#'
    dropped), no backticks or escaped quotes."""
    return re.sub(r"\s*\n\s*#?\s*", " ", name).replace("`", "").replace('\\"', "").strip()


def _sections(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    names = re.findall(r"^#{1,4} (.+)$", text, re.M)
    names += [t.rstrip(".") for t in re.findall(r"^\*\*([^*]+)\*\*", text, re.M)]
    return [_clean(n) for n in names]


def _references():
    files = [ROOT / f for f in DOCS.values()] + sorted((ROOT / "rescodec").rglob("*.py"))
    for f in files:
        for m in REF.finditer(f.read_text(encoding="utf-8")):
            for name in [m.group(2)] + re.findall(r'"([^"]+)"', m.group(3)):
                yield f.relative_to(ROOT).as_posix(), m.group(1), _clean(name)


def test_the_documents_hold_sections_to_name():
    for doc in DOCS.values():
        assert len(_sections(ROOT / doc)) >= 5, doc


def test_a_missing_section_is_caught():
    """The parser reads every name of a list, and the check tells a real
    section from a made-up one."""
    m = REF.search('as BENCHMARKS.md, "Speed", "Quality\n    # ladder" and "No such section" show')
    names = [_clean(n) for n in [m.group(2)] + re.findall(r'"([^"]+)"', m.group(3))]
    assert (m.group(1), names) == ("BENCHMARKS.md", ["Speed", "Quality ladder", "No such section"])
    sections = _sections(ROOT / "BENCHMARKS.md")
    assert [any(s.startswith(n) for s in sections) for n in names] == [True, True, False]


@pytest.mark.parametrize("source,doc,name", sorted(set(_references())))
def test_every_named_section_exists(source, doc, name):
    sections = _sections(ROOT / DOCS[doc])
    assert any(s.startswith(name) for s in sections), f'{source} names {doc} "{name}", which has no such section'
