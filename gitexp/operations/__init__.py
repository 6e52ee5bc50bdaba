"""The operations layer: what a command does, as library functions with typed results.

Each ``git exp`` command that changes something parses its arguments, calls one function
here and prints what it returns (the shape of sqlite-utils: the library never imports
click, raises :class:`gitexp.errors.GitExpError` subclasses, and says nothing itself).
Bad input is refused before anything is written. The modules are imported by the commands
that need them, so ``import gitexp.operations`` costs nothing:

* :mod:`.remove`: ``rm`` (ref, notes, queue entry, run directory; ``--force`` stops the run)
* :mod:`.cancel`: ``cancel`` (drop a queued run, stop a running one, wherever it runs)
* :mod:`.retry`: ``queue retry`` (a new queued attempt of ended runs)
* :mod:`.resume`: ``resume`` (a new attempt from a checkpoint: here, queued or on a target)
* :mod:`.apply`: ``apply`` (plan which files of an experiment to write, then write them)
* :mod:`.submit`: hand made experiments to a run target's runner (``run --on``, ``resume --on``)
"""
