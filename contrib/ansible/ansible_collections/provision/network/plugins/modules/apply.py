#!/usr/bin/python
"""provision.network.apply: the target half (see the action plugin of the same name)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: apply
short_description: Reconcile a host's tun/tap devices, addresses, routes and tunnels with provision
description:
  - Runs C(provision apply) (or C(provision plan) in check mode) on the target for this host, with
    its C(network) as provision merges it (the action asks C(provision inventory --host --flat) on the
    controller, so the plan is the one C(provision plan) makes), and what its tunnels need of their peers.
  - Only what differs is changed; the plan is the diff (C(--diff)); C(changed) is true when anything
    was (or, in check mode, would be) changed. A failed apply is rolled back on that host.
  - Requires the C(provision) command on the target.
version_added: 0.1.0
options:
  key_dir:
    description: Where relative key file paths (the host's C(tunnel_private_key_file), tunnels' C(psk_file)) are found on the target.
    type: path
    default: /etc/provision
  provision:
    description: The provision command on the target.
    type: str
    default: provision
  lock_timeout:
    description: Seconds to wait for another provision run on the host.
    type: float
    default: 60
  facts:
    description: In check mode, plan against this C(provision facts) snapshot on the target instead of
      the live host (as C(provision plan --facts)).
    type: path
  controller_provision:
    description: The provision command on the controller, which merges the host's network.
    type: str
    default: provision
  inventory:
    description: Set by the action plugin; do not set it.
    type: dict
  host:
    description: Set by the action plugin; do not set it.
    type: str
  owner:
    description: Set by the action plugin (the inventory's path on the controller); do not set it.
    type: str
attributes:
  check_mode: {support: full}
  diff_mode: {support: full}
author: provision developers
"""

EXAMPLES = r"""
- name: Reconcile every host's network variables
  hosts: all
  gather_facts: false
  tasks:
    - provision.network.apply:
"""

RETURN = r"""
plan:
  description: The plan (provision's JSON plan format, schemas/plan.schema.json), in execution order.
  returned: always
  type: dict
applied:
  description: How many changes were made (0 in check mode).
  returned: always
  type: int
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}


def with_key_dir(inventory, key_dir):
    """Relative key file paths are the target's key_dir's, not the temporary inventory's."""

    def absolute(mapping, key):
        if isinstance(mapping, dict) and mapping.get(key) and not os.path.isabs(str(mapping[key])):
            mapping[key] = os.path.join(key_dir, str(mapping[key]))

    for host in inventory["all"]["hosts"].values():
        absolute(host, "tunnel_private_key_file")
        for tunnel in ((host or {}).get("network") or {}).get("tunnels") or []:
            absolute(tunnel, "psk_file")
    return inventory


def plan_text(plan):
    lines = [f"{SYMBOL[c['action']]} {c['kind']} {c['key']}  [{c['reason']}]" for c in plan.get("changes", [])]
    s = plan.get("summary", {})
    lines.append(f"{plan.get('host')}: {s.get('create', 0)} to create, {s.get('update', 0)} to update, "
                 f"{s.get('replace', 0)} to replace, {s.get('delete', 0)} to delete; {plan.get('in_sync', 0)} in sync.")
    return "\n".join(lines) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            inventory=dict(type="dict", required=True),
            host=dict(type="str", required=True),
            key_dir=dict(type="path", default="/etc/provision"),
            provision=dict(type="str", default="provision"),
            lock_timeout=dict(type="float", default=60.0),
            facts=dict(type="path"),
            owner=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    binary = module.get_bin_path(p["provision"], required=True, opt_dirs=["/usr/local/bin"])
    inventory = with_key_dir(p["inventory"], p["key_dir"])
    fd, path = tempfile.mkstemp(prefix="provision-ansible-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(inventory, f)  # JSON is YAML
        command = [binary, "plan" if module.check_mode else "apply", path, "--limit", p["host"],
                   "--connection", "local", "--json"]
        if p["owner"]:
            command += ["--owner", p["owner"]]
        if not module.check_mode:
            command += ["--lock-timeout", str(p["lock_timeout"])]
        elif p["facts"]:
            command += ["--facts", p["facts"]]
        rc, out, err = module.run_command(command)
    finally:
        os.unlink(path)
    try:
        (entry,) = [h for h in json.loads(out)["hosts"] if h["host"] == p["host"]]
    except (ValueError, KeyError):
        module.fail_json(msg=(err or out).strip().replace(path, "<inventory>") or f"provision exited with {rc}",
                         rc=rc)
    plan = entry.get("plan") or {}
    result = dict(plan=plan, applied=entry.get("applied", 0), status=entry["status"], stderr=err)
    if entry["status"] == "failed":
        module.fail_json(msg=entry.get("error", "failed"), **result)
    if entry["status"] == "skipped":
        module.fail_json(msg=f"skipped: {entry.get('reason')}", **result)
    result["changed"] = bool(plan.get("changes"))
    if module._diff and result["changed"]:
        result["diff"] = {"prepared": plan_text(plan)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
