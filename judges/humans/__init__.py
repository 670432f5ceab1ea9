"""Human-labelled preference sets and public prompt sets: where they come from, how they load, and
representative samples of them.

Modules:
- `human_sets`: human-labelled pairwise preference sets, loaded into one canonical table.
- `public_sets`: the public human-labelled preference sets the factory knows by name, and how to get their files.
- `sampling`: representative samples of a human set: seeded, stratified by label and spread over prompts.
"""

__all__ = ["human_sets", "public_sets", "sampling"]
