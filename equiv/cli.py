"""The ``seqcheck`` command: ``check`` a candidate, ``report`` on every claim, list ``forms`` and a
form's input ``options``.

``seqcheck check`` exits 0 when the candidate passed, 1 when it failed (a wrong answer; the
reproducer is printed), 2 on an error (the candidate cannot run as declared, or bad arguments).
"""

from __future__ import annotations

import argparse
import ast
import secrets
import sys

from seqcheck.equiv.convert import BACKENDS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="seqcheck", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="check MODULE:FUNCTION (or file.py:FUNCTION) against a form")
    check.add_argument("candidate", help="MODULE:FUNCTION or path/to/file.py:FUNCTION")
    check.add_argument("key", help="form key, e.g. attention.flash.tiled (see `seqcheck forms`)")
    check.add_argument("--dtype", default=None, help="the candidate's working precision (float32, float16, bfloat16)")
    check.add_argument("--backend", default="numpy", choices=BACKENDS, help="array library the candidate takes")
    check.add_argument("--max-examples", type=int, default=100)
    check.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: a fresh one, printed)")
    check.add_argument("--fix", action="append", default=[], metavar="OPTION=VALUE",
                       help="narrow the inputs: a Python literal, or a range LOW..HIGH (ints, or floats if "
                            "either end has a '.'), per option of the form's strategy (`seqcheck options KEY` "
                            "lists them), e.g. --fix softcap=None --fix head_dim=64 --fix q_len=60..130; repeatable")
    check.add_argument("--size", default=None, choices=["small", "default", "large"],
                       help="size tier of the inputs: small (tiny shapes), default (mostly small, some at "
                            "production tile sizes), large (production tile sizes only)")
    check.add_argument("--timeout", type=float, default=120.0,
                       help="seconds one example may take before the check ends in error (default 120)")
    check.add_argument("--grad", action="store_true",
                       help="judge the candidate's backward (torch autograd; jax.grad with --backend jax) against the "
                            "form's gradient oracle (with --dtype: the baseline of its backward in that dtype)")

    report = commands.add_parser("report", help="run every claim and write index.html, report.json, report.md")
    report.add_argument("--out", default="report")
    report.add_argument("--profile", default="dev", choices=["dev", "ci", "thorough", "sim"])
    report.add_argument("--only", default=None, help="run only the claims whose key contains this text")
    report.add_argument("--workers", type=int, default=None,
                        help="processes to run the claims and sweep points on (default: one per CPU)")

    commands.add_parser("forms", help="list the registered forms and claims")
    options_parser = commands.add_parser("options", help="list the input options a form's strategy accepts")
    options_parser.add_argument("key", help="form key, e.g. attention.flash.tiled")

    options = parser.parse_args(argv)
    from seqcheck import equiv
    from seqcheck.properties import inputs_for

    if options.command == "forms":
        print("forms:\n" + "\n".join(f"  {key}" for key in equiv.forms()))
        print("claims:\n" + "\n".join(f"  {claim.key}: {claim.statement}" for claim in equiv.claims()))
        return 0
    if options.command == "report":
        from seqcheck.equiv.report import ReportArgumentError, run_report

        try:
            records = run_report(out=options.out, profile=options.profile, only=options.only,
                                 workers=options.workers)["records"]
        except ReportArgumentError as error:
            print(f"seqcheck report: {error}", file=sys.stderr)
            return 2
        from seqcheck.equiv.report_records import base_status

        return 1 if any(base_status(record.status) in ("failed", "error") for record in records) else 0
    if options.command == "options":
        from seqcheck.properties import options as form_options

        try:
            described = form_options(options.key)
        except KeyError as error:
            print(f"seqcheck options: {error.args[0]}", file=sys.stderr)
            return 2
        width = max(map(len, described), default=0)
        print("\n".join(f"  {name:{width}}  {text}" for name, text in described.items()))
        return 0
    try:
        equiv.get_form(options.key)
        fixed = _fixed(options.fix) | ({"size": options.size} if options.size else {})
        inputs = inputs_for(options.key, **fixed) if fixed else None
    except (KeyError, ValueError, TypeError) as error:
        print(f"seqcheck check: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    try:
        candidate = equiv.load_candidate(options.candidate)
    except ValueError as error:
        print(f"seqcheck check: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the user's file raised while it was imported
        print(f"seqcheck check: importing {options.candidate.rpartition(':')[0]!r} raised "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return 2
    seed = secrets.randbits(32) if options.seed is None else options.seed
    what = "the gradients of " if options.grad else ""
    print(f"seqcheck check: {options.candidate} against {what}{options.key} [{options.dtype or 'float64'}, "
          f"{options.backend}], seed {seed}", file=sys.stderr, flush=True)
    try:
        result = equiv.check(candidate, options.key, dtype=options.dtype, backend=options.backend,
                             max_examples=options.max_examples, seed=seed, inputs=inputs,
                             timeout=options.timeout, grad=options.grad)
    except (KeyError, ValueError, TypeError) as error:
        print(f"seqcheck check: {error}", file=sys.stderr)
        return 2
    print(result, flush=True)
    return {"passed": 0, "failed": 1}.get(result.status, 2)


def _fixed(pairs: list[str]) -> dict:
    """``--fix`` values: a Python literal, or ``LOW..HIGH`` for a range (a Hypothesis strategy)."""
    from hypothesis import strategies as st

    fixed = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--fix: expected OPTION=VALUE or OPTION=LOW..HIGH, got {pair!r}")
        low, dots, high = text.partition("..")
        if dots:
            try:
                ends = [ast.literal_eval(end) for end in (low, high)]
            except (ValueError, SyntaxError):
                ends = None
            if ends is None or not all(isinstance(end, (int, float)) and not isinstance(end, bool) for end in ends):
                raise ValueError(f"--fix {name}: {text!r} is not a range LOW..HIGH of numbers")
            if ends[0] > ends[1]:
                raise ValueError(f"--fix {name}: the range {text!r} is empty (LOW > HIGH)")
            is_int = all(isinstance(end, int) for end in ends)
            fixed[name] = st.integers(*ends) if is_int else st.floats(float(ends[0]), float(ends[1]))
            continue
        try:
            fixed[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"--fix {name}: {text!r} is not a Python literal (None, True, 64, 0.5, ...) "
                             "nor a range LOW..HIGH") from None
    return fixed


if __name__ == "__main__":
    sys.exit(main())
