"""The pipeline's imports flow one way (DESIGN.md): dsl imports only dsl; codegen imports dsl
and codegen; runtime imports dsl, codegen and runtime; only the front door (archc/) imports
everything. No module imports another that (directly or through others) imports it back, lazy
imports inside functions included."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = {"dsl": "archc.dsl", "codegen": "archc.codegen", "runtime": "archc.runtime", "grammar": "archc.grammar"}
ALLOWED = {"archc.dsl": {"archc.dsl"}, "archc.codegen": {"archc.dsl", "archc.codegen"},
           "archc.runtime": {"archc.dsl", "archc.codegen", "archc.runtime"}}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in STAGES.items():
        for f in (ROOT / folder).glob("*.py"):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    for f in (ROOT / "archc").glob("*.py"):
        out["archc" if f.stem == "__init__" else f"archc.{f.stem}"] = f
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every archc module `name` imports, at module level or inside a function."""
    pkg = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def test_stages_import_only_earlier_stages():
    mods = _modules()
    bad = []
    for name, path in sorted(mods.items()):
        stage = next((p for p in ALLOWED if name == p or name.startswith(p + ".")), None)
        if stage is None:
            continue  # the front door may import anything
        for target in sorted(_imports(name, path, set(mods))):
            if not any(target == ok or target.startswith(ok + ".") for ok in ALLOWED[stage]):
                bad.append(f"{name} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    mods = _modules()
    graph = {n: _imports(n, p, set(mods)) for n, p in mods.items()}
    cycles, state = [], {}

    def visit(n, stack):
        if state.get(n) == 1:
            cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            return
        if state.get(n) == 2:
            return
        state[n] = 1
        for m in sorted(graph[n]):
            visit(m, stack + [n])
        state[n] = 2
    for n in sorted(graph):
        visit(n, [])
    assert not cycles, "\n".join(cycles)


def test_importing_a_stage_leaves_the_front_door_alone():
    code = ("import sys, archc.runtime.pipeline, archc.codegen.lower, archc.dsl.check\n"
            "print(sorted(m for m in sys.modules if m in ('archc.api', 'archc.cli', 'archc.formats')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
