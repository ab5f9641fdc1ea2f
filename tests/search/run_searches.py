"""Runs several searches in one process, each exactly as ``python train.py ...`` runs it (the
CLI's Hydra entry point with sys.argv set), to pay the imports once:

    python run_searches.py <log dir> <method>:<budget> [...] -- [common overrides]
"""

import sys
from pathlib import Path

import camlab.cli

CONFIGS = Path(__file__).resolve().parent / "configs"


def main() -> None:
    log_dir, *rest = sys.argv[1:]
    split = rest.index("--") if "--" in rest else len(rest)
    runs, common = rest[:split], rest[split + 1 :]
    for run in runs:
        method, budget = run.split(":")
        sys.argv = [
            "train.py", "--config-dir", str(CONFIGS), "experiment=search_tiny",
            f"hparams_search=wsol_{method}", f"hydra.sweeper.budget={budget}",
            f"paths.log_dir={log_dir}", *common,
        ]  # fmt: skip
        try:
            camlab.cli.train_task()
        except SystemExit as err:  # Hydra exits 1 on a job's error: report which search
            if err.code:
                print(f"search {run} exited {err.code}", file=sys.stderr)
                raise


if __name__ == "__main__":
    main()
