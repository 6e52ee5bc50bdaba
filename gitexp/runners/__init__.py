"""Runners decide where and when the one executor (``git exp _exec <sha>``) starts.

``base`` holds the interface and the transport (where a command runs); ``local`` starts the
executor on this machine, in the foreground or detached.
"""
