"""What vmkit users get to test their own pipelines offline.

* :mod:`vmkit.testing.conformance` — the suite every backend passes.
* :mod:`vmkit.testing.fakes` — HTTP fakes of cloud APIs the real SDKs talk to.
* :mod:`vmkit.testing.faults` — the fault model the fakes share.
* :mod:`vmkit.testing.sim` — the simulated clouds behind ``vmkit demo``.
"""
