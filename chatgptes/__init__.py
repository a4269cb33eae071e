"""``chatgptes``: the command line and the demo, which wire producer, worker and simulator."""
