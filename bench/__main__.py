import argparse

from . import query_split


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="vitrina benchmarks (numbers, not tests)")
    sub = parser.add_subparsers(dest="command", required=True)
    qs = sub.add_parser("query-split", help="per-query time split on a synthetic store with random vectors")
    qs.add_argument("--products", type=int, default=10_000)
    qs.add_argument("--queries", type=int, default=50)
    qs.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights) for the encode stage")
    qs.add_argument("--threads", type=int, default=None)
    qs.add_argument("--where", action="store_true", help="add a category filter to every query")
    qs.set_defaults(run=query_split.main)
    args = parser.parse_args()
    args.run(args)


main()
