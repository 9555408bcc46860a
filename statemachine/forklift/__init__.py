"""``smrun import forklift``: turn Forklift (MTV) objects into an smrun plan.

Forklift describes a KubeVirt-to-KubeVirt move with a ``Plan`` that names two ``Provider``\\ s
(with their credential ``Secret``\\ s), a ``NetworkMap``, a ``StorageMap`` and ``Hook``\\ s. This
package reads those objects, from YAML files or from a cluster, checks their shape, and writes
an equivalent smrun plan (plus the hook playbooks and kubeconfig files it refers to).

Modules, one concept each:

- ``documents``: the objects read from YAML files (multi-document, ``kind: List``), with lines;
- ``shape``: the hand-written check of the fields the importer reads (types and enums as in
  Forklift's CRDs), one error line naming file and field;
- ``objectset``: the objects by kind and name, and the references between them;
- ``inventory``: resolving ids (object uids) to names, from the input or a cluster;
- ``credentials``: a Provider and its Secret as a kubeconfig;
- ``scope``: what one conversion shares (inputs, result, warnings, id resolution);
- ``convert``: the Plan itself (type, providers and clusters, VMs), built on ``maps``
  (NetworkMap, StorageMap), ``hooks`` (Hooks and their bindings) and ``migrations`` (cutover
  times), with a warning for every field left behind;
- ``importer``: one import run, from reading to the check of the plan it wrote;
- ``output``: writing the plan and its side files (kubeconfigs with mode 0600);
- ``fromcluster``: reading the objects of one Plan through smrun's cluster layer.

It runs no migration and changes nothing on any cluster.
"""
from __future__ import annotations
