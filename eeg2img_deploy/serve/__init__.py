"""Serving: ``serve`` (Triton's core via PyTriton), ``client`` (tritonclient) and ``triton-repo`` (a model repository)."""
