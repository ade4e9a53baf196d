"""``python -m yan.bench ...``: the same as ``yan bench ...``."""

from yan.bench.cli import main

if __name__ == "__main__":
    main()
