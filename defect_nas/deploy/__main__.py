"""``python -m defect_nas.deploy MODEL_DIR [--port 8000]``: ``defect-nas serve`` for a line PC that
installed only the stand-alone predictor's needs (``pip install --no-deps defect-nas`` plus numpy,
Pillow, onnxruntime and the serve extra; see the Dockerfile): the full command line imports torch to
register the search's commands, this entry does not."""

import argparse
import sys

from defect_nas.core.errors import DefectNasError
from defect_nas.deploy.predictor import Predictor
from defect_nas.deploy.runtimes import RUNTIMES
from defect_nas.deploy.serve import run_server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m defect_nas.deploy", description="serve a model folder over HTTP")
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--runtime", choices=RUNTIMES, default="onnxruntime")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535 or (args.threads is not None and args.threads < 1):
        p.error("--port must be 0..65535 and --threads at least 1")
    try:
        run_server(Predictor(args.model, runtime=args.runtime, threads=args.threads), args.host, args.port)
    except DefectNasError as e:
        print(f"defect-nas: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
