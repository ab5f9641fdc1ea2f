#!/usr/bin/env python
"""``python scripts/summarize.py <sweep dir>``: summary.md / .csv / .png of a multirun."""

from camlab.summarize import main

if __name__ == "__main__":
    main()
