"""Keep each connector README's configuration block identical to its ``sample.yaml``.

Run ``python -m connectors.docs`` after editing a sample; ``tests/connectors/test_config.py``
fails while the two differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
_BLOCK = re.compile(r"```yaml\n.*?```\n", re.DOTALL)


def synced_readme(readme: str, sample: str) -> str:
    """``readme`` with its first yaml block replaced by ``sample``."""
    if not _BLOCK.search(readme):
        raise ValueError("the README has no ```yaml block to hold the sample")
    return _BLOCK.sub(lambda _match: f"```yaml\n{sample}```\n", readme, count=1)


def main() -> int:
    """Rewrite every README whose yaml block differs from the sample next to it."""
    for sample_path in sorted(ROOT.glob("*/sample.yaml")):
        readme_path = sample_path.with_name("README.md")
        readme = readme_path.read_text()
        updated = synced_readme(readme, sample_path.read_text())
        if updated != readme:
            readme_path.write_text(updated)
            sys.stdout.write(f"updated {readme_path.relative_to(ROOT.parent)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
