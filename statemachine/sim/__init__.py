"""Simulated Kubernetes clusters with KubeVirt, CDI and Job controllers (``smrun sim serve``).

Entry points: :class:`statemachine.sim.cluster.SimulatedClusters` (two clusters in one process),
:mod:`statemachine.sim.store` (the object store controllers code against),
:mod:`statemachine.sim.controller` (the controller framework) and
:func:`statemachine.sim.serve.main` (the command). Nothing is imported here, so importing the
package is cheap.
"""
