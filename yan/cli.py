"""The ``yan`` command: ``yan {train,generate,eval,bench,plot-run,info,push} ...``.

Each sub-command lives in its own module with a ``main(argv)`` function; importing lazily keeps
``yan --help`` instant and lets each module also run as ``python -m``.

Bad input is reported as one line, ``yan <command>: error: <message>``, with exit status 2:
the sub-commands turn the errors they expect into such a line themselves, and whatever
``ValueError``/``TypeError``/``FileNotFoundError``/``ImportError`` still escapes is printed the
same way here instead of as a traceback. Set ``YAN_TRACEBACK=1`` to see the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError)


def exit_with_error(prog: str, err: BaseException) -> NoReturn:
    """Print ``<prog>: error: <message>`` on one line to stderr and exit with status 2.

    argparse's format and status, without the usage block: the options were parsed, it is
    their values (or the files they name) that are wrong, and the message says which.
    """
    if os.environ.get("YAN_TRACEBACK"):
        raise err
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2) from None


COMMANDS = {
    "train": ("yan.train", "train YAN (stage 1, stage 2, fine-tuning); also runs under torchrun"),
    "generate": ("yan.generate", "generate text with a trained checkpoint"),
    "eval": ("yan.evaluate", "evaluate a checkpoint on a task and write JSON/markdown tables"),
    "bench": ("yan.bench", "latency / tokens-per-second and quality benchmarks vs baselines"),
    "plot-run": ("yan.plot_run", "render the loss curves of a training run to PNG"),
    "info": ("yan.info", "print a preset's configuration and parameter counts"),
    "push": ("yan.hub", "push a checkpoint folder to the Hugging Face hub (with a model card)"),
}


def _usage() -> str:
    lines = ["usage: yan <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "run 'yan <command> --help' for the options of a command"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"yan: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[name][0])
    try:
        module.main(rest)
    except USER_ERRORS as err:
        exit_with_error(f"yan {name}", err)


if __name__ == "__main__":
    main()
