"""Git hooks gitexp installs: ``pre-push`` checks the free disk of a run target before a push.

``disk`` holds the check (shared with ``git exp run --on``, which makes it before it pushes);
``install`` writes and removes the hook script, chaining a hook that was there before.
"""
