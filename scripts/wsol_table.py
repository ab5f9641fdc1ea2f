"""The WSOL results table from searches: ``python scripts/wsol_table.py outputs/search``."""

from camlab.search.table import main

if __name__ == "__main__":
    main()
