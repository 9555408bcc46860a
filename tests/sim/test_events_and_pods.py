"""Events (core v1 and events.k8s.io/v1), virt-launcher pods, Job pods and ``kubectl logs``,
through kubectl, the typed ``kubernetes`` client and lightkube (issue 18 items 8 and 9)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from polling import wait_for

NS = "default"
MEMORY = {"guest": "1Gi"}


def vm_body(name: str, run_strategy: str = "Always", **domain: Any) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"runStrategy": run_strategy, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"domain": {"devices": {}, **domain},
                         "volumes": [{"name": "root", "containerDisk": {
                             "image": "quay.io/containerdisks/fedora:41"}}]}}}}


def core_api(sim: SimulatedClusters, cluster: str = "source") -> Any:
    from kubernetes import client, config
    return client.CoreV1Api(config.new_client_from_config(
        config_file=str(sim.kubeconfig_path), context=sim.context_name(cluster)))


def lightkube_client(sim: SimulatedClusters, cluster: str = "source") -> Any:
    from lightkube import Client, KubeConfig
    return Client(config=KubeConfig.from_file(str(sim.kubeconfig_path))
                  .get(context_name=sim.context_name(cluster)))


def running_vm(sim: SimulatedClusters, name: str = "vm1") -> dict[str, Any]:
    s = sim.store("source")
    s.create("VirtualMachine", vm_body(name, memory=MEMORY))
    return wait_for(lambda: s.get("VirtualMachineInstance", NS, name)
                    if s.get("VirtualMachineInstance", NS, name)["status"]["phase"] == "Running"
                    else None)


# ---------------------------------------------------------------------- events
def test_vm_start_records_the_upstream_events(sim: SimulatedClusters,
                                              kubectl: Callable[..., Any]) -> None:
    vmi = running_vm(sim)
    out = kubectl("describe", "vm", "vm1").stdout
    events_part = out[out.index("Events:"):]
    assert "SuccessfulCreate" in events_part and "virtualmachine-controller" in events_part
    assert ("Started the virtual machine by creating the new virtual machine instance vm1"
            in events_part)
    listed = kubectl("events", "--for", "vmi/vm1").stdout
    pod = "virt-launcher-vm1-sou01"
    for text in (f"Created virtual machine pod {pod}", "VirtualMachineInstance defined.",
                 "VirtualMachineInstance started."):
        assert text in listed, listed
    api = core_api(sim)
    evs = api.list_namespaced_event(
        NS, field_selector=f"involvedObject.name=vm1,involvedObject.kind=VirtualMachineInstance,"
                           f"involvedObject.uid={vmi['metadata']['uid']}").items
    by_reason = {e.reason: e for e in evs}
    assert set(by_reason) == {"SuccessfulCreate", "Created", "Started"}
    started = by_reason["Started"]
    assert (started.type, started.source.component, started.source.host) == (
        "Normal", "virt-handler", "source-node01")
    assert started.reporting_component == "virt-handler"
    assert started.reporting_instance == "source-node01"
    assert started.count == 1 and started.first_timestamp and started.last_timestamp
    assert started.involved_object.api_version == "kubevirt.io/v1"
    assert started.metadata.name.startswith("vm1.")


def test_events_k8s_io_is_a_view_of_the_same_events(sim: SimulatedClusters,
                                                    kubectl: Callable[..., Any]) -> None:
    running_vm(sim)
    from lightkube.resources.core_v1 import Event as CoreEvent
    from lightkube.resources.events_v1 import Event
    lk = lightkube_client(sim)
    old_style = {e.metadata.name: e for e in lk.list(CoreEvent, namespace=NS)}
    # Recorded the client-go way (no eventTime: null in events.k8s.io, as upstream converts
    # it), so read them with kubectl, which does not require it.
    listed = json.loads(kubectl("get", "events.v1.events.k8s.io", "-o", "json").stdout)["items"]
    new_style = {e["metadata"]["name"]: e for e in listed}
    assert set(new_style) == set(old_style) and new_style
    for name, ev in new_style.items():
        core = old_style[name]
        assert ev["apiVersion"] == "events.k8s.io/v1"
        assert ev["note"] == core.message
        assert ev["regarding"]["name"] == core.involvedObject.name
        assert ev["reportingController"] == core.reportingComponent
        assert ev["deprecatedCount"] == core.count
        assert ev["deprecatedSource"]["component"] == core.source.component
        assert "message" not in ev and "involvedObject" not in ev
    # Written through events.k8s.io, read through core v1, and back.
    from lightkube.models.core_v1 import ObjectReference
    from lightkube.models.meta_v1 import ObjectMeta
    lk.create(Event(metadata=ObjectMeta(name="mine", namespace=NS), type="Normal",
                    reason="Tested", note="written as events.k8s.io",
                    regarding=ObjectReference(kind="ConfigMap", name="cm", namespace=NS),
                    reportingController="tester", reportingInstance="here", action="Test",
                    eventTime="2026-01-01T00:00:00.000000Z"))
    back = core_api(sim).read_namespaced_event("mine", NS)
    assert (back.message, back.involved_object.name, back.reporting_component) == (
        "written as events.k8s.io", "cm", "tester")
    again = lk.get(Event, "mine", namespace=NS)
    assert (again.note, again.regarding.name) == ("written as events.k8s.io", "cm")
    proc = kubectl("get", "events.v1.events.k8s.io", "nope", check=False)
    assert 'events.events.k8s.io "nope" not found' in proc.stderr


def test_repeated_events_are_aggregated_and_expire(make_sim: Callable[..., SimulatedClusters]
                                                   ) -> None:
    sim = make_sim(event_ttl=1.5, tick=0.02)
    s = sim.store("source")
    # A VM without memory: every retry of its VMI create is the same FailedCreate event.
    s.create("VirtualMachine", vm_body("nomem"))
    api = core_api(sim)

    def failed_create() -> Any:
        evs = api.list_namespaced_event(NS, field_selector="involvedObject.name=nomem,"
                                                           "reason=FailedCreate").items
        return evs[0] if evs and evs[0].count >= 2 else None
    ev = wait_for(failed_create, timeout=10)
    assert ev.type == "Warning" and ev.last_timestamp >= ev.first_timestamp
    s.delete("VirtualMachine", NS, "nomem")
    name = ev.metadata.name
    wait_for(lambda: not [e for e in api.list_namespaced_event(NS).items
                          if e.metadata.name == name], timeout=10, what="the event to expire")


# ---------------------------------------------------------------------- pods
def test_running_vmi_has_a_virt_launcher_pod(sim: SimulatedClusters,
                                             kubectl: Callable[..., Any]) -> None:
    vmi = running_vm(sim)
    api = core_api(sim)
    pods = api.list_namespaced_pod(NS, label_selector="kubevirt.io=virt-launcher").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.metadata.name == "virt-launcher-vm1-sou01"
    labels = pod.metadata.labels
    assert labels["kubevirt.io/created-by"] == vmi["metadata"]["uid"]
    assert labels["vm.kubevirt.io/name"] == "vm1" and labels["app"] == "vm1"
    (ref,) = pod.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == (
        "VirtualMachineInstance", "vm1", vmi["metadata"]["uid"], True, True)
    assert pod.spec.node_name == "source-node01" == vmi["status"]["nodeName"]
    assert pod.spec.restart_policy == "Never"
    assert [c.name for c in pod.spec.containers] == ["compute", "volumeroot", "guest-console-log"]
    assert pod.status.phase == "Running"
    assert all(cs.ready and cs.image_id for cs in pod.status.container_statuses)
    assert vmi["status"]["activePods"] == {pod.metadata.uid: "source-node01"}
    table = kubectl("get", "pods", "-l", "kubevirt.io=virt-launcher").stdout
    assert "virt-launcher-vm1-sou01" in table
    logs = kubectl("logs", "virt-launcher-vm1-sou01").stdout  # default container: compute
    assert json.loads(logs.splitlines()[0])["component"] == "virt-launcher"
    from lightkube.resources.core_v1 import Pod
    assert [p.metadata.name for p in lightkube_client(sim).list(Pod, namespace=NS)] == [
        "virt-launcher-vm1-sou01"]


def test_stopped_vm_leaves_no_pod(sim: SimulatedClusters, kubectl: Callable[..., Any]) -> None:
    vmi = running_vm(sim)
    s = sim.store("source")
    s.mutate("VirtualMachine", NS, "vm1", lambda o: o["spec"].update({"runStrategy": "Halted"}))
    wait_for(lambda: s.try_get("VirtualMachineInstance", NS, "vm1") is None)
    assert core_api(sim).list_namespaced_pod(NS).items == []
    reasons = [e["reason"] for e in s.list("Event", NS, field_selector=(
        f"involvedObject.uid={vmi['metadata']['uid']}"))]
    for reason in ("ShuttingDown", "Stopped", "SuccessfulDelete"):
        assert reason in reasons
    vm_events = kubectl("events", "--for", "vm/vm1").stdout
    assert (f"Stopped the virtual machine by deleting the virtual machine instance "
            f"{vmi['metadata']['uid']}") in vm_events


def test_local_migration_moves_the_pod(sim: SimulatedClusters) -> None:
    vmi = running_vm(sim)
    s = sim.store("source")
    vmim = s.create("VirtualMachineInstanceMigration", {
        "metadata": {"name": "mig", "namespace": NS}, "spec": {"vmiName": "vm1"}})
    wait_for(lambda: s.get("VirtualMachineInstanceMigration", NS, "mig")["status"]["phase"]
             == "Succeeded")
    api = core_api(sim)
    pods = {p.metadata.name: p for p in api.list_namespaced_pod(NS).items}
    source, target = pods["virt-launcher-vm1-sou01"], pods["virt-launcher-vm1-sou02"]
    assert source.status.phase == "Succeeded"
    assert all(cs.state.terminated.exit_code == 0 for cs in source.status.container_statuses)
    assert target.status.phase == "Running" and target.spec.node_name == "source-node02"
    assert target.metadata.labels["kubevirt.io/migrationJobUID"] == vmim["metadata"]["uid"]
    after = s.get("VirtualMachineInstance", NS, "vm1")["status"]
    assert after["activePods"] == {target.metadata.uid: "source-node02"}
    assert after["migrationState"]["targetPod"] == "virt-launcher-vm1-sou02"
    on_vmim = {e.reason: e.message for e in api.list_namespaced_event(
        NS, field_selector="involvedObject.kind=VirtualMachineInstanceMigration").items}
    assert on_vmim["SuccessfulCreate"] == "Created migration target pod virt-launcher-vm1-sou02"
    assert on_vmim["SuccessfulMigration"] == "Source node reported migration succeeded"
    on_vmi = {e.reason: e.message for e in api.list_namespaced_event(
        NS, field_selector=f"involvedObject.uid={vmi['metadata']['uid']}").items}
    assert on_vmi["Migrated"] == "The VirtualMachineInstance migrated to node source-node02."
    assert on_vmi["Migrating"] == "VirtualMachineInstance is migrating."


JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: copy
  annotations: {sim.smrun.io/termination-message: '{"copiedBytes": 42}'}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: copier, image: quay.io/smrun/copier:1.0, args: ["--go"]}]
"""


def test_job_is_defaulted_runs_a_pod_and_has_logs(sim: SimulatedClusters,
                                                  kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "-f", "-", input=JOB)
    job = sim.store("source").get("Job", NS, "copy")
    uid = job["metadata"]["uid"]
    spec = job["spec"]
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "copy",
        "controller-uid": uid, "job-name": "copy"}
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"],
            spec["completionMode"], spec["suspend"]) == (1, 1, 6, "NonIndexed", False)
    container = spec["template"]["spec"]["containers"][0]
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "IfNotPresent"
    kubectl("wait", "job/copy", "--for=condition=Complete", "--timeout=20s")
    assert kubectl("logs", "job/copy").stdout == '{"copiedBytes": 42}\n'
    pods = core_api(sim).list_namespaced_pod(NS, label_selector="job-name=copy").items
    (pod,) = pods
    assert pod.metadata.labels["batch.kubernetes.io/controller-uid"] == uid
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    described = kubectl("describe", "job", "copy").stdout
    assert "Created pod: " + pod.metadata.name in described
    assert "Job completed" in described


def test_pod_log_errors(sim: SimulatedClusters, kubectl: Callable[..., Any]) -> None:
    running_vm(sim)
    proc = kubectl("logs", "virt-launcher-vm1-sou01", "-c", "nope", check=False)
    assert proc.returncode != 0
    assert "container nope is not valid for pod virt-launcher-vm1-sou01" in proc.stderr
    proc = kubectl("logs", "nosuchpod", check=False)
    assert 'pods "nosuchpod" not found' in proc.stderr


@pytest.mark.parametrize("cluster", ["source"])
def test_typed_client_lists_every_pod_kind(sim: SimulatedClusters, cluster: str,
                                           kubectl: Callable[..., Any]) -> None:
    """Launcher pods in each state and Job pods deserialize with the typed client."""
    running_vm(sim)
    kubectl("apply", "-f", "-", input=JOB)
    kubectl("wait", "job/copy", "--for=condition=Complete", "--timeout=20s")
    time.sleep(0.1)
    items = core_api(sim, cluster).list_namespaced_pod(NS).items
    assert sorted(p.metadata.name.split("-")[0] for p in items) == ["copy", "virt"]
    assert all(p.status.conditions for p in items)


def test_nodes_as_kubevirt_shows_them(sim: SimulatedClusters, kubectl: Callable[..., Any]) -> None:
    vmi = running_vm(sim)
    nodes = {n.metadata.name: n for n in core_api(sim).list_node().items}
    assert sorted(nodes) == ["source-node01", "source-node02"]
    node = nodes[vmi["status"]["nodeName"]]
    assert node.metadata.labels["kubevirt.io/schedulable"] == "true"
    assert node.metadata.annotations["kubevirt.io/heartbeat"]
    assert node.status.allocatable["devices.kubevirt.io/kvm"] == "1k"
    assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"]
    table = kubectl("get", "nodes").stdout
    assert "source-node01" in table and "Ready" in table
    described = kubectl("describe", "node", "source-node01").stdout
    assert "virt-launcher-vm1-sou01" in described
    assert "devices.kubevirt.io/kvm" in described
    assert kubectl("get", "nodes", "-l", "kubevirt.io/schedulable=true", "-o", "name").stdout \
        .split() == ["node/source-node01", "node/source-node02"]


def test_seeded_running_vmi_gets_its_pod(make_sim: Callable[..., SimulatedClusters]) -> None:
    seed = {"source": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                        "metadata": {"name": "old", "namespace": NS},
                        "spec": {"domain": {"devices": {}, "memory": MEMORY}},
                        "status": {"phase": "Running", "nodeName": "source-node01"}}],
            "target": []}
    sim = make_sim(seed=seed)
    pod = wait_for(lambda: sim.store("source").try_get("Pod", NS, "virt-launcher-old-sou01"))
    assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"] == "source-node01"
    wait_for(lambda: sim.store("source").get("VirtualMachineInstance", NS, "old")["status"].get(
        "activePods") == {pod["metadata"]["uid"]: "source-node01"})
    (listed,) = core_api(sim).list_namespaced_pod(NS).items
    assert listed.status.container_statuses[0].container_id.startswith("containerd://")
