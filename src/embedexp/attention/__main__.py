"""`python -m embedexp.attention [overrides]`: the attention-map analysis (see `embedexp.attention.command`)."""

from embedexp.attention.command import main

if __name__ == "__main__":
    main()
