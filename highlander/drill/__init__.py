"""Failover drills: fail a node, measure the recovery from the journals and
the cluster's logs, check that nothing was ever signed twice, report.

- :mod:`highlander.drill.scenarios`: the scenarios and the soak, run on a site;
- :mod:`highlander.drill.site`: the interface a site offers them;
- :mod:`highlander.drill.remote`: a real cluster over SSH as a site (the lab, which
  stands above the drills, is one too: :mod:`highlander.lab.site`);
- :mod:`highlander.drill.measure`: pure functions over Pacemaker log lines and
  journal entries (the phases of one failover);
- :mod:`highlander.drill.journal`: the double-sign checker over the signers' journals;
- :mod:`highlander.drill.signer` and :mod:`highlander.drill.chain`: the synthetic
  workload (``highlander demo-signer``, ``demo-chain``) whose journals it checks;
- :mod:`highlander.drill.report`: min/median/max per phase, the JSON and the
  text table, the availability estimate; :mod:`highlander.drill.timeline`: the picture.
"""
