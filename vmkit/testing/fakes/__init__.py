"""HTTP fakes of cloud APIs, served on 127.0.0.1 for the real SDK clients.

Each fake keeps state the way its cloud does and answers in the cloud's REST
shapes, so a test exercises the SDK's serialization, error parsing and
long-running-operation polling. Every fake takes a
:class:`vmkit.testing.faults.FaultPlan` and counts the requests it served.
"""
