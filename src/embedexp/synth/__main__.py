"""`python -m embedexp.synth [overrides]`: the pair-synthesis stage (see `embedexp.synth.app`)."""

from embedexp.synth.app import main

if __name__ == "__main__":
    main()
