"""Hooks bound to VMs -> the plan's ``spec.hooks`` and ``vms[].hooks``.

A Hook is converted once, the first time a VM binds it: its image, its playbook (base64 in the
Hook; decoded, checked as YAML and written next to the plan), its service account (else the
Plan's, as Forklift does) and its deadline. Its name becomes a unique DNS label. An Ansible
Automation Platform job template has no equivalent: a warning beside an image, an error alone.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from statemachine.forklift.documents import InputObject
from statemachine.forklift.scope import IGNORED, Scope
from statemachine.forklift.shape import API_VERSION, HOOK_SPEC
from statemachine.yamlsource import DocPath

__all__ = ["HOOK_STEPS", "Hooks"]

HOOK_STEPS = ("PreHook", "PostHook")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Hooks(Scope):
    """Converts hook bindings and the Hooks they name."""

    def vm_hook(self, vm_path: DocPath, j: int, binding: Mapping[str, Any]) -> dict[str, str]:
        path: DocPath = (*vm_path, "hooks", j)
        step = binding["step"]
        if step not in HOOK_STEPS:
            raise self.fk.error((*path, "step"), f'Unsupported value: "{step}": supported values: '
                                                 '"PreHook", "PostHook"')
        ns, name = self.ref(binding["hook"], self.fk)
        return {"step": step, "hook": self.hook((ns, name), path)}

    def hook(self, key: tuple[str, str], binding_path: DocPath) -> str:
        """The smrun name of the Hook ``key``, converting it the first time it is bound."""
        if key in self.hook_names:
            return self.hook_names[key]
        obj = self.objects.need(API_VERSION, "Hook", key[0], key[1], referrer=self.fk,
                                path=(*binding_path, "hook"))
        spec = obj.spec
        self.unknown(obj, ("spec",), spec, HOOK_SPEC)
        taken = set(self.hook_names.values())
        name = _label_for(obj.name, taken, key[0])
        if name != obj.name:
            self.warn(obj, ("metadata", "name"), f"the smrun hook is named {name!r} (a unique DNS label)")
        self.hook_names[key] = name
        if spec.get("aap"):
            if not spec.get("image"):
                raise obj.error(("spec", "aap"), "an Ansible Automation Platform job template: no "
                                                 "smrun equivalent (smrun runs hooks as a container "
                                                 "image)")
            self.warn(obj, ("spec", "aap"), IGNORED)
        if not spec.get("image"):
            raise obj.error(("spec", "image"), "Required value (the hook's container image)")
        hook: dict[str, Any] = {"name": name, "image": spec["image"]}
        playbook = spec.get("playbook")
        if playbook:
            try:
                text = base64.b64decode(str(playbook), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise obj.error(("spec", "playbook"), "not base64-encoded UTF-8 text") from None
            self.check_playbook(obj, text)
            file = f"{self.options.stem}-hook-{name}.yml"
            self.out.playbooks[file] = text
            hook["playbook"] = f"./{file}"
        account = spec.get("serviceAccount") or self.fk.spec.get("serviceAccount")
        if account:
            # Forklift's order: the Hook's account, else the Plan's (then the controller's).
            hook["serviceAccount"] = account
        deadline = spec.get("deadline")
        if isinstance(deadline, int) and deadline > 0:
            hook["deadline"] = deadline
        self.hooks.append(hook)
        return name


    @staticmethod
    def check_playbook(obj: InputObject, text: str) -> None:
        """The decoded playbook must be what an smrun plan accepts as one (YAML within the input
        limits, at most the size of a ConfigMap): said here, at the Hook, not later at the file
        the import wrote."""
        from statemachine import yamlsource
        from statemachine.errors import SchemaError
        from statemachine.plan import PLAYBOOK_BYTES

        try:
            yamlsource.load_all_text(text, "playbook", limit=PLAYBOOK_BYTES)
        except SchemaError as exc:
            problem = exc.problems[0] if exc.problems else None
            where = f" (line {problem.line})" if problem is not None and problem.line else ""
            why = problem.message if problem is not None else str(exc)
            raise obj.error(("spec", "playbook"), f"the decoded playbook{where}: {why}") from None


def _label_for(name: str, taken: set[str], namespace: str) -> str:
    label = name if _LABEL.match(name) and len(name) <= 63 else \
        (re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-") or "hook")
    if label in taken:
        label = f"{namespace}-{label}"[:63].strip("-")
    n = 2
    base = label
    while label in taken:
        label = f"{base[:60]}-{n}"
        n += 1
    return label
