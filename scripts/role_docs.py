#!/usr/bin/env python3
"""Render each role README's variables table from its defaults (comments) and argument specs.

    python scripts/role_docs.py          # rewrite the tables
    python scripts/role_docs.py --check  # exit 1 when a README is out of date (run by the unit tests)

The table sits between the markers <!-- BEGIN VARIABLES --> and <!-- END VARIABLES -->.
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN VARIABLES -->", "<!-- END VARIABLES -->"
TOP_KEY = re.compile(r"^([a-z][a-z0-9_]*):(.*)$")


def default_comments(defaults: Path) -> dict[str, tuple[str, str]]:
    """Map each top-level variable to (comment text, raw default) as written in defaults/main.yml."""
    found, comment, lines = {}, [], defaults.read_text().splitlines() if defaults.exists() else []
    for index, line in enumerate(lines):
        if line.startswith("# ") and not line.startswith("# -") and not line.startswith("#   "):
            text = line[2:].strip()
            # A commented-out assignment documents a required variable; it is not prose.
            if TOP_KEY.match(text):
                name = TOP_KEY.match(text).group(1)
                found.setdefault(name, (" ".join(comment), "(required)"))
                comment = []
            else:
                comment.append(text)
        elif match := TOP_KEY.match(line):
            raw = match.group(2).strip()
            if not raw:  # block value: take the following indented lines
                block = []
                for follow in lines[index + 1 :]:
                    if follow.startswith("  "):
                        block.append(follow.strip())
                    else:
                        break
                items = [b[2:] for b in block if b.startswith("- ")]
                raw = "[" + ", ".join(items) + "]" if len(items) == len(block) else " ".join(block)
            found[match.group(1)] = (" ".join(comment), raw)
            comment = []
        elif not line.startswith("#"):
            comment = []
    return found


def table(role: Path) -> str:
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    comments = default_comments(role / "defaults/main.yml")
    rows = ["| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for name, spec in specs.items():
        text, raw = comments.get(name, ("", ""))
        if spec.get("required"):
            raw = "required"
        kind = spec.get("type", "str") + (f" of {spec['elements']}" if spec.get("elements") else "")
        if spec.get("choices"):
            kind += " (" + ", ".join(map(str, spec["choices"])) + ")"
        description = text or spec.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        default = "`" + raw.replace("|", "\\|") + "`" if raw else ""
        description = description.replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {default} | {description} |")
    return "\n".join(rows)


def render(readme: Path, role: Path) -> str:
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table(role) + "\n" + text[end:]


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for role in sorted((ROOT / "roles").iterdir()):
        readme = role / "README.md"
        if not (role / "meta/argument_specs.yml").exists() or not readme.exists():
            continue
        new = render(readme, role)
        if new != readme.read_text():
            stale.append(str(readme.relative_to(ROOT)))
            if not check:
                readme.write_text(new)
    if check and stale:
        print("out of date (run python scripts/role_docs.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
