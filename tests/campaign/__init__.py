"""A seeded fault campaign, as Jepsen tests databases: a nemesis breaks a real fleet on a
schedule while a workload runs, and a checker proves invariants from what the site saw.

- ``fleet``: a redis-server of the campaign's own (append-only, so a restart keeps its
  data), the simulator with faults and a ledger, worker processes the nemesis may kill,
  freeze or stop (restarted as a process supervisor would), and ``chatgptes serve``.
- ``nemesis``: from a seed, a schedule of faults (freeze, kill, terminate a worker; stall,
  pause, restart or fill Redis; cancel, retry or expire a batch; poison stored requests;
  edit the proxies file), carried out one after another, each noted with its moments.
- ``workload``: batches enqueued through the CLI and chat completions through the API,
  each prompt carrying a tag of its own.
- ``checker``: reads the simulator's ledger and Redis, never the worker's own view, and
  proves: every prompt has exactly one result, and the right one; nothing of a cancelled
  batch reached the site after ``cancel`` returned; prompts answered twice were on the
  wire at a lapse; no worker exited on its own; no key is left without a TTL; the counts
  are exact.

``python -m tests.campaign --seed 7 --seconds 60`` runs one; a failing run prints its seed,
and the same seed replays the same schedule. ``make chaos`` runs three seeds;
``make campaign SEED=… MINUTES=…`` runs longer ones.
"""
