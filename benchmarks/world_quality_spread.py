"""The spread of the world's small-sample quality figures over seeds: what the bounds in
tests/test_world_quality.py are set from (mean minus three standard deviations, and at least one
sample's worth below the mean: ``smoke_quality.bound``).

    python benchmarks/world_quality_spread.py [--seeds 10]
"""

from __future__ import annotations

import argparse


def main() -> None:
    from faceid_cli.world.smoke_quality import SMALL, bound, spread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    print(f"small samples: {SMALL}")
    print(f"{'figure':<28} {'mean':>7} {'std':>7} {'bound':>7}")
    for name, (mean, std) in spread(range(args.seeds)).items():
        print(f"{name:<28} {mean:7.3f} {std:7.3f} {bound(name, mean, std):7.3f}")


if __name__ == "__main__":
    main()
