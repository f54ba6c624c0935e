"""``scripts/module_graph.py`` on a small package made for the purpose: it finds what is there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "module_graph.py"

FILES = {
    "__init__.py": "",
    "pipeline.py": "from pkg.capture import reader\nfrom pkg.delivery.outbox import Outbox\n",
    "capture/__init__.py": "",
    "capture/reader.py": "import os\nfrom pkg.delivery import outbox  # a back-reference\n\nX = 1\n",
    "delivery/__init__.py": "",
    "delivery/outbox.py": "class Outbox:\n    def f(self):\n        from ..capture.reader import X  # lazy: closes a cycle\n        return X\n",
    "gate.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import cloud\n",
    "cloud.py": "from . import gate\n" + "\n" * 40,
}


def test_module_graph_reports_sizes_cycles_and_back_references(tmp_path):
    root = tmp_path / "pkg"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    out = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith(": 8 modules, 54 lines")  # 2 + 4 + 4 + 3 + 41
    assert lines[2].split() == ["41", "cloud"]  # the largest first
    assert "internal imports: 4 at module level, 1 lazy (inside functions), 1 type-only (if TYPE_CHECKING)" in lines
    assert "import cycles (module-level imports): 0" in lines
    i = lines.index("import cycles (all imports): 2")
    assert {lines[i + 1].split("  (")[0], lines[i + 2].split("  (")[0]} == {
        "  capture.reader <-> delivery.outbox",
        "  cloud <-> gate",
    }
    # capture -> delivery by sub-package, gate (capture) -> cloud (delivery) by flat name; the
    # reverse direction (delivery -> capture) and the stage-less pipeline are not back-references
    j = next(k for k, line in enumerate(lines) if line.startswith("stage back-references"))
    assert lines[j].endswith(": 2")
    assert lines[j + 1] == "  capture.reader:2 (capture) imports delivery.outbox (delivery) [module]"
    assert lines[j + 2] == "  gate:3 (capture) imports cloud (delivery) [typing]"
