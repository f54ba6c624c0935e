"""``trakr bench``, one module per job.

* :mod:`~trakr.bench.options`: what a bench runs (:class:`BenchOptions`) and each run's config;
* :mod:`~trakr.bench.sources`: sample cameras, preloaded frames, reference detector, private Redis;
* :mod:`~trakr.bench.machine`: the machine, and how busy other work kept it;
* :mod:`~trakr.bench.measure`: one trakr pipeline run, read through ``Pipeline.snapshot()``;
* :mod:`~trakr.bench.references`: the raw model and the naive loop;
* :mod:`~trakr.bench.gate_check`, :mod:`~trakr.bench.capture_check`: the optional checks;
* :mod:`~trakr.bench.targets`: ratios and targets; :mod:`~trakr.bench.results`: typed results
  and their JSON; :mod:`~trakr.bench.report`, :mod:`~trakr.bench.plot`: what is printed and drawn;
* :mod:`~trakr.bench.run`: :func:`run_bench`, which runs them in order.
"""
