"""Print one of README.md's two set-up commands (``main`` or ``test``) so CI runs exactly what the README says.

The commands are the two ```bash blocks under the heading ``## Set up``: the first is the main job, the second
the tests."""

import re
import sys
from pathlib import Path

text = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
if len(blocks) != 2:
    sys.exit(f"README.md '## Set up' must hold exactly two ```bash blocks, found {len(blocks)}")
which = {"main": 0, "test": 1}[sys.argv[1]]
print(" ".join(line.strip().rstrip("\\") for line in blocks[which].strip().splitlines()))
