"""`python -m engine.training.launch ARGS`: torchrun with exact option names only.

torchrun's own parser accepts abbreviations, so an engine option such as `--start` after
`-m engine train-price` is refused as an ambiguous `--start-method`. Same arguments as torchrun.
"""

from __future__ import annotations


def main() -> None:
    from torch.distributed.run import get_args_parser, run

    parser = get_args_parser()
    parser.allow_abbrev = False
    run(parser.parse_args())


if __name__ == "__main__":
    main()
