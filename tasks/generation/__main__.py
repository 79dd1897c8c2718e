"""``python -m radialog_instruct.tasks.generation``: run the generate stage in this process.

For scale-out workers (``--shard i/n`` on each GPU, one shared work dir) and for subprocess runs
(vLLM spawns processes, which needs a real ``__main__``). ``radialog-instruct generate`` is the
user-facing command; this one skips the stage stamps and always consults the cache.
"""

from __future__ import annotations

import argparse
import sys

from ..config import load_params
from ..errors import ConfigError, InputError
from ..workdir import Workdir
from .stage import GenerationError, run_generate


def parse_shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N, e.g. 0/4")
    return int(index), int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radialog_instruct.tasks.generation", description=__doc__)
    parser.add_argument("--params", help="params file (default: the project's params.yaml)")
    parser.add_argument("--workdir", help="work dir (default: params' workdir)")
    parser.add_argument("--demo", action="store_true", help="apply the demo overlay (demo corpus, tiny model)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--shard", type=parse_shard, help="only requests of shard I of N, e.g. 0/4")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.overrides, demo=args.demo)
        run_generate(params, Workdir.at(args.workdir or params.get("workdir", "work")), shard=args.shard)
    except (ConfigError, InputError, GenerationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
