"""``defect-nas``: the command line. Each subcommand group lives in its own module under ``defect_nas/cli/``.

User mistakes (bad file, flag, budget, data) raise ``DefectNasError`` somewhere below; here
they become one line on stderr and exit status 2, never a traceback; so does a file that cannot be
written (read-only folder, full disk), though each command checks its output folder before working.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from defect_nas import __version__
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import WRITE_ERRORS
from defect_nas.core.interrupts import handle_stop_signals, stop_status, stopped_by


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + error
        self.exit(2, f"defect-nas: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from defect_nas.cli import analyze, deploy, design, evaluate, explain, line, search

    parser = _Parser(prog="defect-nas", description="Design compact defect classifiers under a compute budget.")
    parser.add_argument("--version", action="version", version=f"defect-nas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    design.register(sub)
    evaluate.register(sub)
    search.register(sub)
    deploy.register(sub)
    line.register(sub)
    explain.register(sub)
    analyze.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    for category in (UserWarning, FutureWarning, DeprecationWarning):  # library chatter, not the user's business
        warnings.filterwarnings("ignore", category=category)
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # which flags the user typed (``search --config`` lets them override the file)
    handle_stop_signals()  # Ctrl-C and SIGTERM end a command cleanly: exit 130 / 143, results written
    try:
        return int(args.func(args) or 0)
    except DefectNasError as e:
        print(f"defect-nas: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            raise
        print(f"defect-nas: error: cannot access {e.filename or 'a file'}: {e.strerror}; check its permissions, "
              "free space, or choose a writable folder", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a search says where its results are (cli.search.exit_status); this is before them
        how = "" if stopped_by() == "SIGINT" else f" by {stopped_by()}"
        print(f"defect-nas: interrupted{how}: nothing half-written is kept; run the same command again "
              "(a search resumes where it stopped)", file=sys.stderr)
        return stop_status()


if __name__ == "__main__":
    sys.exit(main())
