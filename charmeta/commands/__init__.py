"""Sub-commands of the ``charmeta`` CLI, one module each (see ``charmeta.cli``)."""
