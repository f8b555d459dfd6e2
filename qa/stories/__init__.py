"""Stories, not files: near-duplicate copies grouped, same-event articles linked, and what the front ends build
on them (timelines, digests, conflicting reports). Clusters are assigned inside each store commit (store.py)."""
