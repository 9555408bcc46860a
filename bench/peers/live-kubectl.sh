#!/usr/bin/env bash
# A live migration of a plan's VMs with kubectl alone: what an admin would script without smrun.
#
#   live-kubectl.sh KUBECONFIG MANIFESTS
#
# MANIFESTS is laid out by bench/peers/prepare.py (the same manifests smrun's live itinerary
# applies, written out before the run as a person would write them by hand). The script does what
# the itinerary does, in the same order, with `kubectl wait` for each wait: the CA exchange once,
# then one background job per VM (Started, PreHook, CreateEmptyDataVolumes, EnsureResources,
# CreateStandbyVM, owner references, WaitForTargetVMI, CreateTargetMigration,
# WaitForTargetMigration, CreateSourceMigration, WaitForStateTransfer, WaitForTargetVM,
# WaitForSourceHalted, Cleanup). It has no journal, no resume, no undo and no preflight: it is a
# speed baseline, not a safe tool. Exit status: 0 when every VM's job succeeded.
set -euo pipefail

export KUBECONFIG="$1"
DIR="$2"
S=(kubectl --context source --request-timeout=30s)
T=(kubectl --context target --request-timeout=30s)
TIMEOUT=600s

# kubectl wait refuses an object that does not exist yet; a script polls until it does.
exists() {  # exists CTX-ARRAY-NAME NAMESPACE RESOURCE/NAME
  local -n k=$1
  until "${k[@]}" -n "$2" get "$3" -o name >/dev/null 2>&1; do sleep 0.1; done
}

# An object several VMs need (a shared Secret): apply again if two jobs raced on its create.
apply_retry() {  # apply_retry CTX-ARRAY-NAME FILE
  local -n k=$1
  local i
  for i in 1 2 3 4 5; do
    "${k[@]}" apply -f "$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "${k[@]}" apply -f "$2" >/dev/null
}

has_docs() { grep -q '^kind:' "$1"; }

# Once per plan: each KubeVirt trusts the other's CA (the itinerary's setup states).
trust() {  # trust CTX-ARRAY-NAME PEER-ARRAY-NAME
  local -n k=$1 p=$2
  local peer_ca
  peer_ca=$("${p[@]}" -n kubevirt get configmap kubevirt-ca -o jsonpath='{.data.ca-bundle}')
  if ! "${k[@]}" -n kubevirt get configmap kubevirt-ca -o jsonpath='{.data.ca-bundle}' \
      | grep -qF -- "$(printf '%s' "$peer_ca" | head -n 2 | tail -n 1)"; then
    "${k[@]}" -n kubevirt patch configmap kubevirt-external-ca --type=merge \
      -p "$(jq -n --arg b "$peer_ca" '{data: {"ca-bundle": $b}}')" >/dev/null
    until "${k[@]}" -n kubevirt get configmap kubevirt-ca -o jsonpath='{.data.ca-bundle}' \
        | grep -qF -- "$(printf '%s' "$peer_ca" | head -n 2 | tail -n 1)"; do sleep 0.1; done
  fi
}

migrate() {  # migrate FOLDER
  local d="$1" NS VM DVS PVCS HOOK_JOB TARGET_VMIM SOURCE_VMIM MIGRATION_ID
  # shellcheck disable=SC1091
  source "$d/vars"
  apply_retry T "$d/namespace.yaml"
  if [ -n "$HOOK_JOB" ]; then
    "${T[@]}" apply -f "$d/prehook.yaml" >/dev/null
    "${T[@]}" -n "$NS" wait "job/$HOOK_JOB" --for=condition=Complete --timeout=$TIMEOUT >/dev/null
  fi
  if has_docs "$d/datavolumes.yaml"; then
    "${T[@]}" apply -f "$d/datavolumes.yaml" >/dev/null
    for dv in $DVS; do
      "${T[@]}" -n "$NS" wait "datavolume/$dv" --for=jsonpath='{.status.phase}'=Succeeded \
        --timeout=$TIMEOUT >/dev/null
    done
  fi
  if has_docs "$d/claims.yaml"; then
    "${T[@]}" apply -f "$d/claims.yaml" >/dev/null
  fi
  if has_docs "$d/resources.yaml"; then apply_retry T "$d/resources.yaml"; fi
  "${T[@]}" apply -f "$d/vm.yaml" >/dev/null
  local uid
  uid=$("${T[@]}" -n "$NS" get "virtualmachine/$VM" -o jsonpath='{.metadata.uid}')
  for dv in $DVS; do
    "${T[@]}" -n "$NS" patch "datavolume/$dv" --type=merge -p "{\"metadata\":{\"ownerReferences\":[{\"apiVersion\":\"kubevirt.io/v1\",\"kind\":\"VirtualMachine\",\"name\":\"$VM\",\"uid\":\"$uid\",\"blockOwnerDeletion\":true}]}}" >/dev/null
  done
  for pvc in $PVCS; do
    "${T[@]}" -n "$NS" patch "persistentvolumeclaim/$pvc" --type=merge -p "{\"metadata\":{\"ownerReferences\":[{\"apiVersion\":\"kubevirt.io/v1\",\"kind\":\"VirtualMachine\",\"name\":\"$VM\",\"uid\":\"$uid\",\"blockOwnerDeletion\":true}]}}" >/dev/null
  done
  exists T "$NS" "virtualmachineinstance/$VM"
  "${T[@]}" -n "$NS" wait "virtualmachineinstance/$VM" \
    --for=jsonpath='{.status.phase}'=WaitingForSync --timeout=$TIMEOUT >/dev/null
  "${T[@]}" apply -f "$d/target-migration.yaml" >/dev/null
  "${T[@]}" -n "$NS" wait "virtualmachineinstancemigration/$TARGET_VMIM" \
    --for=jsonpath='{.status.synchronizationAddresses[0]}' --timeout=$TIMEOUT >/dev/null
  local url
  url=$("${T[@]}" -n "$NS" get "virtualmachineinstancemigration/$TARGET_VMIM" \
    -o jsonpath='{.status.synchronizationAddresses[0]}')
  sed -e "s|<output:connectURL>|$url|" -e "s|<output:migrationID>|$MIGRATION_ID|" \
    "$d/source-migration.yaml" | "${S[@]}" apply -f - >/dev/null
  "${T[@]}" -n "$NS" wait "virtualmachineinstancemigration/$TARGET_VMIM" \
    --for=jsonpath='{.status.phase}'=Succeeded --timeout=$TIMEOUT >/dev/null
  "${T[@]}" -n "$NS" wait "virtualmachine/$VM" --for=jsonpath='{.status.ready}'=true \
    --timeout=$TIMEOUT >/dev/null
  "${S[@]}" -n "$NS" wait "virtualmachine/$VM" --for=jsonpath='{.status.printableStatus}'=Stopped \
    --timeout=$TIMEOUT >/dev/null
  "${T[@]}" -n "$NS" delete "virtualmachineinstancemigration/$TARGET_VMIM" --ignore-not-found >/dev/null
  "${S[@]}" -n "$NS" delete "virtualmachineinstancemigration/$SOURCE_VMIM" --ignore-not-found >/dev/null
  echo "$NS/$VM: Completed"
}

trust T S
trust S T
pids=()
while read -r folder; do
  migrate "$DIR/$folder" &
  pids+=($!)
done < "$DIR/VMS"
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
echo "finished: $(( ${#pids[@]} - failed )) completed, $failed failed"
[ "$failed" -eq 0 ]
