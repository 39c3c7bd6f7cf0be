"""Sub-commands of the ``aaltohub`` command line, one module each."""
