"""The application on top of the library: the ``genlab`` command and what it is made of.

- :mod:`~genlab.app.config`: the run configuration (YAML, dotted overrides, validation);
- :mod:`~genlab.app.builders`: from a config to data sets, networks and models;
- :mod:`~genlab.app.train`: training a configured run (and reflow) into a run directory;
- :mod:`~genlab.app.runs`: loading a run, sampling it, writing samples;
- :mod:`~genlab.app.evaluation`: scoring a run (``genlab eval``, ``log-prob``, the NLL);
- :mod:`~genlab.app.conditioning`: labels, guidance and corrupted inputs of a sampler;
- :mod:`~genlab.app.compare`, :mod:`~genlab.app.budget`: several configs at one budget;
- :mod:`~genlab.app.reporting`, :mod:`~genlab.app.machine`: figures, tables, machine records;
- :mod:`~genlab.app.cli`: the command line.

The library below (models, paths, samplers, solvers, training, ...) never imports it.
"""
