"""Property-based fuzzing of `archc check` with Hypothesis (issue 13, point 19: a regression
guard next to the hand-written cases of test_robustness.py).

The property: whatever file `archc check` is given, within 20 s it either exits 0 saying
"FILE: ok (...)", or exits 1 with `FILE:LINE:COL: error: MESSAGE`, the located source line and a
caret line; and it never raises anything but the diagnostics family (ArchcError). The oracle,
fuzz_support.assert_checks_cleanly, runs the command's own entry point,
`archc.cli.main(["check", FILE])`, in-process with ARCHC_DEBUG=1, so an internal error fails
with its own traceback (not only `archc: internal error` and exit 70), and a SIGALRM timer
turns a hang into a failure that shows where archc was. Two details of the contract: the line
under the diagnostic must be the located line of the file (archc counts lines by '\n'), and an
error inside a standard-library block may come first as `<std.NAME>:LINE:COL: error:` if a note
locates its use in the file (as test_robustness.py allows); an empty file has no line to show.

The inputs (fuzz_support.strategies()):
- mutations of every sample (samples/*.arch, samples/machines/*.arch), standard-library file (dsl/stdlib/*.arch) and of
  the template below: token deletion, duplication and swaps, line swaps and moves, inserted
  tokens and expressions, truncation anywhere, raw bytes inserted or overwritten (invalid
  UTF-8, NUL, BOM, form feeds, U+2028, ...), numbers replaced by huge and degenerate ones (0,
  -0, 1e308, 1e-320, 10**400, 309- and 4301-digit integers, a 5000-digit one, nan, inf, 2**63,
  0 ** -1, log2(0), ...), units swapped among every spelling of dsl/units.py and near misses,
  values nested 1 to 5000 deep in brackets and operators (around the parser's limits);
- grammar-derived designs: whole files of `tile chip system format model block run import`
  declarations with random properties, arguments and expressions built from every production
  of grammar/arch.lark;
- fuzz_support.TEMPLATE, a valid design using most of the language, with one to four of its
  values refilled (generated expressions, degenerate numbers, other units), and with a
  generated model (op and block calls, `repeat`, `if`) run on its machines: these get past the
  parser into the checker's format, machine, model and run semantics.
REGRESSIONS adds the minimal reproducer of every failure found so far, checked on every run.

How long it runs, and why this design: every test here carries the `fuzz` marker, and the
marker chooses the profile rather than whether the tests run.
- `python -m pytest` (and CI) runs them short: profile "archc-fuzz", a fixed seed
  (`derandomize=True`: a failure in CI reproduces bit for bit), QUICK_EXAMPLES per input
  family, about 45 s for the module. No shrinking by Hypothesis (minutes per failure): a
  failure shows its recipe and a reproducer minimised by delta debugging (below).
- `python -m pytest -m fuzz` (any -m expression that asks for `fuzz`, not `not fuzz`) runs the
  same tests long: profile "archc-fuzz-long", random seeds, Hypothesis's shrinking, and
  ARCHC_FUZZ_EXAMPLES examples per input family (default 10,000). Setting
  ARCHC_FUZZ_EXAMPLES=N alone does the same under any selection:
      ARCHC_FUZZ_EXAMPLES=100000 python -m pytest tests/test_fuzz.py
  A failure of the long run prints a `@reproduce_failure` blob; `--hypothesis-seed=N` replays
  a seed.
- `python -m pytest -m "not fuzz"` leaves them out when in a hurry.
One set of tests with two lengths keeps one test id per property (no "long" twins skipped in
every normal run), and the short run is exactly the long property with fewer examples.
Hypothesis stops a test soon after its first failures; to collect every distinct failure of
a long run instead, `python tests/fuzz_support.py 3000 [SEED]` surveys 3000 inputs of each
family, groups the failures by root cause and prints a minimal reproducer of each.

Neither profile writes Hypothesis's example database (database=None): nothing lands in the
repository. A failing example is printed as its recipe (`samples/h100.arch: number 14:9
'1.83' -> '1e308'`), and the final report adds a reproducer shrunk by delta debugging
(fuzz_support.minimize) as a note on the exception."""
from __future__ import annotations

import os
import re
import sys

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fuzz_support as fs

pytestmark = pytest.mark.fuzz

LONG_EXAMPLES = int(os.environ.get("ARCHC_FUZZ_EXAMPLES") or 10_000)

_COMMON = dict(database=None, deadline=None, suppress_health_check=list(HealthCheck), report_multiple_bugs=True)
# The short run does not let Hypothesis shrink (that can take minutes per failure, Hypothesis
# stops at five): the failing case is reported as its recipe plus a minimised reproducer.
settings.register_profile("archc-fuzz", derandomize=True, print_blob=False,
                          phases=(Phase.explicit, Phase.generate), **_COMMON)
# The long run shrinks, but skips the "explain" phase (it renders multi-megabyte reprs of the
# recursive expression strategy).
settings.register_profile("archc-fuzz-long", derandomize=False, print_blob=True, max_examples=LONG_EXAMPLES,
                          phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
                          **_COMMON)


def long_run(config) -> bool:
    """The long profile: ARCHC_FUZZ_EXAMPLES is set, or the -m expression asks for `fuzz`."""
    if os.environ.get("ARCHC_FUZZ_EXAMPLES"):
        return True
    expr = config.getoption("markexpr", "") or ""
    return bool(re.search(r"\bfuzz\b", expr)) and not re.search(r"\bnot\s+fuzz\b", expr)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _final_run() -> bool:
    try:
        from hypothesis.control import current_build_context
        return bool(current_build_context().is_final)
    except Exception:
        return False


def oracle(case: fs.Case, directory) -> None:
    """fs.assert_checks_cleanly; on Hypothesis's final (reported) run of a failing example, a
    reproducer minimised by delta debugging is attached to the exception as a note."""
    try:
        fs.assert_checks_cleanly(case, directory)
    except Exception as e:
        if _final_run() and "took more than" not in str(e):
            signature = fs.failure_signature(e)

            def same_failure(data: bytes) -> bool:
                try:
                    fs.assert_checks_cleanly(fs.Case("minimize", (), data), directory)
                except Exception as again:
                    return fs.failure_signature(again) == signature
                return False
            small = fs.minimize(case.data, same_failure)
            e.add_note(f"minimal reproducer ({len(small)} bytes, same {signature}):\n{small!r}")
        raise


def fuzz(request, strategy, examples: int, directory) -> None:
    """Run the oracle over `strategy`: `examples` times in the short profile, the long count
    in the long one."""
    if long_run(request.config):
        profile = settings.get_profile("archc-fuzz-long")
    else:
        profile = settings(settings.get_profile("archc-fuzz"), max_examples=examples)

    @profile
    @given(case=strategy)
    def property_holds(case):
        oracle(case, directory)
    property_holds()


# ---- the properties ----------------------------------------------------------------------------------

# Examples per input family in the short run (fuzz_support.strategies() has the families), sized
# to about 45 s in all on one core; the long run takes ARCHC_FUZZ_EXAMPLES of each.
QUICK_EXAMPLES = {
    "mutated_corpus": 500,            # any mix of edits of a sample, a standard-library file, the template
    "degenerate_numbers": 280,        # numbers only: huge, tiny, negative zero, nan, 4301 digits ...
    "unit_swaps": 200,                # units only: every spelling of dsl/units.py and near misses
    "deep_nesting": 200,              # a value nested 1 to 5000 deep in brackets or operators
    "truncation_and_raw_bytes": 250,  # cut anywhere, lines moved, raw bytes in or over the text
    "grammar_designs": 250,           # whole files generated from the grammar's productions
    "template_designs": 320,          # a valid design with one to four values refilled
    "model_designs": 200,             # a generated model (op calls, repeat, if) run on the template's machines
}


@pytest.mark.parametrize("inputs", list(QUICK_EXAMPLES))
def test_archc_check_keeps_its_contract(request, fuzz_dir, inputs):
    fuzz(request, fs.strategies()[inputs], QUICK_EXAMPLES[inputs], fuzz_dir)


# ---- inputs that broke archc once ---------------------------------------------------------------

def _in_template(old: str, new: str) -> bytes:
    assert old in fs.VALID_TEMPLATE
    return fs.VALID_TEMPLATE.replace(old, new, 1).encode()


# The minimal reproducer of every failure the fuzzer has found, and of the defects it was written
# against (issue 13), checked on every run whatever the seed.
REGRESSIONS = {
    # Source.line split lines with str.splitlines() ('\r', '\f', '\v', '\x1c'-'\x1e', '\x85',
    # U+2028/9) while the parser counts '\n' only: the diagnostic showed another line
    "lone_cr_in_a_line": b"tile t {\r clock 1 GB/s }\n",
    "form_feed_line": b"\x0c\ntile t { clock 1 GB/s }\n",
    # int() refuses more than 4300 digits, leading zeros included (lark VisitError)
    "4301_digits_with_leading_zeros": b"tile t { clock " + b"0" * 4300 + b"1 GHz }\n",
    "4301_digits": _in_template("es = 1)", "es = " + "1" * 4301 + ")"),
    "309_digits": _in_template("es = 1)", "es = 1" + "0" * 308 + ")"),
    "5000_digits": _in_template("es = 1)", "es = " + "9" * 5000 + ")"),
    "zero_to_a_negative_power": _in_template("es = 1)", "es = 0 ** -1)"),
    "log2_of_zero": _in_template("es = 1)", "es = log2(0))"),
    "sqrt_of_minus_one": _in_template("es = 1)", "es = sqrt(-1))"),
    "fp64_with_bias_1": _in_template("format wide = float(exp = 11, man = 52,",
                                     "format wide = float(exp = 11, man = 52, bias = 1,"),
    # a call in a model parameter's default: Builder._call read self._frame before any frame existed
    "call_in_a_model_default": b"model m(d = relu()) {}\n",
    "op_in_a_model_default_compared": b"tile t {}\nmodel c(i = (0) == ((x((0))))) {}\n",
    # exact integer shapes and FLOP counts beyond float: formatting or float() overflowed
    "tensor_of_1e320_elements": b"model m(x = 1) {\n  input a : [x, x, x, x]\n"
                                b"  return conv2d(a, 1, kernel = 1, padding = 1" + b"0" * 160 + b")\n}\n",
    "attention_flops_beyond_float": b"model m(x = 2) {\n  input a : [x, x, 64]\n  return attention(a, a, a, heads = 1, "
                                    b"cache = 1" + b"0" * 306 + b")\n}\n",
    # the 100,000-input long run: a `name = value` where a chip's launch cost goes (the checker
    # evaluated the keyword argument as a value), and a NUL byte in a line that runs past the
    # first 4 KiB (the diagnostic showed the line cut at 4,096 bytes)
    "keyword_as_a_launch_cost": b"tile t{clock 5GHz}chip w{launch h=1\ngrid 4of t\nnoc torus,bandwidth=2TB/s}d{s{}}",
    "nul_in_a_line_across_4_kib": b"// x\n" * 810 + b"tile t { clock 1 GHz \x00 " + b"y" * 60 + b" }\n",
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_found_inputs(name, fuzz_dir):
    fs.assert_checks_cleanly(fs.Case(name, (), REGRESSIONS[name]), fuzz_dir)


# ---- the fuzzer's own ground ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(fs.SEEDS))
def test_seeds_are_valid_and_tokenize_back(name, fuzz_dir):
    """The seeds are valid designs (mutations, refilled holes and generated models start from a
    design that checks) and the fuzzer's tokenizer gives back their exact text."""
    text = fs.SEEDS[name]
    assert fs._join(fs.tokenize(text)) == text
    code, err = fs.assert_checks_cleanly(fs.Case(name, (), text.encode()), fuzz_dir)
    assert code == 0, err


@settings(max_examples=30, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_tokenizer_round_trips(text):
    assert fs._join(fs.tokenize(text)) == text


def test_the_oracle_catches_a_broken_contract(fuzz_dir, monkeypatch):
    """An internal error, a hang, a diagnostic without caret or under the wrong line, and an exit
    code other than 0 or 1 all fail the oracle."""
    import archc.cli
    case = fs.Case("planted", (), b"tile t {}\nchip c {}\n")

    def planted(behaviour):
        def main(argv):
            return behaviour(argv[-1])  # check [-I DIR] PATH
        monkeypatch.setattr(archc.cli, "main", main)

    def boom(path):
        raise ZeroDivisionError("planted")
    planted(boom)
    with pytest.raises(ZeroDivisionError, match="planted"):
        fs.assert_checks_cleanly(case, fuzz_dir)

    def hang(path):
        while True:
            pass
    planted(hang)
    with pytest.raises(AssertionError, match="took more than"):
        fs.assert_checks_cleanly(case, fuzz_dir, limit=0.2)

    def no_caret(path):
        print(f"{path}:1:1: error: planted", file=sys.stderr)
        return 1
    planted(no_caret)
    with pytest.raises(AssertionError, match="no caret line"):
        fs.assert_checks_cleanly(case, fuzz_dir)

    def wrong_line(path):
        print(f"{path}:2:1: error: planted\n    tile t {{}}\n    ^", file=sys.stderr)
        return 1
    planted(wrong_line)
    with pytest.raises(AssertionError, match="not line 2 of the file"):
        fs.assert_checks_cleanly(case, fuzz_dir)

    def internal(path):
        print("archc: internal error: KeyError: 'x'", file=sys.stderr)
        return 70
    planted(internal)
    with pytest.raises(AssertionError, match="internal error"):
        fs.assert_checks_cleanly(case, fuzz_dir)

    def right(path):
        print(f"{path}:2:1: error: planted\n    chip c {{}}\n    ^^^^", file=sys.stderr)
        return 1
    planted(right)
    assert fs.assert_checks_cleanly(case, fuzz_dir)[0] == 1
