"""The repository stands alone, and the source tree and an installed archc agree.

- No tracked text file (nor README.md, docs/*.md, tracked or not yet) refers to a file outside
  the repository: no parent-directory reference material, no absolute path of this machine.
- Every relative link in README.md and docs/*.md resolves to a file in the repository.
- `import archc` works the same from the source tree (editable install, or none) and from a
  non-editable install, including from the repository root, where the root's archc/ folder
  (which holds only the front door; the stages are its siblings dsl/, codegen/, ...) comes
  first on sys.path. The install test builds nothing from the network: it copies the package
  folders, installs them with pip (--no-deps --no-build-isolation --no-index) or, if the
  environment's setuptools cannot build a wheel, lays out the wheel's files with setuptools'
  build_py; about 3 s. Skip it with ARCHC_SKIP_INSTALL_TEST=1 or `-k "not install"`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Built from pieces so that this file does not match itself.
_WORK = "/" + "work"
_FORBIDDEN = [
    ("a path into the shared reference folder", re.compile(re.escape("shared" + "/reference"))),
    ("a parent-directory path to shared material", re.compile(re.escape(".." + "/shared"))),
    (f"an absolute path under {_WORK}", re.compile(r"(?<![\w.~:/-])" + _WORK + r"(?:/|\b)")),
]
_TEXT_LIMIT = 2_000_000  # bytes; larger files are data, not prose


def _repo_files() -> list[Path]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    p = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if p.returncode != 0:
        pytest.skip("not a git checkout: " + p.stderr.decode(errors="replace").strip())
    names = [n for n in p.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    tracked = [ROOT / n for n in names if (ROOT / n).is_file()]
    return list(dict.fromkeys(tracked + _markdown_files()))


def _text(path: Path) -> str | None:
    data = path.read_bytes()[:_TEXT_LIMIT]
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_file_refers_outside_the_repository():
    files = _repo_files()
    assert files
    own_root = str(ROOT)  # this checkout's absolute path, wherever it is
    problems = []
    for path in files:
        text = _text(path)
        if text is None:
            continue
        rel = path.relative_to(ROOT)
        for n, line in enumerate(text.splitlines(), 1):
            for what, pattern in _FORBIDDEN:
                if pattern.search(line):
                    problems.append(f"{rel}:{n}: {what}: {line.strip()[:120]}")
            if len(own_root) > 1 and own_root in line:
                problems.append(f"{rel}:{n}: this checkout's absolute path: {line.strip()[:120]}")
    assert not problems, "files refer outside the repository:\n" + "\n".join(problems)


def test_forbidden_patterns_match_what_they_should():
    # the guard itself: each pattern catches the references it is for, and not look-alikes
    hits = lambda s: [what for what, p in _FORBIDDEN if p.search(s)]  # noqa: E731
    assert hits("see ../" + "shared/" + "reference/machines.md")
    assert hits("Figures: shared/" + "reference/machines.md")
    assert hits("cd /" + "work/main && make")
    assert hits("path = '/" + "work'")
    assert not hits("a network/ folder, a framework/ or https://example.com/" + "work/x")
    assert not hits("the shared utility module; shared memory per SM")


# ---- markdown links ----------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"(`+).*?\1", re.S)
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*(?:<([^>\n]+)>|([^)\s]+))(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"[`*_]", "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", _FENCE.sub("", text), re.M)}


def _links(text: str) -> list[str]:
    prose = _CODE.sub("", _FENCE.sub("", text))
    return [m.group(1) or m.group(2) for m in _INLINE.finditer(prose)] + [m.group(1) for m in _REFDEF.finditer(prose)]


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_markdown_links_resolve_inside_the_repository():
    files = _markdown_files()
    assert (ROOT / "docs" / "workloads.md") in files and (ROOT / "docs" / "sources.md") in files
    problems, checked = [], 0
    for md in files:
        text = md.read_text(encoding="utf-8")
        for target in _links(text):
            if _SCHEME.match(target) or target.startswith("//"):
                continue  # a URL: not a file of the repository
            checked += 1
            where, _, anchor = target.partition("#")
            dest = (md.parent / where).resolve() if where else md
            rel = md.relative_to(ROOT)
            if not dest.is_relative_to(ROOT):
                problems.append(f"{rel}: {target} points outside the repository")
            elif not dest.exists():
                problems.append(f"{rel}: {target} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{rel}: {target}: no heading with anchor #{anchor}")
    assert checked, "no relative links found: the link parser is broken"
    assert not problems, "\n".join(problems)


def test_link_parser():
    text = ("See [a](docs/a.md), [b](<docs/b c.md>) and [c](x.md \"title\"); ![img](p.png).\n"
            "`[not](code.md)`\n```\n[not](fenced.md)\n```\n[ref]: ../outside.md\n"
            "[url](https://example.com).\n")
    assert _links(text) == ["docs/a.md", "docs/b c.md", "x.md", "p.png", "https://example.com", "../outside.md"]
    assert _slug("Energy per operation (Horowitz, ISSCC 2014, 45 nm, 0.9 V)") == \
        "energy-per-operation-horowitz-isscc-2014-45-nm-09-v"


# ---- the source tree and an installed archc agree ---------------------------------------

_STAGES = ("dsl", "codegen", "runtime", "grammar")

# Imports archc from wherever this interpreter finds it, loads the package data every stage
# reads (the grammar, std.* sources, the kernel templates) and prints where each came from.
_PROBE = r"""
import json, sys
import importlib.resources as r
import archc, archc.formats
import archc.dsl, archc.codegen, archc.runtime, archc.grammar
from archc.api import compile_stages, kernel_sources
assert r.files("archc.grammar").joinpath("arch.lark").is_file()
assert any(p.name.endswith(".arch") for p in r.files("archc.dsl").joinpath("stdlib").iterdir())
sources = kernel_sources(compile_stages(sys.argv[1]).ir)  # parses, checks, renders templates
assert sources
print(json.dumps({"archc": archc.__file__, "version": archc.__version__,
                  **{s: getattr(archc, s).__file__ for s in %r}}))
""" % (_STAGES,)


def _probe(python: str, cwd: Path, isolated: bool = False) -> dict:
    """Run _PROBE with `python` in `cwd`; `isolated`: without this process's PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not (isolated and k == "PYTHONPATH")}
    p = subprocess.run([python, "-c", _PROBE, str(ROOT / "samples" / "h100.arch")], cwd=cwd,
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, f"{python} in {cwd}:\n{p.stderr}"
    return {k: Path(v) for k, v in json.loads(p.stdout.strip().splitlines()[-1]).items() if k != "version"}


def _assert_one_tree(where: dict) -> Path:
    """Every stage comes from the same tree as archc: inside the package (installed) or beside
    it (source tree). Returns the package's folder."""
    pkg = where["archc"].parent
    homes = {where[s].parent.parent for s in _STAGES}
    assert homes in ({pkg}, {pkg.parent}), where
    return pkg


def test_source_tree_from_repository_root():
    # this interpreter's install (editable in development) run from the repository root
    where = _probe(sys.executable, ROOT)
    pkg = _assert_one_tree(where)
    assert pkg == ROOT / "archc"  # the root's folder comes first on sys.path
    assert {where[s].parent for s in _STAGES} == {ROOT / s for s in _STAGES}


def _copy_package_folders(dest: Path) -> None:
    """What a build of the repository reads: pyproject.toml, the README, the package folders."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(config["tool"]["setuptools"]["package-dir"].values())
    assert {"archc", *_STAGES} <= folders, folders
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.pyc", "build", "*.egg-info")
    for folder in sorted(folders):
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)


def _install(src: Path, target: Path) -> str:
    """A non-editable install of `src` into `target`, nothing downloaded. Returns how."""
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--no-index", "--quiet", "--target", str(target), str(src)],
                         capture_output=True, text=True, timeout=300, env=env)
    if pip.returncode == 0:
        return "pip install --target"
    # Without `wheel` (setuptools < 70.1) pip cannot build the wheel offline; lay out the files
    # the wheel would hold with the command bdist_wheel runs for them: the packages mapped by
    # package-dir and their package data.
    shutil.rmtree(target, ignore_errors=True)
    lay = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
                          "build_py", "--build-lib", str(target)],
                         cwd=src, capture_output=True, text=True, timeout=300, env=env)
    if lay.returncode != 0:
        pytest.skip("cannot install offline: pip said\n" + pip.stderr[-2000:] +
                    "\nsetuptools build_py said\n" + lay.stderr[-2000:])
    return "setuptools build_py"


def _deps_dirs() -> list[str]:
    # this interpreter's site-packages: archc's dependencies (their .pth files, an editable
    # archc's finder among them, are not processed from here)
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


@pytest.mark.skipif(os.environ.get("ARCHC_SKIP_INSTALL_TEST") == "1", reason="ARCHC_SKIP_INSTALL_TEST=1")
def test_non_editable_install(tmp_path):
    src, target = tmp_path / "src", tmp_path / "site"
    _copy_package_folders(src)
    how = _install(src, target)
    pkg = target / "archc"
    for data in ("grammar/arch.lark", "dsl/stdlib/formats.arch", "dsl/stdlib/models.arch",
                 "codegen/templates/analytic.pyx.j2"):
        assert (pkg / data).is_file(), f"{how}: {data} is not installed"

    # a fresh venv whose only archc is the installed one, with this interpreter's dependencies
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, symlinks=os.name != "nt")
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "archc_test.pth").write_text("\n".join([str(target), *_deps_dirs()]) + "\n")

    # elsewhere: the installed package, every stage inside it
    where = _probe(str(python), tmp_path, isolated=True)
    assert _assert_one_tree(where) == pkg, (how, where)

    # the repository root: its archc/ comes first and must find its sibling stages
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([str(python), "-c", "import archc, archc.formats; print(archc.__file__)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, f"{how}, from {ROOT}:\n{p.stderr}"
    assert Path(p.stdout.strip()) == ROOT / "archc" / "__init__.py"
    where = _probe(str(python), ROOT, isolated=True)
    assert _assert_one_tree(where) == ROOT / "archc", (how, where)
