"""The controller half of provision.network.apply.

Ansible has merged each host's variables; a tunnel with `peer:` needs the peer's variables too
(its tunnel of the same name, its tunnel_address, its tunnel_public_key), which the target
cannot see. So the action gathers this host's and its peers' provision variables from hostvars
into a small inventory and hands it to the module on the target. A tunnel_public_key_file is
read here, on the controller, where the inventory is (relative to the host's inventory_dir),
and handed on as tunnel_public_key; a peer's tunnel_private_key_file is none of the target's
business and stays behind.
"""

from __future__ import annotations

import os

from typing import Any

from ansible.plugins.action import ActionBase

PROVISION_VARS = ("network", "tunnel_address", "ansible_host", "tunnel_public_key")
MAX_KEY_FILE = 256


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        hostvars = task_vars["hostvars"]
        me = task_vars["inventory_hostname"]

        def provision_vars(name: str) -> dict[str, Any]:
            found = hostvars[name]
            out = {k: found[k] for k in PROVISION_VARS if k in found}
            if "tunnel_public_key" not in out and found.get("tunnel_public_key_file"):
                path = os.path.join(str(found.get("inventory_dir") or "."), str(found["tunnel_public_key_file"]))
                with open(path, encoding="ascii") as f:
                    out["tunnel_public_key"] = f.read(MAX_KEY_FILE).strip()
            return out

        mine = provision_vars(me)
        if "tunnel_private_key_file" in hostvars[me]:
            mine["tunnel_private_key_file"] = hostvars[me]["tunnel_private_key_file"]
        tunnels = ((mine.get("network") or {}).get("tunnels")) or []
        peers = sorted({t["peer"] for t in tunnels if isinstance(t, dict) and t.get("peer") in hostvars})
        inventory = {"all": {"hosts": {me: mine, **{p: provision_vars(p) for p in peers}}}}
        args = {**self._task.args, "inventory": inventory, "host": me}
        result.update(self._execute_module(module_name="provision.network.apply", module_args=args,
                                           task_vars=task_vars))
        return result
