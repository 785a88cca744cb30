"""`python -m embedexp.report <multirun folder> [more folders] [overrides]` (see `embedexp.report.command`)."""

from embedexp.report.command import main

if __name__ == "__main__":
    main()
