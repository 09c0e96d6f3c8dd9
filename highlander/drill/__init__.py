"""Failover drills on the lab trio: cut, measure from the journals and the
cluster's logs, check that nothing was ever signed twice, report.

- :mod:`highlander.drill.measure`: pure functions over Pacemaker log lines and
  journal entries (the phases of one failover);
- :mod:`highlander.drill.report`: min/median/max per phase, the JSON and the
  text table, the availability estimate;
- :mod:`highlander.drill.lab`: the scenarios run against a lab
  (``highlander lab up``).
"""
