"""``python -m simulator``: the same command as ``chatgptes sim``."""

from simulator.cli import sim

if __name__ == "__main__":
    sim(prog_name="python -m simulator")
