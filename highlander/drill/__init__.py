"""Failover drills: fail a node, measure the recovery from the signers' own
records and the cluster's logs, check that nothing was ever signed twice (on
a CometBFT chain: the chain's own evidence), report.

- :mod:`highlander.drill.scenarios`: the scenarios and the soak, run on a site;
- :mod:`highlander.drill.site`: the interface a site offers them;
- :mod:`highlander.drill.remote`: a real cluster over SSH as a site (the lab, which
  stands above the drills, is one too: :mod:`highlander.lab.site`);
- :mod:`highlander.drill.measure`: pure functions over Pacemaker log lines and
  journal entries (the phases of one failover);
- :mod:`highlander.drill.journal`: the double-sign checker over the signers' journals;
- :mod:`highlander.drill.chain_check`: the chain as the checker (our validator's
  signature per height, the evidence naming it, missed blocks);
- :mod:`highlander.drill.workload`: where each workload signs (the demo signer, or
  ``highlander privval`` on a chain) and its signatures as journal entries;
- :mod:`highlander.drill.signer` and :mod:`highlander.drill.chain`: the synthetic
  workload (``highlander demo-signer``, ``demo-chain``) whose journals it checks;
- :mod:`highlander.drill.report`: min/median/max per phase, the JSON and the
  text table, the expected downtime and missed blocks a year; :mod:`highlander.drill.timeline`: the picture.
"""
