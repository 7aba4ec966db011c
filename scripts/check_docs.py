"""Nothing the README said is lost when text moves into docs/: every number and every command of an
older README must appear in today's README.md or docs/*.md.

    .venv/bin/python scripts/check_docs.py OLD_README   # e.g. git show 28b2ca0:README.md > /tmp/old.md

Prints what is missing (exit 1) or how much was checked (exit 0).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"\d[\d,.]*\d%?|\d%?")
COMMAND = re.compile(r"`((?:\.venv/bin/)?(?:python|defect-nas|bash) [^`]+)`")


def facts(text: str) -> tuple[set[str], set[str]]:
    """(numbers, commands): the numbers of every line, and commands in backticks or indented blocks."""
    commands = {m.group(1).strip() for m in COMMAND.finditer(text)}
    commands |= {line.strip() for line in text.splitlines() if line.startswith("    ") and line.strip()}
    return set(NUMBER.findall(text)), commands


def main() -> None:
    old = Path(sys.argv[1]).read_text()
    new = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    flat = " ".join(new.split())
    numbers, commands = facts(old)
    missing = sorted(n for n in numbers if n not in new)
    missing += sorted(c for c in commands if " ".join(c.split()) not in flat)
    for m in missing:
        print("missing:", m)
    print(f"{len(numbers)} numbers and {len(commands)} commands checked, {len(missing)} missing")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
