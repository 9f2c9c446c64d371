"""The ``seqcheck`` command: ``check`` a candidate, ``report`` on every claim, list ``forms``."""

from __future__ import annotations

import argparse
import ast
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
                       help="narrow the inputs (a Python literal per option of the form's strategy), "
                            "e.g. --fix softcap=None --fix head_dim=64; repeatable")

    report = commands.add_parser("report", help="run every claim and write index.html, report.json, report.md")
    report.add_argument("--out", default="report")
    report.add_argument("--profile", default="dev", choices=["dev", "ci", "thorough", "sim"])
    report.add_argument("--only", default=None, help="run only the claims whose key contains this text")
    report.add_argument("--workers", type=int, default=None,
                        help="processes to run the claims and sweep points on (default: one per CPU)")

    commands.add_parser("forms", help="list the registered forms and claims")

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
        return 1 if any(record["status"] == "failed" for record in records) else 0
    try:
        candidate = equiv.load_candidate(options.candidate)
        inputs = inputs_for(options.key, **_fixed(options.fix)) if options.fix else None
        result = equiv.check(candidate, options.key, dtype=options.dtype, backend=options.backend,
                             max_examples=options.max_examples, seed=options.seed, inputs=inputs)
    except (KeyError, ValueError, TypeError) as error:
        print(f"seqcheck check: {error}", file=sys.stderr)
        return 2
    print(result)
    return 0 if result.passed else 1


def _fixed(pairs: list[str]) -> dict:
    fixed = {}
    for pair in pairs:
        name, sep, literal = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--fix: expected OPTION=VALUE, got {pair!r}")
        try:
            fixed[name] = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            raise ValueError(f"--fix {name}: {literal!r} is not a Python literal (None, True, 64, 0.5, ...)") from None
    return fixed


if __name__ == "__main__":
    sys.exit(main())
