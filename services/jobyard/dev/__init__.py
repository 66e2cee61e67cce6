"""`jobyard dev`: the whole stack on a laptop (embedded Redis, API, a worker per queue, beat)."""
