"""smrun as a Kubernetes controller (``smrun operator``, docs/operator.md).

``crd`` turns schemas/plan.schema.json into the ``plans.smrun.io`` CustomResourceDefinition;
``manifests`` prints everything an install needs; ``planobject`` turns a Plan object into the
same :class:`~statemachine.plan.Plan` a plan file loads to; ``reporter`` writes the object's
status and Events from the engine's progress events; ``worker`` runs one Plan (validate,
preflight, engine) on a thread; ``app`` wires those into kopf. kopf is an optional dependency
(the ``operator`` extra) and only ``app`` imports it.
"""
